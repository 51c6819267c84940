"""Memory of a process tree from /proc, for the hand-run benchmarks (Linux only): one copy of the walk.

`descendants(pid)`: every live process below `pid` (a job's local Ray: gcs, raylet, workers, decode children).
`proc_kb(pid, field, file)`: one `/proc/<pid>/<file>` field in KiB (`VmRSS` in `status`, `Pss` in `smaps_rollup`);
0 for a process that is gone.
`kind(pid)`: a short name for what the process is (`raylet`, `gcs_server`, a Ray worker's title such as
`ray::MapWorker(MapBatches(TokenizeClips))`, `python <script>`), to say where a job's memory sits.
"""

from __future__ import annotations

import os
from pathlib import Path


def descendants(pid: int) -> list[int]:
    kids: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                ppid = int(Path(f"/proc/{d}/stat").read_text().rsplit(")", 1)[1].split()[1])
                kids.setdefault(ppid, []).append(int(d))
            except (OSError, IndexError, ValueError):
                pass
    out, todo = [], [pid]
    while todo:
        for c in kids.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def proc_kb(pid: int, field: str = "VmRSS", file: str = "status") -> int:
    try:
        for line in Path(f"/proc/{pid}/{file}").read_text().splitlines():
            if line.split(":", 1)[0] == field:
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def kind(pid: int) -> str:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "gone"
    argv = [a.decode(errors="replace") for a in argv if a]
    if not argv:
        return "?"
    head = argv[0]
    if head.startswith("ray::"):  # a Ray worker's process title: the task or actor it runs
        return head.split(" ")[0]
    name = os.path.basename(head)
    if name.startswith("python") and len(argv) > 1:
        arg = next((a for a in argv[1:] if not a.startswith("-")), argv[1])
        return f"python {os.path.basename(arg)[:60]}"
    return name[:60]
