"""Where a tokenize run is, told by its workers to one small actor: `RunNodes` (which nodes and devices each stage ran
on, the inputs the decode stage finished itself, the inputs being decoded now) and the worker-side helpers that
report to it (`report_where`, `CurrentInput`, `node_name`).

A lost node costs time, never the run: the driver pins `RunNodes` to its own node (`soft=False`) and restarts it if
its process dies (`pipeline/tokenize/run.py`); everything here is informational (the summary's `nodes`, the live
progress line, the tail), so a restart that empties it loses nothing the run needs. Calls to it are fire and forget.
"""

from __future__ import annotations

import threading
import time
import uuid


class RunNodes:
    """A tiny Ray actor: which nodes (and devices) each stage ran on, for the run summary; the inputs the decode stage
    finished itself (live progress); the inputs being decoded now (the tail, `pipeline/tokenize/progress.py`).

    Nothing the run needs lives only here: the driver pins it to its own node and restarts it if its process dies
    (`pipeline/tokenize/run.py`); a restart loses these counts, which only the summary's `nodes` and the live
    progress line use (the final counts come from the committed status rows)."""

    def __init__(self):
        self.seen: dict[str, set] = {"decode": set(), "tokenizer": set(), "tokenizer_device": set()}
        self.done: set[int] = set()  # hashes of the sources the decode stage finished (a retried task reports again)
        self.counts: dict = {"inputs": 0, "video_s": 0.0, "reasons": {}}
        self.decoding: dict[str, tuple[str, float, str]] = {}  # task -> (source, started at, node): one per task

    def add(self, kind: str, value: str) -> None:
        self.seen[kind].add(value)

    def get(self) -> dict[str, list]:
        return {k: sorted(v) for k, v in self.seen.items()}

    def at(self, task: str, source: str | None, started: float, node: str = "") -> None:
        """Decode task `task` started `source` at `started` (epoch s) on `node`; `source` None: the task ended.
        One entry per running task, so this holds as many entries as decode slots, whatever the corpus."""
        if source is None:
            self.decoding.pop(task, None)
        else:
            self.decoding[task] = (source, started, node)

    def running(self) -> list[tuple[str, float, str]]:
        """`(source, started at, node)` of the inputs being decoded now."""
        return list(self.decoding.values())

    def finish(self, rows: list[tuple[str, str, float | None]]) -> None:
        """Inputs the decode stage finished itself (failures, or nothing left to encode), as `(source, status,
        duration_s)`: live progress. One call per decode task, not per input (an actor call costs about a
        millisecond, as much as decoding a one-second clip: `benchmarks/small_clips.py`)."""
        for source, status, duration_s in rows:
            if hash(source) not in self.done:
                self.done.add(hash(source))
                self.counts["inputs"] += 1
                self.counts["video_s"] += duration_s or 0.0
                self.counts["reasons"][status] = self.counts["reasons"].get(status, 0) + 1

    def finished(self) -> dict:
        """`{"inputs", "video_s", "reasons"}` of the inputs reported through `finish` (pipeline/tokenize/progress.py)."""
        return self.counts


def report_where(nodes, kind: str, value: str | None = None) -> None:
    """Tell `nodes` (a RunNodes handle, or None outside Ray) where this process runs; once per process and kind."""
    if nodes is None:
        return
    import ray

    value = value or ray.get_runtime_context().get_node_id()
    key = (id(nodes), kind, value)
    if key not in _reported:
        _reported.add(key)
        nodes.add.remote(kind, value)


_reported: set = set()


def node_name() -> str:
    """This process's machine in words: host, IP and Ray node id (host only outside Ray); computed once in Ray."""
    if "name" in _node:
        return _node["name"]
    import socket

    name = socket.gethostname()
    try:
        import ray

        if ray.is_initialized():
            name += f" ({ray.util.get_node_ip_address()}, Ray node {ray.get_runtime_context().get_node_id()})"
            _node["name"] = name
    except Exception:
        pass
    return name


_node: dict = {}

HEARTBEAT_S = 5.0  # how often a decode task tells RunNodes which input it is on (only if it changed)


class CurrentInput:
    """The input a decode task is on, told to `RunNodes.at` from a side thread at most every HEARTBEAT_S, so the
    tail of the run can name the oldest inputs in flight. Not per input: a fire-and-forget actor call costs 0.3-0.7
    ms (measured on the 2-core machine), as much as decoding a one-second clip; an input shorter than the heartbeat
    is never reported, and those never hold a run's tail."""

    def __init__(self, nodes):
        self.nodes, self.task, self.now, self.sent = nodes, uuid.uuid4().hex, None, None
        self.lock, self.stopped = threading.Lock(), threading.Event()
        if nodes is not None:
            threading.Thread(target=self._loop, name="decode-heartbeat", daemon=True).start()

    def set(self, source: str) -> None:
        self.now = (source, time.time())

    def _loop(self) -> None:
        while not self.stopped.wait(HEARTBEAT_S):
            with self.lock:
                now = self.now
                if not self.stopped.is_set() and now is not None and now is not self.sent:
                    self.nodes.at.remote(self.task, now[0], now[1], node_name())
                    self.sent = now

    def close(self) -> None:
        with self.lock:
            self.stopped.set()
            if self.sent is not None:
                self.nodes.at.remote(self.task, None, time.time())
