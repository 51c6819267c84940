"""The frames-cache job (`jobs/cache_frames.py`, `vidtok-cache-frames`): list the inputs, skip the cached ones,
decode + encode + commit the rest in Ray Data CPU tasks, write `summary.json`.

    list inputs ──plan (drop videos an index row names)──▶ from_arrow ──map_batches(cache_videos, CPU tasks,
    `videos_per_task` per call: decode each once, encode, commit shards, then the group's index)──▶ results

Transient failures are retried inside the run (`retry.*`, `pipeline/frames/build.py`); what still fails is left for
the next run (`left_for_next_run`, exit 3). A progress line every `progress_every_s` (the tokenize job's format,
`pipeline/tokenize/progress.py`): videos done/total, frames, video hours, failures by reason (`<reason> (next run)`
for those left), ETA. At the end the run's index parts are folded into hash buckets (`pipeline/frames/index.py`).

Exactly once / resume: `pipeline/frames/store.py`. The output folder is claimed like every job's
(`pipeline.job_record.OutputClaim`, kind `frames`): the settings that define what a frame means (fps, size, format,
frames_per_row) cannot change under an existing cache.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter
from functools import partial

import pyarrow as pa

from pipeline.config import to_yaml
from pipeline.decode.index import VideoIndex
from pipeline.frames.build import cache_videos
from pipeline.frames.config import CacheFramesJobConfig
from pipeline.frames.index import consolidate
from pipeline.frames.store import cache_claim, cache_identity, load_cache_state
from pipeline.inputs import iter_inputs
from pipeline.job_record import listing_digest
from pipeline.ray_utils import RayLogs, ray_session
from pipeline.storage import OutputLayout
from pipeline.tokenize.progress import Counts, ProgressReporter

log = logging.getLogger(__name__)


def identity(cfg: CacheFramesJobConfig) -> dict:
    """What a cached frame means; a re-run into the same output must not change it."""
    return cache_identity(cfg.decode.fps, cfg.frames)


def plan_inputs(chunks, done: set[str], limit: int | None) -> tuple[list[pa.Table], int, int]:
    """Pending input rows (not in `done`, first occurrence only, at most `limit`): (tables, listed, already done)."""
    seen: set[str] = set()
    out, listed, skipped, n = [], 0, 0, 0
    for chunk in chunks:
        listed += chunk.num_rows
        keep = []
        for i, s in enumerate(chunk.column("source").to_pylist()):
            if s in done:
                skipped += 1
            elif s not in seen and not (limit and n >= limit):
                seen.add(s)
                keep.append(i)
                n += 1
        if keep:
            out.append(chunk.take(pa.array(keep, pa.int64())))
    return out, listed, skipped


RESULT_KEYS = ("source", "status", "message", "num_frames", "bytes", "video_s", "tries", "committed")


class _Progress:
    """The run's counts (updated by the driver from each finished task's results) and a thread that logs the
    progress line every `every_s` (`ProgressReporter`, the tokenize job's line)."""

    def __init__(self, total: int, every_s: float):
        self.reporter = ProgressReporter(total, every_s, units=("videos", "frames"))
        self.counts = Counts()
        self.status: Counter = Counter()
        self.frames = self.left = 0
        self.bytes = 0
        self.video_s = 0.0
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="frames-progress", daemon=True)

    def add(self, r: dict) -> None:
        with self.lock:
            self.status[r["status"]] += 1
            self.frames += int(r["num_frames"])
            self.bytes += int(r["bytes"])
            self.video_s += float(r["video_s"])
            self.left += 0 if r["committed"] else 1
            fails = Counter(self.counts.failures)
            if r["status"] != "ok":
                fails[r["status"] + ("" if r["committed"] else " (next run)")] += 1
            self.counts = Counts(self.counts.inputs + 1, self.frames, self.video_s, dict(fails))

    def __enter__(self):
        self.reporter.restart()
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(min(1.0, self.reporter.every_s)):
            self.reporter.maybe_report(lambda: self.counts)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=10)
        self.reporter.final(self.counts)


def _cache_batch(batch: dict, *, layout, decode, frames, storage_options, retry, index) -> dict:
    """map_batches body: a group of input rows -> one result row per input (the frames go to storage)."""
    keys = [k for k in ("source_size", "source_etag", "source_mtime") if k in batch]
    inputs = [{"source": s, **{k: _py(batch[k][i]) for k in keys}} for i, s in enumerate(batch["source"])]
    res = cache_videos(inputs, layout, decode, frames, storage_options, retry, index)
    return {k: [r[k] for r in res] for k in RESULT_KEYS}


def _py(v):
    return v.item() if hasattr(v, "item") else v


def run_cache_frames(cfg: CacheFramesJobConfig) -> dict:
    """Build (or resume) the cache `cfg.output` from `cfg.input`; returns the summary (also summary.json)."""
    import ray

    t0 = time.time()
    opts = cfg.storage.storage_options()
    layout = OutputLayout(cfg.output, opts, cfg.retry)
    claim = cache_claim(layout, cfg.decode.fps, cfg.frames, cfg.input, cfg.append).check()
    state = load_cache_state(layout)
    listed: dict = {}
    chunks = listing_digest(iter_inputs(cfg.input, extensions=cfg.extensions, storage_options=opts,
                                        column=cfg.manifest_column), listed)
    pending, total, skipped = plan_inputs(chunks, state.done, cfg.limit)
    claim.record(listed.get("digest"))
    n_pending = sum(t.num_rows for t in pending)
    log.info("frames cache plan: %d inputs listed, %d already cached, %d to decode", total, skipped, n_pending)
    layout.write_bytes("resolved_config.yaml", to_yaml(cfg).encode())
    progress = _Progress(n_pending, cfg.progress_every_s)
    if n_pending:
        fn = partial(_cache_batch, layout=layout, decode=cfg.decode, frames=cfg.frames, storage_options=opts,
                     retry=cfg.retry, index=VideoIndex.of_job(layout, cfg.index))
        dt = cfg.decode_task
        kwargs = dt.ray_kwargs(extra_mb=cfg.frames.shard_mb)
        logs = RayLogs(console=cfg.ray.console_logs)
        with ray_session(cfg.ray, logs), progress:
            ds = ray.data.from_arrow(pending).repartition(max(1, -(-n_pending // cfg.videos_per_task)))
            ds = ds.map_batches(fn, batch_size=cfg.videos_per_task, batch_format="numpy", **kwargs)
            for r in ds.iter_rows():
                progress.add(r)
    folded = consolidate(layout)  # also the parts a killed run left
    after = load_cache_state(layout)
    counts, left = progress.status, progress.left
    summary = {
        "output": cfg.output, "input": cfg.input, "complete": left == 0 and not cfg.limit,
        "nothing_to_do": n_pending == 0, "inputs_listed": total, "already_cached": skipped,
        "decoded_this_run": n_pending, "status_this_run": dict(counts), "left_for_next_run": left,
        "frames_this_run": progress.frames, "bytes_this_run": progress.bytes,
        "index": {k: folded[k] for k in ("generation", "buckets", "parts", "buckets_written")},
        "videos_cached": after.ok, "frames_cached": after.frames, "failures": after.failures,
        "orphan_shards": after.orphan_shards, "duplicate_index_rows": after.duplicates,
        "seconds": round(time.time() - t0, 1), **identity(cfg),
    }
    layout.write_bytes("summary.json", (json.dumps(summary, indent=2, sort_keys=True) + "\n").encode())
    return summary
