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
from pipeline.decode.index import VideoIndex, identity
from pipeline.decode.windows import WindowCutter
from pipeline.frames.codec import encode_frame
from pipeline.frames.config import FramesConfig
from pipeline.frames.store import assemble_segments, write_index, write_segment, write_shard
from pipeline.storage import OutputLayout, is_transient_error
from pipeline.tokenize.config import RetryConfig
from pipeline.tokenize.failures import RetriedStream

log = logging.getLogger(__name__)


def cache_decode_config(decode: DecodeConfig, frames: FramesConfig) -> DecodeConfig:
    """The decode settings whose pieces are the cache's rows: every sample, `frames.size`², nothing dropped."""
    return dataclasses.replace(decode, size=frames.size, buckets=None, whole_clip=True,
                               max_frames=frames.frames_per_row, num_frames=None, stride=None, tail="skip")


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


class GroupWriter:
    """The frames of a group of videos, committed together (`pipeline/frames/store.py`): each piece of samples is
    encoded into the shard buffer as it arrives (`add`), each video ends with its index row (`finish`) or with
    nothing (`forget`: left for the next run), and `commit` flushes the shards and then writes the group's index part
    (the commit point). Used by the frames-cache job (`cache_videos`) and the tokenize job's side output
    (`frames.output`, `pipeline/tokenize/stages.py`)."""

    def __init__(self, layout: OutputLayout, frames: FramesConfig):
        self.layout, self.frames = layout, frames
        self.shards = _Shards(layout, frames.shard_mb << 20)
        self.index: list[dict] = []
        self.segments: list[tuple[dict, range, int]] = []  # (input, rows it owns, rows of the video)
        self._ts: dict[str, dict[int, list]] = {}
        self._idx: dict[str, dict[int, list]] = {}
        self._bytes: dict[str, int] = {}

    def add(self, source: str, piece) -> None:
        """One piece of `source`'s samples (a `Window` of the cache decode: row `piece.index`)."""
        blobs = [encode_frame(f, self.frames.format) for f in piece.frames]
        self._bytes[source] = self._bytes.get(source, 0) + sum(len(b) for b in blobs)
        ts, idx = piece.timestamps.tolist(), piece.indices.tolist()
        self._ts.setdefault(source, {})[piece.index] = ts
        self._idx.setdefault(source, {})[piece.index] = idx
        self.shards.add({"source": source, "row": piece.index, "frames": blobs, "timestamps": ts, "indices": idx})

    def finish(self, inp: dict, status: str, message: str, fps: float) -> dict:
        """End `inp`'s video with its index row (ok, or a final failure: its rows are dropped); returns `{status,
        message, num_frames, bytes, video_s}` (a row set not `0..n-1`, or no frame, turns ok into corrupt)."""
        src = inp["source"]
        ts, idx = self._ts.pop(src, {}), self._idx.pop(src, {})
        nbytes = self._bytes.pop(src, 0)
        rows = sorted(ts)
        if status == st.OK and rows != list(range(len(rows))):  # a retried stream gives every row once, in order
            status, message = st.CORRUPT, f"rows {rows} of {len(rows)}"
        times = [t for r in rows for t in ts[r]]
        if status == st.OK and not times:
            status, message = st.CORRUPT, "no frame decoded"
        if status != st.OK:
            self.shards.drop(src)
            rows, times, nbytes = [], [], 0
        f = self.frames
        self.index.append({"source": src, "status": status, "message": message or None,
                           **identity(inp), "num_frames": len(times), "size": f.size, "format": f.format,
                           "frames_per_row": f.frames_per_row, "timestamps": times,
                           "indices": [i for r in rows for i in idx[r]], "_rows": len(rows)})
        return {"status": status, "message": message, "num_frames": len(times), "bytes": nbytes,
                "video_s": (times[-1] + 1.0 / fps) if times else 0.0}

    def finish_segment(self, inp: dict, own: range, num_rows: int) -> dict | None:
        """End one segment of `inp`'s video that decoded well (`segment_rows`): its owned rows go to a segment part
        at `commit`. Returns None, or `{status, message}` (corrupt) when the rows it got are not the owned ones (then
        nothing of it is kept: the caller ends the video with that reason)."""
        src = inp["source"]
        got = sorted(self._ts.get(src, {}))
        if got != list(own):
            self.forget(src)
            return {"status": st.CORRUPT, "message": f"segment rows {got} instead of {list(own)}"}
        self.segments.append((inp, own, num_rows))
        return None

    def forget(self, source: str) -> None:
        """`source` is left for the next run: its rows are dropped and it gets no index row."""
        self.shards.drop(source)
        for d in (self._ts, self._idx, self._bytes):
            d.pop(source, None)

    def commit(self) -> None:
        """Shards first, then the group's index part (the commit point); raises what the writes raise after
        `OutputLayout.retry`."""
        self.shards.flush()
        if self.index:
            rows = []
            for r in self.index:
                n = r["_rows"]
                where = [self.shards.where[(r["source"], k)] for k in range(n)]
                rows.append({**{k: v for k, v in r.items() if k != "_rows"},
                             "shards": [w[0] for w in where], "rows": [w[1] for w in where]})
            write_index(self.layout, rows)
        for inp, own, num_rows in self.segments:  # after the shards: a part names only committed rows
            src = inp["source"]
            ts, idx = self._ts.pop(src, {}), self._idx.pop(src, {})
            self._bytes.pop(src, None)
            if own:
                write_segment(self.layout, [
                    {**identity(inp), "num_rows": num_rows, "row": r, "shard": self.shards.where[(src, r)][0],
                     "row_group": self.shards.where[(src, r)][1], "timestamps": ts[r], "indices": idx[r]}
                    for r in own])
            row = assemble_segments(self.layout, src, self.frames)
            if row is not None:  # every row of the video is in: its index row, the commit point
                write_index(self.layout, [row])


def segment_rows(num_samples: int, plan, segment, frames_per_row: int) -> tuple[range, range]:
    """(rows to decode, rows owned) of a segment (`pipeline.decode.windows.WindowRange` over the windows of `plan`)
    of a video of `num_samples` samples, in frames rows of `frames_per_row`: a segment owns the rows whose first
    sample lies in its samples (from its first window's first sample, or 0, to the next segment's first sample, or
    the end), so the segments' rows are every row once; it decodes those rows and its windows' samples."""
    n, fpr = len(plan.spans), frames_per_row
    b0 = 0 if segment.first == 0 else plan.spans[segment.first][0]
    b1 = num_samples if segment.stop >= n else plan.spans[segment.stop][0]
    own = range(-(-b0 // fpr), -(-b1 // fpr))
    lo = min(own.start * fpr, plan.spans[segment.first][0])
    hi = max(min(own.stop * fpr, num_samples), plan.spans[min(segment.stop, n) - 1][1])
    return range(lo // fpr, -(-hi // fpr)), own


class WindowsFromPieces:
    """The tokenize decode stage's side output (`frames.output`): one decode of an input gives its frames-cache rows
    and its token windows. Iterating it iterates `pieces` (a `RetriedStream` of the cache decode,
    `cache_decode_config`: every sample at `frames.size`², rows of `frames_per_row`), stores each piece in `group`
    and yields the windows of `decode`'s plan (except `skip`) cut from the samples (`WindowCutter`): the windows the
    plain decode gives, bit for bit, as the frames are the same (tests/tokenize/test_frames_output.py). Afterwards
    `outcome` and `sent` speak of the windows, as a `RetriedStream` of them would."""

    def __init__(self, pieces: RetriedStream, decode: DecodeConfig, skip: frozenset, group: GroupWriter, source: str,
                 segment=None, first_row: int = 0):
        self.pieces, self.decode, self.skip, self.group, self.source = pieces, decode, skip, group, source
        # a segment (`WindowRange` of windows): pieces arrive from row `first_row` on (its `segment_rows`, or 0),
        # its windows are cut and only the rows it owns stored
        self.segment, self.first_row = segment, first_row
        self.own: range | None = None
        self.num_rows = 0
        self.cutter: WindowCutter | None = None
        self.sent = 0

    @property
    def tries(self) -> int:
        return self.pieces.tries

    @property
    def result(self):
        """The try in progress's result, with the windows' total."""
        res = self.pieces.result
        n = len(self.cutter.plan.spans) if self.cutter is not None else 0
        return dataclasses.replace(res, num_windows_total=n)

    @property
    def current(self):
        return self.pieces.current

    def __iter__(self):
        for piece in self.pieces:
            if self.cutter is None:  # the header came before the first piece: the sample count, so the plan
                n, fpr = self.pieces.current.result.num_samples, self.group.frames.frames_per_row
                plan = self.decode.window_plan(n)
                self.num_rows, skip = -(-n // fpr), set(self.skip)
                if self.segment is not None:
                    _, self.own = segment_rows(n, plan, self.segment, fpr)
                    skip |= set(range(len(plan.spans))) - set(self.segment(len(plan.spans)))
                self.cutter = WindowCutter(plan, frozenset(skip), self.first_row * fpr)
            if self.own is None or piece.index in self.own:
                self.group.add(self.source, piece)
            for w in self.cutter.add(piece.frames, piece.timestamps, piece.indices):
                self.sent += 1
                yield w

    @property
    def outcome(self):
        """The pieces' outcome with the windows' facts: their total, `too_short` when none fits (the frames are
        still cached), `corrupt` when the samples ended before a planned window."""
        out = self.pieces.outcome
        res = out.result
        plan = self.decode.window_plan(res.num_samples)
        res = dataclasses.replace(res, num_windows_total=len(plan.spans))
        if res.status == st.OK and not plan.spans:
            res = dataclasses.replace(res, status=st.TOO_SHORT, message=(
                f"{res.num_samples} frames at {self.decode.fps:g} fps ({res.duration_s:.2f}s) is shorter than one "
                f"window of {self.decode.frames_per_window} (tail={self.decode.tail})"))
        elif res.status == st.OK and (self.cutter is None or not self.cutter.done):
            res = dataclasses.replace(res, status=st.CORRUPT, message="the samples ended before the last window")
        return dataclasses.replace(out, result=res)


def cache_videos(inputs: list[dict], layout: OutputLayout, decode: DecodeConfig, frames: FramesConfig,
                 storage_options: dict | None = None, retry: RetryConfig | None = None,
                 index: VideoIndex | None = None) -> list[dict]:
    """Cache `inputs` (rows with `source` and optional `source_size/etag/mtime`) under `retry` (module docstring;
    None: `RetryConfig()`); returns one result per input: `{source, status, message, num_frames, bytes, video_s,
    tries, committed}` (committed false: still failing after `retry.*`, left for the next run). `index`: the video
    index whose row of a video spares its probe, and which gets the row of each video probed here that decoded."""
    retry = retry or RetryConfig()
    cfg = cache_decode_config(decode, frames)
    group = GroupWriter(layout, frames)
    results = []
    try:
        for inp in inputs:
            results.append(_cache_one(inp, cfg, group, storage_options, retry, index))
        group.commit()
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


def _cache_one(inp: dict, cfg: DecodeConfig, group: GroupWriter, storage_options, retry: RetryConfig,
               index: VideoIndex | None) -> dict:
    """Decode one video under `retry` into `group`; returns its result."""
    src = inp["source"]
    if inp.get("source_size") is None:  # no listed identity to match a video index row against
        index = None
    known = index.try_find(identity(inp)) if index is not None else None
    stream = RetriedStream(lambda skip: iter_windows(src, cfg, storage_options=storage_options, skip_windows=skip,
                                                     info=known), frozenset(), retry, f"frames cache: {src}")
    for piece in stream:
        group.add(src, piece)
    outcome = stream.outcome
    res = outcome.result
    probed = getattr(stream.current, "info", None)
    if res.status == st.OK and probed is not None and index is not None:
        index.try_keep(identity(inp), probed)
    out = {"source": src, "tries": outcome.tries, "committed": outcome.final}
    if not outcome.final:
        group.forget(src)
        out.update(status=res.status, message=res.message, num_frames=0, bytes=0, video_s=0.0)
    else:
        out.update(group.finish(inp, res.status, res.message, cfg.fps))
    if out["status"] != st.OK:
        log.warning("frames cache: %s: %s %s after %d tries%s", src, out["status"], out["message"], outcome.tries,
                    "" if outcome.final else " (left for the next run)")
    return out
