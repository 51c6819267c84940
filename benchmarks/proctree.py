"""Memory of a process tree from /proc, for the hand-run benchmarks (Linux only): one copy of the walk.

`descendants(pid)`: every live process below `pid` (a job's local Ray: gcs, raylet, workers, decode children).
`proc_kb(pid, field, file)`: one `/proc/<pid>/<file>` field in KiB (`VmRSS` in `status`, `Pss` in `smaps_rollup`);
0 for a process that is gone.
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
