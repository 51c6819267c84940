"""Exactly-once output: the output layout, atomic shard commits, and the resume plan read back from committed files.

Layout under `output` (a local folder or an object-store prefix):
  tokens/part-<sha1 of the shard's keys>.parquet   committed token shards (one row per window)
  status/status-<run>-<sha1 of its sources>.parquet  committed status rows (one per input and run; newest wins)
  _plan/<run>/plan-*.parquet                        the pending inputs of the current run (deleted at the end)
  summary.json, resolved_config.yaml, _SUCCESS      written when every input has a status row

Commit rule: a file is visible under tokens/ or status/ only when complete (`pipeline.storage.write_bytes`: temp file
+ rename locally, one PUT on object stores), so a killed writer leaves nothing a reader would take as finished.

Who commits what: the writer stage commits token shards; the driver commits the status rows of inputs whose windows
are all committed; the decode stage commits the status row of an input that yields no window (a failed input), under
the name `status_shard_name([source], run_id)`, so nothing about a failed input travels through the tokenizer.
A transient failure still failing after the retries of `retry.*` is committed the same way, as a *pending* row
(`final = false`); the next run plans the input again and its newer row wins. A long input decoded in segments, one
task each (`pipeline/tokenize/segments.py`), keeps this one-row rule: a segment that goes well commits nothing, the
driver's `ok` row comes once the windows of all segments are committed, and a failing segment commits the input's
failure row (pending when transient: the input stays pending, and a re-run decodes only its missing windows).

Names are hashes of the keys a file holds, so a retried task rewrites the same name with the same rows and a file
is never committed twice under two names within a run. Across runs, the planner excludes every committed key
(`load_resume_state`), so a rerun never writes a key again. Pure: no Ray.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, Sequence

import pyarrow as pa
import pyarrow.compute as pc

from pipeline.storage import OutputLayout
from pipeline.tokenize.schema import PLAN_SCHEMA

log = logging.getLogger(__name__)


def new_run_id() -> str:
    """A run's id: its UTC start time (so ids sort by time) and a random suffix."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + uuid.uuid4().hex[:6]


def keys_digest(pairs: Iterable[tuple[str, int]]) -> str:
    """Deterministic name part for a set of (source, window_index) keys, independent of their order."""
    h = hashlib.sha1()
    for s, w in sorted((str(s), int(w)) for s, w in pairs):
        h.update(f"{s}\x00{w}\n".encode())
    return h.hexdigest()[:24]


def token_shard_name(pairs: Iterable[tuple[str, int]]) -> str:
    return f"tokens/part-{keys_digest(pairs)}.parquet"


def status_shard_name(sources: Sequence[str], run_id: str) -> str:
    """Status shards carry the run that wrote them: a re-run's row for a source (the newest wins) never overwrites
    an older run's file, and a retried task of the same run rewrites the same name."""
    return f"status/status-{run_id}-{keys_digest((s, 0) for s in sources)}.parquet"


# --------------------------------------------------------------------------------------------------------- resume
@dataclass
class ResumeState:
    """What earlier runs committed: inputs whose newest status row is final, and windows of the others."""

    done: set[str] = field(default_factory=set)  # sources whose newest status row is final (and, retrying
    #                                              permanent failures, ok)
    done_rows: int = 0
    pending: set[str] = field(default_factory=set)  # sources whose newest status row is pending (final = false)
    partial: dict[str, tuple[list[int], int]] = field(default_factory=dict)  # source -> (committed windows, total)
    committed_windows: int = 0
    duplicate_windows: int = 0  # keys found in two token shards (should be 0; reported, never silently dropped)
    failures: dict[str, int] = field(default_factory=dict)  # reason -> inputs, from the newest final status rows
    status_files: set[str] = field(default_factory=set)  # the status shards read (later ones are this run's)


STATUS_KEYS = ["source", "status", "final", "committed_at"]


def _iter_columns(layout: OutputLayout, files: Sequence[str], columns: Sequence[str]) -> Iterator[pa.Table]:
    for f in files:
        yield layout.read_table(f, columns)


def _status_keys(layout: OutputLayout, files: Sequence[str]) -> pa.Table:
    """`source, status, final, committed_at` of every row of `files`, oldest first (ties: file name order)."""
    tables = []
    for i, f in enumerate(sorted(files)):
        t = layout.read_table(f, STATUS_KEYS)
        names = t.column_names
        n = t.num_rows  # status shards of schema version 1 (before retries) have neither column: final, oldest
        if "final" not in names:
            t = t.append_column("final", pa.array([True] * n, pa.bool_()))
        if "committed_at" not in names:
            t = t.append_column("committed_at", pa.array([0.0] * n, pa.float64()))
        tables.append(t.select(STATUS_KEYS).append_column("file_order", pa.array([i] * n, pa.int32())))
    if not tables:
        return pa.table({c: [] for c in STATUS_KEYS})
    return pa.concat_tables(tables, promote_options="permissive").sort_by([("committed_at", "ascending"), ("file_order", "ascending")])


def load_resume_state(layout: OutputLayout, retry_permanent: bool = False) -> ResumeState:
    """Read only key columns of committed status and token shards (footer + a few columns per file).

    Status: the newest row of each source wins (`committed_at`); a final row makes the input done, a pending one
    (`final = false`, a transient failure left by an earlier run) plans it again. `retry_permanent` plans final
    failures again too (only `ok` is done).
    """
    st = ResumeState()
    st.status_files = set(layout.list("status"))
    keys = _status_keys(layout, st.status_files)
    st.done_rows = keys.num_rows
    failed: dict[str, str] = {}
    done, pending = st.done, st.pending
    for s, status, final in zip(*(keys.column(c).to_pylist() for c in ("source", "status", "final"))):
        if final and (status == "ok" or not retry_permanent):
            done.add(s)
            pending.discard(s)
            if status == "ok":
                failed.pop(s, None)
            else:
                failed[s] = status
        else:
            done.discard(s)
            failed.pop(s, None)
            if not final:
                pending.add(s)
    del keys
    for reason in failed.values():
        st.failures[reason] = st.failures.get(reason, 0) + 1
    seen: dict[str, set[int]] = {}
    totals: dict[str, int] = {}
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
    pending_bytes: int = 0  # summed source_size of the pending inputs that have one (sizing decode tasks)
    pending_sized: int = 0  # how many pending inputs have a source_size
    limited: bool = False  # `limit=` left listed inputs without a status row out of this run (the output is partial)


def write_plan(layout: OutputLayout, chunks: Iterable[pa.Table], state: ResumeState, run_id: str,
               limit: int = 0, dry_run: bool = False, on_pending: Callable[[pa.Table], None] | None = None,
               frames_done: set[str] | None = None) -> Plan:
    """Stream input chunks, drop inputs already done (and repeats), and write the rest to `_plan/<run_id>/`.

    Inputs whose committed windows already reach their total (a crash between the last token shard and the status
    flush) are returned in `complete_without_decode`: the driver writes their status rows without decoding them again.
    `dry_run` counts without writing anything; `on_pending` sees every PLAN_SCHEMA chunk (the dry run's estimate).
    `limit`: plan at most that many inputs; the listing is still read to its end, so `total_inputs` counts every
    listed input and `limited` says whether the limit left any of them out (then the output cannot be complete).
    `frames_done` (with the side output `frames.output`): the sources the frames cache holds; each planned row gets
    `frames_cached`, so the decode stage decodes their windows alone (`pipeline/tokenize/stages.py: _FramesSide`).
    """
    done = state.done
    seen: set[str] = set()
    files, pending, skipped, dups, total = [], 0, 0, 0, 0
    pending_bytes = sized = 0
    complete: list[dict] = []
    full = limited = False
    for chunk in chunks:
        total += chunk.num_rows
        if full:  # the limit is reached: only count, and note whether an input was left out
            limited = limited or any(s not in done and s not in seen for s in chunk.column("source").to_pylist())
            continue
        keep, skip_w, prev = [], [], []
        for i, s in enumerate(chunk.column("source").to_pylist()):
            if s in done:
                skipped += 1
                continue
            if s in seen:
                dups += 1
                continue
            if limit and pending + len(keep) + len(complete) >= limit:
                limited = True
                break
            seen.add(s)
            ws, n = state.partial.get(s, ((), None))
            if n is not None and len(ws) >= n:
                complete.append({**{c: chunk.column(c)[i].as_py() for c in chunk.column_names}, "num_windows": n})
                continue
            keep.append(i)
            skip_w.append(list(ws))
            prev.append(len(ws))
        if keep:
            t = chunk.take(pa.array(keep, pa.int64()))
            t = t.append_column(PLAN_SCHEMA.field("skip_windows"), pa.array(skip_w, pa.list_(pa.int32())))
            t = t.append_column(PLAN_SCHEMA.field("prev_windows"), pa.array(prev, pa.int32()))
            if frames_done is not None:
                t = t.append_column(pa.field("frames_cached", pa.bool_()),
                                    pa.array([s in frames_done for s in t.column("source").to_pylist()], pa.bool_()))
            if on_pending is not None:
                on_pending(t)
            if "source_size" in t.column_names:
                sizes = t.column("source_size")
                sized += len(sizes) - sizes.null_count
                pending_bytes += int(pc.sum(sizes).as_py() or 0)
            if not dry_run:
                files.append(layout.write_table(f"_plan/{run_id}/plan-{len(files):06d}.parquet", t))
            pending += len(keep)
        full = bool(limit) and pending + len(complete) >= limit
    return Plan(files=files, pending=pending, skipped_done=skipped, complete_without_decode=complete,
                duplicates_in_input=dups, total_inputs=total, pending_bytes=pending_bytes, pending_sized=sized,
                limited=limited)


def read_new_status(layout: OutputLayout, run_id: str, skip: set[str] = frozenset()) -> Iterator[dict]:
    """Status rows committed by run `run_id` outside the files in `skip` (the driver's own): the decode stage's rows
    as `{source, status, final, attempts, ...}` dicts."""
    mine = [f for f in layout.list("status") if f.rsplit("/", 1)[-1].startswith(f"status-{run_id}-") and f not in skip]
    for t in _iter_columns(layout, mine, ["source", "status", "final", "attempts", "num_windows", "source_duration_s",
                                             "committed_at"]):
        yield from t.to_pylist()


def write_json(layout: OutputLayout, rel: str, obj) -> str:
    return layout.write_bytes(rel, (json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n").encode())
