"""Read training windows from the frames cache (`pipeline/frames/store.py`), drawn exactly as the source path
draws them (`pipeline/train/data.py: random_clips`): the windows of a video with N cached samples are
`plan_windows(N, T, stride=1, tail="pad")` — every start in `[0, N - T]`, or one padded window when N < T — and
`RandomWindows(seed, count)` picks among them, so the same seeds give the same starts on both paths (tests).

A window reads only its one or two Parquet row groups. Frames come out at the cache's size; another `size`
(stage 1's 128² from a 256² cache) is the decode stage's spatial policy applied to the cached frames
(`pipeline.decode.spatial.resize_crop`, antialiased bilinear): its difference from decoding the source at 128² is
measured in docs/frames_cache.md and tests/frames/test_read.py. Pure: no Ray.

`FramesCache` opens the index once per process (`pipeline/frames/index.py`: the manifest and the parts not yet
consolidated) and looks a video up in its hash bucket: one small file read, at most `MAX_BUCKETS` kept, so a
process's memory does not grow with the number of cached videos. It keeps the open shard files' footers, so a
decode task that reads many windows pays for them once.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

import numpy as np

from pipeline.decode.spatial import resize_crop
from pipeline.decode.windows import RandomWindows, plan_windows
from pipeline.frames.codec import decode_frames
from pipeline.frames.index import IndexView
from pipeline.storage import OutputLayout

log = logging.getLogger(__name__)

_OPEN: dict[tuple, "FramesCache"] = {}  # one opened index per cache URL per process
MAX_BUCKETS = 8  # index buckets (~4096 videos each) a process keeps loaded


@dataclass(frozen=True)
class Entry:
    num_frames: int
    size: int
    format: str
    frames_per_row: int
    shards: tuple[str, ...]
    rows: tuple[int, ...]


class FramesCache:
    """The cached videos of one cache folder (ok rows of its index) and window reads from them."""

    def __init__(self, url: str, storage_options: dict | None = None):
        self.layout = OutputLayout(url, storage_options or {})
        self.index = IndexView(self.layout, MAX_BUCKETS)
        self._entries: dict[str, Entry | None] = {}  # looked up so far (bounded like the buckets)
        record = json.loads(self.layout.read_text("_job.json") or "{}")
        self.settings = record.get("settings", {})  # fps, size, format, frames_per_row (pipeline/frames/run.py)
        if self.index.empty:
            log.warning("frames cache %s holds no cached video (no index rows): every clip decodes its source; "
                        "did you run jobs/cache_frames.py output=%s?", url, url)
        self._files: dict[str, object] = {}
        self.hits = 0  # clips read from the cache by this process
        self.misses = 0  # videos not in the cache (their clips came from the source path)

    @classmethod
    def open(cls, url: str, storage_options: dict | None = None) -> "FramesCache":
        """The process-wide instance for `url` (its index is loaded once)."""
        key = (url, repr(sorted((storage_options or {}).items())))
        if key not in _OPEN:
            _OPEN[key] = cls(url, storage_options)
        return _OPEN[key]

    def entry(self, source: str) -> Entry | None:
        """Where `source`'s frames are, or None when the cache has no frames of it."""
        if source in self._entries:
            return self._entries[source]
        r = self.index.lookup(source)
        e = None if r is None or r["status"] != "ok" else Entry(
            r["num_frames"], r["size"], r["format"], r["frames_per_row"], tuple(r["shards"]), tuple(r["rows"]))
        if len(self._entries) >= 4096:
            self._entries.pop(next(iter(self._entries)))
        self._entries[source] = e
        return e

    def __contains__(self, source: str) -> bool:
        return self.entry(source) is not None

    def _row(self, e: Entry, r: int) -> list:
        import pyarrow.parquet as pq

        name = e.shards[r]
        pf = self._files.get(name)
        if pf is None:
            if len(self._files) > 64:  # bound the open files (and their footers) per process
                self._files.clear()
            pf = self._files[name] = pq.ParquetFile(self.layout.fs.open(self.layout.path(name), "rb"))
        return pf.read_row_group(e.rows[r], columns=["frames"]).column("frames")[0].values.to_pylist()

    def frames(self, source: str, start: int, stop: int) -> np.ndarray:
        """Cached samples `[start, stop)` of `source`: `(stop - start, size, size, 3)` uint8."""
        e = self.entry(source)
        k = e.frames_per_row
        blobs = []
        for r in range(start // k, (stop - 1) // k + 1):
            row = self._row(e, r)
            lo, hi = max(start - r * k, 0), min(stop - r * k, len(row))
            blobs += row[lo:hi]
        return decode_frames(blobs, e.format, e.size, e.size)

    def random_clips(self, source: str, num_frames: int, count: int, seed: tuple, size: int) -> list[np.ndarray]:
        """`count` clips `(num_frames, size, size, 3)` uint8 at the starts `random_clips` draws with `seed`."""
        e = self.entry(source)
        plan = plan_windows(e.num_frames, num_frames, 1, "pad")
        clips = []
        for w in RandomWindows(tuple(seed), count)(len(plan.spans)):
            start, stop, pad = plan.spans[w]
            clip = self.frames(source, start, stop)
            if pad:
                clip = np.concatenate([clip, np.repeat(clip[-1:], pad, axis=0)])
            clips.append(clip if size == e.size else resize_crop(clip, size))
        self.hits += len(clips)
        return clips


def cached_clips(url: str, storage_options: dict | None, source: str, *, fps: float, num_frames: int, count: int,
                 seed: tuple, size: int) -> list[np.ndarray] | None:
    """The training path's hook (`pipeline/train/data.py`): `count` clips of `source` from the cache at `url`, or
    None when the video is not cached (logged and counted in `FramesCache.misses`; the caller decodes the source).
    A cache of another frame rate, or smaller than `size`, is a configuration error (raised, naming the keys)."""
    cache = FramesCache.open(url, storage_options)
    cached_fps = cache.settings.get("fps")
    if cached_fps is not None and abs(float(cached_fps) - float(fps)) > 1e-9:
        raise ValueError(f"data.frames={url} holds {cached_fps} FPS frames but decode.fps={fps}: build a cache at "
                         f"decode.fps (jobs/cache_frames.py decode.fps={fps}) or set decode.fps={cached_fps}")
    if source not in cache:
        cache.misses += 1
        log.warning("frames cache %s has no frames of %s: decoding the source (%d videos so far in this process)",
                    url, source, cache.misses)
        return None
    cached_size = cache.entry(source).size
    if cached_size < size:
        raise ValueError(f"data.frames={url} holds {cached_size}² frames but decode.size={size}: training would "
                         "upscale them; build the cache at frames.size >= decode.size")
    return cache.random_clips(source, num_frames, count, seed, size)
