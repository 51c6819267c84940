"""Build the frames cache for a group of videos: decode each once (isolated, time-limited: `pipeline.decode`),
store every sample at `frames.size`² in the chosen format, commit shards then the group's index (the protocol is
`pipeline/frames/store.py`). Pure: no Ray (`pipeline/frames/run.py` runs `cache_videos` in Ray Data tasks).

Retries inside the run follow the tokenize job's rule and keys (`retry.*`, `pipeline/tokenize/failures.py`): a read
failing with a reason in `retry.transient` (io_error) is decoded again with backoff (`pipeline/retry.py`) until
`retry.attempts` / `retry.deadline_s`, a timeout or crashed decoder up to `retry.decoder_attempts` times (then its
index row is final: a hang or crash that repeats is the file). A try that fails after some rows keeps them (they
are in the task's shard buffer): the next try skips them (`skip_windows`, as the tokenize stream does). Shard and
index writes are retried under the same policy (`OutputLayout.retry`). What still fails after that writes no index
row: the video is left for the next run (`committed: false`; the job exits 3).

The video index (`index=`, else `<output>/_index`; `pipeline/decode/index.py`): a video whose row is there is
decoded from it without probing (a corpus tokenized first, or a re-run), and every video probed here that decodes
gets its row, so training's source path (`data.index=`) and later jobs need not probe it.

Memory per call is bounded by `frames.shard_mb` (plus one row of decoded frames), not by the videos' length: the
decoder streams pieces of `frames_per_row` samples (`DecodeConfig.whole_clip` pieces), each is encoded as it arrives,
and a shard is committed whenever the encoded frames pass `shard_mb`.
"""

from __future__ import annotations

import dataclasses
import logging

from pipeline.decode import DecodeConfig, iter_windows
from pipeline.decode import status as st
from pipeline.decode.index import VideoIndex
from pipeline.frames.codec import encode_frame
from pipeline.frames.config import FramesConfig
from pipeline.frames.store import write_index, write_shard
from pipeline.storage import OutputLayout, is_transient_error
from pipeline.tokenize.config import RetryConfig
from pipeline.tokenize.failures import RetriedStream

log = logging.getLogger(__name__)


def cache_decode_config(decode: DecodeConfig, frames: FramesConfig) -> DecodeConfig:
    """The decode settings whose pieces are the cache's rows: every sample, `frames.size`², nothing dropped."""
    return dataclasses.replace(decode, size=frames.size, buckets=None, whole_clip=True,
                               max_frames=frames.frames_per_row, num_frames=None, stride=None, tail="skip")


class _Probes:
    """The video index as the cache uses it (pipeline/decode/index.py): a video's row spares its probe, and a video
    probed here that decoded gets its row. Neither is worth failing a video for: errors are logged."""

    def __init__(self, index: VideoIndex | None):
        self.index = index

    @staticmethod
    def identity(inp: dict) -> dict:
        return {k: inp.get(k) for k in ("source", "source_size", "source_etag", "source_mtime")}

    def find(self, inp: dict):
        if self.index is None or inp.get("source_size") is None:  # no listed identity to match a row against
            return None
        try:
            return self.index.find(self.identity(inp))
        except Exception as e:
            log.warning("video index: could not read the row of %s (%s); probing it", inp["source"], e)
            return None

    def keep(self, inp: dict, info) -> None:
        if self.index is None or info is None or inp.get("source_size") is None:
            return
        try:
            self.index.keep(self.identity(inp), info)
        except Exception as e:
            log.warning("video index: could not write the row of %s (%s); a later job probes it again",
                        inp["source"], e)


class _Shards:
    """Rows waiting for the next shard commit; `flush` commits them and says where each row went."""

    def __init__(self, layout: OutputLayout, limit_bytes: int):
        self.layout, self.limit = layout, limit_bytes
        self.rows: list[dict] = []
        self.bytes = 0
        self.where: dict[tuple[str, int], tuple[str, int]] = {}  # (source, row) -> (committed shard, row group)

    def add(self, row: dict) -> None:
        self.rows.append(row)
        self.bytes += sum(len(b) for b in row["frames"])
        if self.bytes >= self.limit:
            self.flush()

    def drop(self, source: str) -> None:
        """Forget a failed video's uncommitted rows."""
        self.rows = [r for r in self.rows if r["source"] != source]
        self.bytes = sum(len(b) for r in self.rows for b in r["frames"])

    def flush(self) -> None:
        if self.rows:
            name = write_shard(self.layout, self.rows)
            self.where.update({(r["source"], r["row"]): (name, i) for i, r in enumerate(self.rows)})
        self.rows, self.bytes = [], 0


def cache_videos(inputs: list[dict], layout: OutputLayout, decode: DecodeConfig, frames: FramesConfig,
                 storage_options: dict | None = None, retry: RetryConfig | None = None,
                 index: VideoIndex | None = None) -> list[dict]:
    """Cache `inputs` (rows with `source` and optional `source_size/etag/mtime`) under `retry` (module docstring;
    None: `RetryConfig()`); returns one result per input: `{source, status, message, num_frames, bytes, video_s,
    tries, committed}` (committed false: still failing after `retry.*`, left for the next run). `index`: the video
    index whose row of a video spares its probe, and which gets the row of each video probed here that decoded."""
    retry = retry or RetryConfig()
    cfg = cache_decode_config(decode, frames)
    shards = _Shards(layout, frames.shard_mb << 20)
    videos = _Probes(index)
    index, results = [], []
    try:
        for inp in inputs:
            results.append(_cache_one(inp, cfg, frames, shards, index, storage_options, retry, videos))
        shards.flush()
        if index:
            for r in index:
                n = r.pop("_rows")
                where = [shards.where[(r["source"], k)] for k in range(n)]
                r["shards"], r["rows"] = [w[0] for w in where], [w[1] for w in where]
            write_index(layout, index)
    except Exception as e:
        if not is_transient_error(e):
            raise
        # a store outage outlasting retry.* on a shard or index write: nothing of this group is committed (the index
        # is the commit point); every video in it is left for the next run, and the job goes on with other groups
        log.warning("frames cache: a write failed after retry.* (%s): %d videos left for the next run", e, len(inputs))
        done = {r["source"]: r for r in results}
        results = [{"source": inp["source"], "status": st.IO_ERROR, "message": f"write failed: {e}"[:500],
                    "num_frames": 0, "bytes": 0, "video_s": 0.0, "tries": done.get(inp["source"], {}).get("tries", 0),
                    "committed": False} for inp in inputs]
    return results


def _cache_one(inp: dict, cfg: DecodeConfig, frames: FramesConfig, shards: _Shards, index: list, storage_options,
               retry: RetryConfig, videos: "_Probes") -> dict:
    """Decode one video under `retry`, its rows into `shards`, its index row into `index`; returns its result."""
    src = inp["source"]
    known = videos.find(inp)
    stream = RetriedStream(lambda skip: iter_windows(src, cfg, storage_options=storage_options, skip_windows=skip,
                                                     info=known), frozenset(), retry, f"frames cache: {src}")
    ts, idx, nbytes, nrows = {}, {}, 0, 0
    for piece in stream:
        blobs = [encode_frame(f, frames.format) for f in piece.frames]
        nbytes += sum(len(b) for b in blobs)
        ts[piece.index], idx[piece.index] = piece.timestamps.tolist(), piece.indices.tolist()
        shards.add({"source": src, "row": piece.index, "frames": blobs, "timestamps": ts[piece.index],
                    "indices": idx[piece.index]})
        nrows += 1
    outcome = stream.outcome
    res = outcome.result
    status, message = res.status, res.message
    rows = sorted(ts)
    if status == st.OK and rows != list(range(nrows)):  # a retried stream gives every row once, in order
        status, message = st.CORRUPT, f"rows {rows} of {nrows} after {outcome.tries} tries"
    times = [t for r in rows for t in ts[r]]
    if status == st.OK and not times:
        status, message = st.CORRUPT, "no frame decoded"
    committed = outcome.final
    if status == st.OK:
        videos.keep(inp, getattr(stream.current, "info", None))
    out = {"source": src, "status": status, "message": message, "num_frames": len(times), "bytes": nbytes,
           "video_s": (times[-1] + 1.0 / cfg.fps) if times else 0.0, "tries": outcome.tries, "committed": committed}
    if status != st.OK:
        shards.drop(src)
        times, rows, nrows = [], [], 0
        out.update(num_frames=0, video_s=0.0)
        log.warning("frames cache: %s: %s %s after %d tries%s", src, status, message, outcome.tries,
                    "" if committed else " (left for the next run)")
        if not committed:
            return out
    index.append({"source": src, "status": status, "message": message or None,
                  **{k: inp.get(k) for k in ("source_size", "source_etag", "source_mtime")},
                  "num_frames": len(times), "size": frames.size, "format": frames.format,
                  "frames_per_row": frames.frames_per_row, "timestamps": times,
                  "indices": [i for r in rows for i in idx[r]], "_rows": nrows})
    return out
