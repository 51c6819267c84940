"""The two decode paths behind :func:`pipeline.decode.sample_frames`: decord and PyAV.

Both return the same thing for the same file — the frames the resampling rule (``pipeline.decode.resample``) names, already
rotated for display and passed through the spatial policy — so tests can hold them to one standard:
``frames`` (K, h, w, 3) uint8, ``timestamps`` (K,) float64 seconds since the first frame, ``indices`` (K,) int64
source frame indices in presentation order.

Only sampled frames are converted to RGB and resized. The PyAV path also skips *decoding* of frames that nothing
samples and nothing references: with the timestamps known from the probe, each packet is sent with FFmpeg's
``skip_frame=NONREF`` unless its frame is sampled (the decoder then drops non-reference pictures, e.g. most
B-frames, before reconstruction). With frame threads the flag still applies to the packet it was set for, because
FFmpeg copies it into the worker's context when the packet is submitted (tests read the frames back with 3 threads).
"""

from __future__ import annotations

import logging
from fractions import Fraction

import numpy as np

from .source import Readable, as_file
from .probe import ProbeInfo
from .resample import StreamingSelector, select_frames
from .spatial import Size, resize_crop_frame
from .status import CORRUPT, DecodeError

log = logging.getLogger(__name__)

_BATCH = 16  # frames per decord get_batch call: bounds memory at native resolution


class Unverified(Exception):
    """decord's view of the file disagrees with the probe: use the PyAV path instead."""


class _Collector:
    """Accumulates chosen frames, each resized as it arrives (memory stays at the output size)."""

    def __init__(self, size: Size):
        self.size, self.done = size, []

    def add(self, frame: np.ndarray) -> None:
        self.done.append(resize_crop_frame(frame, self.size))

    def result(self) -> np.ndarray:
        if not self.done:
            raise DecodeError(CORRUPT, "no frame could be decoded")
        return np.stack(self.done)


def decode_decord(readable: Readable, info: ProbeInfo, fps: float, size: Size, threads: int = 1):
    """decord path: verify its frame list against the probe, then ``get_batch`` the distinct sampled frames."""
    import decord

    if not info.decord_ok:  # forced by the caller where the probe says decord is wrong
        raise Unverified(f"decord is not trusted for {info.codec} in {info.format_name}"
                         + (" with B-frames" if info.reordered else ""))
    try:
        vr = decord.VideoReader(as_file(readable), ctx=decord.cpu(0), num_threads=threads)
        n = len(vr)
        starts = vr.get_frame_timestamp(np.arange(n))[:, 0].astype(np.float64) if n else np.empty(0)
    except (decord.DECORDError, RuntimeError) as e:  # DECORDError is not a RuntimeError; truncation raises the latter
        raise Unverified(f"decord cannot open the file: {str(e).splitlines()[0][:200]}") from None
    rel_probe = info.pts - info.pts[0]
    if n != len(info.pts):
        raise Unverified(f"decord sees {n} frames, the container holds {len(info.pts)}")
    rel = starts - starts[0]
    if not np.all(np.isfinite(rel)) or np.max(np.abs(rel - rel_probe)) > 2e-3:
        raise Unverified("decord's frame timestamps disagree with the container's")
    idx, times = select_frames(info.pts_ticks, info.end_tick, fps, info.time_base, info.rates)
    if len(idx) == 0:
        raise DecodeError(CORRUPT, "no frame to sample")
    uniq, inverse = np.unique(idx, return_inverse=True)
    out = _Collector(size)
    try:
        for i in range(0, len(uniq), _BATCH):
            batch = vr.get_batch(uniq[i : i + _BATCH].tolist()).asnumpy()
            for f in batch:  # decord applies the display matrix itself (tests check all four rotations)
                out.add(f)
    except (decord.DECORDError, RuntimeError) as e:
        raise DecodeError(CORRUPT, f"decord failed at a sampled frame: {str(e).splitlines()[0][:200]}") from None
    finally:
        del vr
    frames = out.result()[inverse]
    return frames, times, idx


def _rgb(frame) -> np.ndarray:
    """(H, W, 3) uint8 RGB of a PyAV frame, turned for display by its display matrix."""
    arr = frame.to_ndarray(format="rgb24")
    quarter = int(round((frame.rotation or 0) / 90.0)) % 4  # counter-clockwise quarter turns, as np.rot90 counts
    return np.ascontiguousarray(np.rot90(arr, k=quarter)) if quarter else arr


def decode_pyav(readable: Readable, info: ProbeInfo, fps: float, size: Size, threads: int = 1,
                skip_nonref: bool = True):
    """PyAV path. With the container's timestamps known (MP4/MKV) the selection is made up front and unneeded
    non-reference frames are never decoded; otherwise frames are chosen as they come out of the decoder, by their
    presentation time (MPEG-PS: the decoder's best-effort timestamp; AVI: output position / frame rate, because
    AVI stores no presentation times and FFmpeg's guesses are in decode order)."""
    import av

    container = av.open(as_file(readable), mode="r")
    try:
        stream = container.streams.video[0]
        ctx = stream.codec_context
        ctx.thread_count, ctx.thread_type = threads, "AUTO"
        if info.pts_reliable:
            return _decode_known(container, stream, info, fps, size, skip_nonref)
        return _decode_streaming(container, stream, info, fps, size)
    except av.FFmpegError as e:
        raise DecodeError(CORRUPT, f"{info.format_name}/{info.codec}: decoding failed: {e}") from None
    finally:
        container.close()


def _decode_known(container, stream, info: ProbeInfo, fps: float, size: Size, skip_nonref: bool):
    idx, times = select_frames(info.pts_ticks, info.end_tick, fps, info.time_base, info.rates)
    if len(idx) == 0:
        raise DecodeError(CORRUPT, "no frame to sample")
    wanted = {int(t): i for i, t in zip(idx.tolist(), info.pts_ticks[idx].tolist())}  # pts tick -> frame index
    ctx = stream.codec_context
    got: dict[int, int] = {}  # frame index -> position in the collector
    out = _Collector(size)

    def take(frames):
        for frame in frames:
            i = wanted.get(frame.pts)
            if i is not None and i not in got:
                got[i] = len(got)
                out.add(_rgb(frame))

    for pkt in container.demux(stream):
        if pkt.size == 0:
            continue
        if skip_nonref:
            ctx.skip_frame = "DEFAULT" if pkt.pts in wanted else "NONREF"
        take(stream.decode(pkt))
        if len(got) == len(wanted):
            break  # everything sampled is decoded; the rest of the file is not needed
    else:
        ctx.skip_frame = "DEFAULT"
        take(stream.decode(None))
    missing = sorted(set(wanted.values()) - set(got))
    if missing:
        raise DecodeError(CORRUPT, f"{len(missing)} sampled frames did not decode (first: frame {missing[0]})")
    frames = out.result()
    pos = np.array([got[i] for i in idx.tolist()], dtype=np.int64)
    return frames[pos], times, idx


def _decode_streaming(container, stream, info: ProbeInfo, fps: float, size: Size):
    # AVI: the n-th output frame is at tick n of 1/rate; otherwise the decoder's timestamps in the stream time base.
    tb = 1 / info.rate if info.cfr_order else Fraction(stream.time_base)
    nominal = max(1, round(1 / (info.rate * tb))) if info.rate else 1
    sel = StreamingSelector(fps, tb)
    out = _Collector(size)
    ticks, indices, counts = [], [], []
    pending, pending_tick, n, prev = None, 0, 0, None

    def emit(count: int):
        if count:
            out.add(_rgb(pending))
            ticks.append(pending_tick)
            indices.append(n - 1)
            counts.append(count)

    for frame in container.decode(stream):
        tick = n if info.cfr_order else frame.pts
        if tick is None:  # no timestamp at all: assume the nominal rate after the previous frame
            tick = prev + nominal if prev is not None else 0
        if prev is not None and tick <= prev:
            continue  # a frame that does not advance presentation time is never on screen
        count = sel.push(tick)
        if pending is not None:
            emit(count)
        pending, pending_tick, prev, n = frame, tick, tick, n + 1
    if pending is None:
        raise DecodeError(CORRUPT, "no frame could be decoded")
    dur = pending.duration if (pending.duration and not info.cfr_order) else nominal
    emit(sel.finish(pending_tick + dur))
    frames = out.result()
    reps = np.asarray(counts, dtype=np.int64)
    pos = np.repeat(np.arange(len(counts)), reps)
    secs = np.asarray([float((t - sel.start) * tb) for t in ticks], dtype=np.float64)
    return frames[pos], np.repeat(secs, reps), np.repeat(np.asarray(indices, np.int64), reps)
