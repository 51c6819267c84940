"""The tokenize status protocol, in one room: who writes which status row, which row wins, when an input is done,
and the one count of a run's progress (`StatusTracker.counts`).

Every input ends with status rows (`status/status-<run>-<sha1>.parquet`, schema `pipeline.tokenize.schema.STATUS_SCHEMA`):

    who writes it                when                                                  row
    the driver (this tracker)    every window of the input is committed in token      ok, num_windows = all
                                 shards (`consume`: WRITTEN rows, counted per window)
    the driver (`close`)         the tokenizer could not encode a window (`error`)     the reason, final, with the
                                                                                       windows committed so far
    the driver                   the plan found every window committed already         ok (no decoding)
                                 (`complete_without_decode`)
    the decode stage             the input failed to decode (after `retry.*`,          the reason; final, or pending
    (`stages.DecodeInputs`)      `pipeline/tokenize/failures.py`) or had nothing       (final = false) when transient
                                 left to encode                                        to the end; ok otherwise

* Rows are buffered and committed as status shards every `shards.status_every_inputs` inputs or
  `shards.status_every_s` seconds (`maybe_flush`); the decode stage commits one shard per task, after the task.
* **Newest wins**: a source may have several rows (runs, a Ray task retried after it committed one); readers and
  the resume scan (`commit.load_resume_state`) take the one with the newest `committed_at`. An input is **done**
  when its newest row is final; a pending row plans it again on the next run.
* **One count**: this tracker counts every row it writes (`count`) and, at the end, the decode stage's rows read
  back (`settle`: newest wins against the driver's own rows, so a retried task is counted once). While the chain
  runs, the decode stage's finishes reach the driver live through the `RunNodes` actor
  (`pipeline/tokenize/nodes.py`, deduped by source); `counts(decode_done)` adds them. The summary, the progress line
  and the Ray metrics all read `counts` (`pipeline/tokenize/progress.py`, `run.py`).
"""

from __future__ import annotations

import logging
import time
from array import array
from collections import Counter
from typing import Iterable

import numpy as np
import pyarrow as pa

from pipeline.storage import OutputLayout
from pipeline.tokenize.commit import status_shard_name
from pipeline.tokenize.progress import Counts
from pipeline.tokenize.schema import STATUS_SCHEMA, status_table

log = logging.getLogger(__name__)


class StatusTracker:
    """Turns the writer's WRITTEN stream into committed status rows and run statistics."""

    def __init__(self, layout: OutputLayout, run_id: str, every_inputs: int, every_s: float):
        self.layout, self.run_id, self.every_inputs, self.every_s = layout, run_id, every_inputs, every_s
        self.inflight: dict[str, set[int]] = {}
        self.buffer: list[dict] = []
        self.written: set[str] = set()  # status shards this driver committed
        self.last_flush = time.time()
        self.finished = 0
        self.windows = 0
        self.video_s = 0.0
        self.reasons: Counter = Counter()  # final rows of this run by status
        self.pending: Counter = Counter()  # pending rows (transient to the end) of this run by status
        self.retried = 0  # inputs that needed more than one decode try
        self.cropped, self.crop_sum, self.crop_max = 0, 0.0, 0.0  # inputs whose frames the centre crop cut
        self.first_seen: dict[str, float] = {}  # in-flight sources: when their first window was committed (the tail)
        self.failed_here: dict[str, dict] = {}  # sources the tokenizer could not encode (`error`): settled by `close`
        self.redelivered = 0  # windows of already settled inputs seen again (Ray re-ran a task): not counted twice
        # sources this driver settled, as 64-bit hashes with their rows' commit times (16 bytes per input: flat
        # enough at millions), so a decode-stage row for the same source (a Ray task retried after it wrote one)
        # is counted once, by "newest row wins" (`settle`)
        self._settled_hash, self._settled_at = array("q"), array("d")

    def consume(self, written: pa.Table) -> None:
        rows = written.to_pylist()
        # a window of an input this driver already settled comes again only if Ray re-ran a task whose output had
        # already gone through (a lost node): count nothing twice (committed shards are named by their keys)
        again = self._settled_now({r["source"] for r in rows if r["source"] not in self.inflight})
        for row in rows:
            s, w = row["source"], int(row["window_index"])
            if s in again:
                self.redelivered += 1
                continue
            if row.get("error"):  # the tokenizer could not encode it: settled by `close`, its other windows may follow
                self.failed_here.setdefault(s, row)
                continue
            got = self.inflight.setdefault(s, set())
            self.first_seen.setdefault(s, time.time())
            if w not in got:
                got.add(w)
                self.windows += 1
            if s not in self.failed_here and int(row["prev_windows"] or 0) + len(got) >= int(row["num_windows"]):
                self.finish({**row, "status": "ok", "message": ""}, int(row["num_windows"]))
        self.maybe_flush()

    def close(self) -> None:
        """End of the chain: settle the inputs the tokenizer could not encode (final, reason from `error`), with the
        windows of theirs that were committed."""
        for s, row in self.failed_here.items():
            reason, _, message = row["error"].partition(": ")
            done = int(row["prev_windows"] or 0) + len(self.inflight.get(s, ()))
            self.finish({**row, "status": reason, "message": message, "final": True}, done)
        self.failed_here = {}

    def _settled_now(self, sources: set[str]) -> set[str]:
        """Those of `sources` this driver already settled in this run (one vectorised look-up per WRITTEN table)."""
        if not sources or not (len(self._settled_hash) or self.buffer):
            return set()
        known = np.concatenate([np.frombuffer(self._settled_hash, dtype=np.int64),
                                np.array([hash(r["source"]) for r in self.buffer], dtype=np.int64)])
        ordered = sorted(sources)
        hit = np.isin(np.array([hash(x) for x in ordered], dtype=np.int64), known)
        return {x for x, h in zip(ordered, hit.tolist()) if h}

    def finish(self, row: dict, num_windows: int) -> None:
        """Buffer the status row of a finished input (all its windows committed)."""
        self.inflight.pop(row["source"], None)
        self.first_seen.pop(row["source"], None)
        self.buffer.append({**{f.name: row.get(f.name) for f in STATUS_SCHEMA}, "num_windows": num_windows})
        self.count(row)

    def count(self, row: dict) -> None:
        """Count one finished input: its status row (`status`, `final`, `attempts`, `source_duration_s`)."""
        self.finished += 1
        (self.reasons if row.get("final", True) else self.pending)[row.get("status", "ok")] += 1
        self.retried += int((row.get("attempts") or 1) > 1)
        self.video_s += row.get("source_duration_s") or 0.0
        if (row.get("crop_dropped") or 0.0) > 0.005:  # rounding of the resize is not a crop worth reporting
            self.cropped += 1
            self.crop_sum += row["crop_dropped"]
            self.crop_max = max(self.crop_max, row["crop_dropped"])

    def counts(self, decode_done: dict | None = None) -> Counts:
        """THE count of this run's finished inputs (the summary, the progress line and the metrics all read it):
        inputs, windows, video seconds and failures by reason from the rows this tracker counted, plus, while the
        chain runs, `decode_done` — the inputs the decode stage finished itself, as `RunNodes.finished()` reports
        them live (at the end `settle` has read those rows back, and `decode_done` is left out)."""
        d = decode_done or {"inputs": 0, "video_s": 0.0, "reasons": {}}
        failures = {k: v for k, v in self.reasons.copy().items() if k != "ok"}  # copy: the main thread adds keys
        for k, v in d["reasons"].items():
            if k != "ok":
                failures[k] = failures.get(k, 0) + v
        return Counts(self.finished + d["inputs"], self.windows, self.video_s + d["video_s"], failures)

    def crop(self) -> dict:
        """What the centre crop took from this run's inputs (summary and card)."""
        return {"inputs_cropped": self.cropped, "mean_dropped": round(self.crop_sum / max(self.cropped, 1), 4),
                "max_dropped": round(self.crop_max, 4)}

    def maybe_flush(self, force: bool = False) -> None:
        due = len(self.buffer) >= self.every_inputs or time.time() - self.last_flush >= self.every_s
        if self.buffer and (force or due):
            table = status_table(self.buffer, self.run_id)
            path = self.layout.write_table(status_shard_name([r["source"] for r in self.buffer], self.run_id), table)
            self.written.add(path)
            at = table.column("committed_at")[0].as_py()
            for r in self.buffer:
                self._settled_hash.append(hash(r["source"]))
                self._settled_at.append(at)
            log.info("committed status rows for %d inputs (%d finished so far)", len(self.buffer), self.finished)
            self.buffer = []
            self.last_flush = time.time()

    def settle(self, rows: Iterable[dict]) -> None:
        """Count the decode stage's status rows of this run (failures; inputs with nothing left to encode), newest
        row per source winning, as readers resolve them. A source this driver already settled (its windows all
        committed) is counted once: a decode-stage row older than the driver's (a Ray task that wrote a pending row,
        was retried, and then succeeded) is skipped; a newer one replaces the driver's `ok` in the counts."""
        newest: dict[str, dict] = {}
        for row in rows:
            if row["source"] not in newest or row["committed_at"] >= newest[row["source"]]["committed_at"]:
                newest[row["source"]] = row
        if not newest:
            return
        hashes = np.frombuffer(self._settled_hash, dtype=np.int64)
        times = np.frombuffer(self._settled_at, dtype=np.float64)
        wanted = np.array([hash(s) for s in newest], dtype=np.int64)
        hit = np.isin(hashes, wanted)
        mine: dict[int, float] = {}
        for h, t in zip(hashes[hit].tolist(), times[hit].tolist()):
            mine[h] = max(t, mine.get(h, t))
        for row in newest.values():
            at = mine.get(hash(row["source"]))
            if at is not None:  # already counted as `ok` by the driver
                if row["committed_at"] <= at:
                    continue
                self.reasons["ok"] -= 1  # the decode stage's row is newer: it is what readers see
                self.finished -= 1
                self.video_s -= row.get("source_duration_s") or 0.0
            self.count(row)
            self.inflight.pop(row["source"], None)  # failed after some windows were sent: this row settles it
            self.first_seen.pop(row["source"], None)
