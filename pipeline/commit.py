"""Exactly-once output: the output layout, atomic shard commits, and the resume plan read back from committed files.

Layout under `output` (a local folder or an object-store prefix):
  tokens/part-<sha1 of the shard's keys>.parquet   committed token shards (one row per window)
  status/status-<sha1 of its sources>.parquet      committed status rows (one per finished input)
  _tmp/                                             in-flight local writes (never read)
  _plan/<run>/plan-*.parquet                        the pending inputs of the current run (deleted at the end)
  summary.json, resolved_config.yaml, _SUCCESS      written when every input has a status row

Commit rule: a file is visible under tokens/ or status/ only when complete. Local filesystems: write to _tmp/, then
`os.replace` (atomic rename on POSIX). Object stores (s3, gs): write the final key directly; an object becomes visible
only when its single PUT or its multipart upload completes, so a killed writer leaves nothing visible.

Names are hashes of the keys a file holds, so a retried task rewrites the same name with the same rows and a file
is never committed twice under two names within a run. Across runs, the planner excludes every committed key
(`load_resume_state`), so a rerun never writes a key again. Pure: no Ray.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import uuid
from dataclasses import dataclass, field
from typing import Iterable, Iterator, Sequence

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.listing import url_to_fs

log = logging.getLogger(__name__)


def _is_local(fs) -> bool:
    protocols = (fs.protocol,) if isinstance(fs.protocol, str) else tuple(fs.protocol)
    return bool({"file", "local"} & set(protocols))


@dataclass
class OutputLayout:
    """Paths of one job output; picklable (Ray workers rebuild the filesystem from url + storage_options)."""

    url: str
    storage_options: dict = field(default_factory=dict)

    def __post_init__(self):
        self.fs, self.root = url_to_fs(self.url, self.storage_options)
        self.root = self.root.rstrip("/")
        self.local = _is_local(self.fs)

    def __getstate__(self):
        return {"url": self.url, "storage_options": self.storage_options}

    def __setstate__(self, state):
        self.url, self.storage_options = state["url"], state["storage_options"]
        self.__post_init__()

    def path(self, *parts: str) -> str:
        return "/".join([self.root, *parts])

    def full_url(self, *parts: str) -> str:
        """A URL for readers other than this filesystem object (Ray's read_parquet, users)."""
        p = self.path(*parts)
        return p if self.local else f"{self.fs.protocol if isinstance(self.fs.protocol, str) else self.fs.protocol[0]}://{p}"

    def list(self, folder: str, suffix: str = ".parquet") -> list[str]:
        """Committed files in `folder` (sorted); temp files never match because they live elsewhere."""
        try:
            names = self.fs.ls(self.path(folder), detail=False, refresh=True) if not self.local else \
                [os.path.join(self.path(folder), n) for n in os.listdir(self.path(folder))]
        except FileNotFoundError:
            return []
        return sorted(n for n in names if n.endswith(suffix))

    def exists(self, *parts: str) -> bool:
        return self.fs.exists(self.path(*parts))

    # ------------------------------------------------------------------------------------------------- commits
    def write_bytes(self, rel: str, data: bytes) -> str:
        """Atomically publish `data` at `<root>/<rel>`; returns the final path."""
        final = self.path(rel)
        if self.local:
            os.makedirs(os.path.dirname(final), exist_ok=True)
            tmp_dir = self.path("_tmp")
            os.makedirs(tmp_dir, exist_ok=True)
            tmp = os.path.join(tmp_dir, f"{os.path.basename(rel)}.{uuid.uuid4().hex}")
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())  # the rename must not publish a file whose bytes are still in the page cache only
            os.replace(tmp, final)
        else:
            with self.fs.open(final, "wb") as f:  # one PUT / multipart upload: visible only once complete
                f.write(data)
        return final

    def write_table(self, rel: str, table: pa.Table) -> str:
        buf = io.BytesIO()
        pq.write_table(table, buf, compression="zstd")
        return self.write_bytes(rel, buf.getvalue())

    def read_text(self, rel: str) -> str | None:
        try:
            with self.fs.open(self.path(rel), "rb") as f:
                return f.read().decode()
        except FileNotFoundError:
            return None

    def remove(self, rel: str, recursive: bool = False) -> None:
        try:
            self.fs.rm(self.path(rel), recursive=recursive)
        except FileNotFoundError:
            pass


def keys_digest(pairs: Iterable[tuple[str, int]]) -> str:
    """Deterministic name part for a set of (source, window_index) keys, independent of their order."""
    h = hashlib.sha1()
    for s, w in sorted((str(s), int(w)) for s, w in pairs):
        h.update(f"{s}\x00{w}\n".encode())
    return h.hexdigest()[:24]


def token_shard_name(pairs: Iterable[tuple[str, int]]) -> str:
    return f"tokens/part-{keys_digest(pairs)}.parquet"


def status_shard_name(sources: Sequence[str]) -> str:
    return f"status/status-{keys_digest((s, 0) for s in sources)}.parquet"


# --------------------------------------------------------------------------------------------------------- resume
@dataclass
class ResumeState:
    """What earlier runs committed: inputs with a status row, and windows of inputs without one yet."""

    done: set[str] = field(default_factory=set)  # sources with a committed status row
    done_rows: int = 0
    partial: dict[str, tuple[list[int], int]] = field(default_factory=dict)  # source -> (committed windows, total)
    committed_windows: int = 0
    duplicate_windows: int = 0  # keys found in two token shards (should be 0; reported, never silently dropped)
    failures: dict[str, int] = field(default_factory=dict)  # reason -> inputs, from committed status rows


def _iter_columns(layout: OutputLayout, files: Sequence[str], columns: Sequence[str]) -> Iterator[pa.Table]:
    for f in files:
        with layout.fs.open(f, "rb") as fh:
            yield pq.read_table(fh, columns=list(columns))


def load_resume_state(layout: OutputLayout) -> ResumeState:
    """Read only key columns of committed status and token shards (footer + a few columns per file)."""
    st = ResumeState()
    for t in _iter_columns(layout, layout.list("status"), ["source", "status"]):
        st.done.update(t.column("source").to_pylist())
        st.done_rows += t.num_rows
        for reason, n in zip(*pc.value_counts(t.column("status")).flatten()):
            if reason.as_py() != "ok":
                st.failures[reason.as_py()] = st.failures.get(reason.as_py(), 0) + n.as_py()
    seen: dict[str, set[int]] = {}
    totals: dict[str, int] = {}
    done = st.done
    # Python set lookups, not pc.is_in: is_in rebuilds its hash table from the value set on every call, which for
    # a million done inputs costs more than the whole scan.
    for t in _iter_columns(layout, layout.list("tokens"), ["source", "window_index", "num_windows"]):
        st.committed_windows += t.num_rows
        for s, w, n in zip(*(t.column(c).to_pylist() for c in ("source", "window_index", "num_windows"))):
            if s in done:
                continue
            ws = seen.setdefault(s, set())
            if w in ws:
                st.duplicate_windows += 1
            ws.add(w)
            totals[s] = n
    st.partial = {s: (sorted(ws), totals[s]) for s, ws in seen.items()}
    if st.duplicate_windows:
        log.error("%d windows appear in more than one committed token shard under %s", st.duplicate_windows, layout.url)
    return st


@dataclass
class Plan:
    """Pending inputs (written as parquet chunks for Ray to read) and inputs finishable without decoding."""

    files: list[str]
    pending: int
    skipped_done: int
    complete_without_decode: list[dict]
    duplicates_in_input: int
    total_inputs: int


PLAN_SCHEMA_EXTRA = [pa.field("skip_windows", pa.list_(pa.int32())), pa.field("prev_windows", pa.int32())]


def write_plan(layout: OutputLayout, chunks: Iterable[pa.Table], state: ResumeState, run_id: str,
               limit: int = 0) -> Plan:
    """Stream input chunks, drop inputs already done (and repeats), and write the rest to `_plan/<run_id>/`.

    Inputs whose committed windows already reach their total (a crash between the last token shard and the status
    flush) are returned in `complete_without_decode`: the driver writes their status rows without decoding them again.
    """
    done = state.done
    seen: set[str] = set()
    files, pending, skipped, dups, total = [], 0, 0, 0, 0
    complete: list[dict] = []
    for chunk in chunks:
        total += chunk.num_rows
        keep, skip_w, prev = [], [], []
        for i, s in enumerate(chunk.column("source").to_pylist()):
            if s in done:
                skipped += 1
                continue
            if s in seen:
                dups += 1
                continue
            seen.add(s)
            if limit and pending + len(keep) + len(complete) >= limit:
                break
            ws, n = state.partial.get(s, ((), None))
            if n is not None and len(ws) >= n:
                complete.append({**{c: chunk.column(c)[i].as_py() for c in chunk.column_names}, "num_windows": n})
                continue
            keep.append(i)
            skip_w.append(list(ws))
            prev.append(len(ws))
        if keep:
            t = chunk.take(pa.array(keep, pa.int64()))
            t = t.append_column(PLAN_SCHEMA_EXTRA[0], pa.array(skip_w, pa.list_(pa.int32())))
            t = t.append_column(PLAN_SCHEMA_EXTRA[1], pa.array(prev, pa.int32()))
            files.append(layout.write_table(f"_plan/{run_id}/plan-{len(files):06d}.parquet", t))
            pending += len(keep)
        if limit and pending + len(complete) >= limit:
            break
    return Plan(files=files, pending=pending, skipped_done=skipped, complete_without_decode=complete,
                duplicates_in_input=dups, total_inputs=total)


def write_json(layout: OutputLayout, rel: str, obj) -> str:
    return layout.write_bytes(rel, (json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n").encode())
