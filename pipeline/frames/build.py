"""Build the frames cache for a group of videos: decode each once (isolated, time-limited: `pipeline.decode`),
store every sample at `frames.size`² in the chosen format, commit shards then the group's index (the protocol is
`pipeline/frames/store.py`). Pure: no Ray (`pipeline/frames/run.py` runs `cache_videos` in Ray Data tasks).

Memory per call is bounded by `frames.shard_mb` (plus one row of decoded frames), not by the videos' length: the
decoder streams pieces of `frames_per_row` samples (`DecodeConfig.whole_clip` pieces), each is encoded as it arrives,
and a shard is committed whenever the encoded frames pass `shard_mb`.
"""

from __future__ import annotations

import dataclasses
import logging

from pipeline.decode import DecodeConfig, iter_windows
from pipeline.decode import status as st
from pipeline.frames.codec import encode_frame
from pipeline.frames.config import FramesConfig
from pipeline.frames.store import write_index, write_shard
from pipeline.storage import OutputLayout

log = logging.getLogger(__name__)


def cache_decode_config(decode: DecodeConfig, frames: FramesConfig) -> DecodeConfig:
    """The decode settings whose pieces are the cache's rows: every sample, `frames.size`², nothing dropped."""
    return dataclasses.replace(decode, size=frames.size, buckets=None, whole_clip=True,
                               max_frames=frames.frames_per_row, num_frames=None, stride=None, tail="skip")


def is_transient(status: str, message: str | None) -> bool:
    """Left for the next run (no index row): store errors, timeouts, a crashed decoder."""
    return status in st.TRANSIENT or st.is_decoder_crash(status, message)


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
                 storage_options: dict | None = None) -> list[dict]:
    """Cache `inputs` (rows with `source` and optional `source_size/etag/mtime`); returns one result per input:
    `{source, status, message, num_frames, bytes, committed}` (committed false: transient, left for the next run)."""
    cfg = cache_decode_config(decode, frames)
    shards = _Shards(layout, frames.shard_mb << 20)
    index, results = [], []
    for inp in inputs:
        src = inp["source"]
        stream = iter_windows(src, cfg, storage_options=storage_options)
        ts, idx, nbytes, nrows = [], [], 0, 0
        for piece in stream:
            blobs = [encode_frame(f, frames.format) for f in piece.frames]
            nbytes += sum(len(b) for b in blobs)
            ts += piece.timestamps.tolist()
            idx += piece.indices.tolist()
            shards.add({"source": src, "row": piece.index, "frames": blobs, "timestamps": piece.timestamps.tolist(),
                        "indices": piece.indices.tolist()})
            nrows += 1
        res = stream.result
        status, message = res.status, res.message
        if status == st.OK and not ts:
            status, message = st.CORRUPT, "no frame decoded"
        out = {"source": src, "status": status, "message": message, "num_frames": len(ts), "bytes": nbytes,
               "committed": not is_transient(status, message)}
        results.append(out)
        if status != st.OK:
            shards.drop(src)
            ts, idx, nrows = [], [], 0
            log.warning("frames cache: %s: %s %s%s", src, status, message,
                        " (left for the next run)" if not out["committed"] else "")
            if not out["committed"]:
                continue
        index.append({"source": src, "status": status, "message": message or None,
                      **{k: inp.get(k) for k in ("source_size", "source_etag", "source_mtime")},
                      "num_frames": len(ts), "size": frames.size, "format": frames.format,
                      "frames_per_row": frames.frames_per_row, "timestamps": ts, "indices": idx,
                      "_rows": nrows})
    shards.flush()
    if index:
        for r in index:
            n = r.pop("_rows")
            where = [shards.where[(r["source"], k)] for k in range(n)]
            r["shards"], r["rows"] = [w[0] for w in where], [w[1] for w in where]
        write_index(layout, index)
    return results
