"""The decode paths behind :func:`pipeline.decode.sample_frames` and :func:`pipeline.decode.iter_windows`.

Every path hands out the same thing for the same file — the distinct source frames the resampling rule
(``pipeline.decode.resample``) names, in increasing frame index, already rotated for display and passed through the
spatial policy — one at a time, so a caller holds a few frames, never the video:
``iter_decord`` / ``iter_pyav`` yield ``(index, frame)`` with ``frame`` (h, w, 3) uint8 and ``index`` the source frame
index in presentation order. ``decode_decord`` / ``decode_pyav`` collect them for :func:`sample_frames`:
``frames`` (K, h, w, 3) uint8, ``timestamps`` (K,) float64 seconds since the first frame, ``indices`` (K,) int64.

Only sampled frames are converted to RGB and resized. The PyAV path also skips *decoding* of frames that nothing
samples and nothing references: with the timestamps known from the probe, each packet is sent with FFmpeg's
``skip_frame=NONREF`` unless its frame is sampled (the decoder then drops non-reference pictures, e.g. most
B-frames, before reconstruction). With frame threads the flag still applies to the packet it was set for, because
FFmpeg copies it into the worker's context when the packet is submitted (tests read the frames back with 3 threads).
Nor does it decode the rest of a GOP after the GOP's last needed frame: those packets are not sent, and the decoder
restarts at the next clean key frame (``ProbeInfo.restart_ticks``) as after a seek — a 30-frame GOP sampled every
10th frame skips about a third of its frames, an all-intra stream decodes only its samples (``tests/decode/
test_skip.py`` checks the frames against a full decode for open and closed GOPs of five codecs).

Runs of wanted frames (``runs``): a caller that needs only some windows (training) passes one run per window; the PyAV
path seeks to the restart point (``ProbeInfo.restart_ticks``) at or before each run's first frame and decodes through its
last: a wanted frame's pts is at or after that key frame's, so open-GOP leading pictures never matter (seeking to the
frame's own pts would not do: MP4 seeks by decode time, which can land on the next key frame, the one whose leading
picture the frame is); decord seeks by itself in ``get_batch``.
"""

from __future__ import annotations

import logging
import os
import tempfile
from fractions import Fraction
from typing import Iterator, Sequence

import numpy as np

from .probe import ProbeInfo
from .resample import StreamingSelector, select_frames
from .source import Readable, as_file
from .spatial import Size, normalize_size, resize_crop_frame, resize_crop_image, rgb_image
from .status import CORRUPT, IO_ERROR, DecodeError

log = logging.getLogger(__name__)

_BATCH = 16  # frames per decord get_batch call: bounds memory at native resolution


class Unverified(Exception):
    """decord's view of the file disagrees with the probe, or decord fails on it: use the PyAV path instead."""


def _first_line(e: BaseException) -> str:
    return (str(e).splitlines() or [""])[0][:200]


def iter_decord(readable: Readable, info: ProbeInfo, wanted: np.ndarray, size: Size,
                threads: int = 1) -> Iterator[tuple[int, np.ndarray]]:
    """decord path: verify its frame list against the probe, then ``get_batch`` the ``wanted`` frames (sorted,
    distinct). Raises ``Unverified`` (before or while yielding) wherever decord cannot be relied on."""
    import decord

    if not info.decord_ok:  # forced by the caller where the probe says decord is wrong
        raise Unverified(f"decord is not trusted for {info.codec} in {info.format_name}"
                         + (" with B-frames" if info.reordered else ""))
    try:
        vr = decord.VideoReader(as_file(readable), ctx=decord.cpu(0), num_threads=threads)
        n = len(vr)
        starts = vr.get_frame_timestamp(np.arange(n))[:, 0].astype(np.float64) if n else np.empty(0)
    except (decord.DECORDError, RuntimeError) as e:  # DECORDError is not a RuntimeError; truncation raises the latter
        raise Unverified(f"decord cannot open the file: {_first_line(e)}") from None
    try:
        rel_probe = info.pts - info.pts[0]
        if n != len(info.pts):
            raise Unverified(f"decord sees {n} frames, the container holds {len(info.pts)}")
        rel = starts - starts[0]
        if not np.all(np.isfinite(rel)) or np.max(np.abs(rel - rel_probe)) > 2e-3:
            raise Unverified("decord's frame timestamps disagree with the container's")
        wanted = [int(i) for i in wanted]
        for i in range(0, len(wanted), _BATCH):
            part = wanted[i : i + _BATCH]
            try:
                batch = vr.get_batch(part).asnumpy()
            except (decord.DECORDError, RuntimeError) as e:
                # e.g. decord 0.6.0 on 48x40 H.264: "DECORDArrayCopyFromTo: The size must exactly match": its
                # frame buffer is padded; the frames are fine for FFmpeg, so this is decord's failure, not the file's
                raise Unverified(f"decord failed at frame {part[0]}: {_first_line(e)}") from None
            for j, f in zip(part, batch):  # decord applies the display matrix itself (tests check all four rotations)
                yield j, resize_crop_frame(f, size)
    finally:
        del vr


def _sampled(frame, size: Size, turn: int | None = None) -> np.ndarray:
    """(h, w, 3) uint8 of a sampled PyAV frame: turned for display by its display matrix (or by ``turn`` degrees
    counter-clockwise, for frames decoded without their container: ``packets.py``), then the spatial policy.

    swscale converts to rgb24, never rgba: this FFmpeg's YUV->RGBA path gets the last two columns wrong at widths
    such as 850 or 162 and, with its slice threads, differs from run to run (tests check). Unturned frames go to
    Pillow straight from the converted plane (``rgb_image``), skipping a numpy copy (~0.7 ms per 720p frame)."""
    deg = (frame.rotation or 0) if turn is None else turn
    quarter = int(round(deg / 90.0)) % 4  # counter-clockwise quarter turns, as np.rot90 counts
    size = normalize_size(size)
    if quarter or size is None:
        arr = frame.to_ndarray(format="rgb24")
        return resize_crop_frame(np.ascontiguousarray(np.rot90(arr, k=quarter)) if quarter else arr, size)
    rgb = frame.reformat(format="rgb24")
    plane = rgb.planes[0]
    return resize_crop_image(rgb_image(plane, rgb.width, rgb.height, plane.line_size), size)


def iter_pyav(readable: Readable, info: ProbeInfo, runs: Sequence[np.ndarray], size: Size, threads: int = 1,
              skip_nonref: bool = True, seek: bool = False, sample=_sampled) -> Iterator[tuple[int, np.ndarray]]:
    """PyAV path for containers with presentation times (``info.pts_reliable``): yield the frames of each run
    (sorted distinct indices; runs in increasing order, not overlapping) in increasing index order. ``seek``: jump to
    each run's key frame instead of decoding from the start (worth it when runs are far apart). ``sample(frame,
    size)`` makes what is yielded of a decoded frame (benchmarks pass a no-op to time the
    decoding alone)."""
    import av

    container = av.open(as_file(readable), mode="r")
    try:
        stream = container.streams.video[0]
        ctx = stream.codec_context
        ctx.thread_count, ctx.thread_type = threads, "AUTO"
        if not seek:  # one pass from the start: frames of a later run may leave the decoder during an earlier one
            runs = [np.concatenate([np.asarray(r, np.int64) for r in runs])] if len(runs) else []
        packets = None
        for run in runs:
            if len(run) == 0:
                continue
            if seek:  # to the restart point before the run: MP4 seeks by decode time, and the key frame found
                # for a frame's pts may be the next one, whose open-GOP leading pictures (that frame) cannot decode
                target = int(info.pts_ticks[run[0]])
                k = int(np.searchsorted(info.restart_ticks, target, side="right")) - 1
                target = int(info.restart_ticks[k]) if k >= 0 else target
                container.seek(target, stream=stream, backward=True, any_frame=False)
                ctx.flush_buffers()  # no picture from before the seek may come out after it
                packets = None
            if packets is None:
                packets = container.demux(stream)
            yield from _run_frames(packets, stream, info, run, size, skip_nonref, sample)
    except av.FFmpegError as e:
        raise DecodeError(CORRUPT, f"{info.format_name}/{info.codec}: decoding failed: {e}") from None
    finally:
        container.close()


def _run_frames(packets, stream, info: ProbeInfo, run: np.ndarray, size: Size, skip_nonref: bool, sample):
    wanted = {int(info.pts_ticks[i]): int(i) for i in run}  # pts tick -> frame index
    order = [int(i) for i in run]
    ctx = stream.codec_context
    ready: dict[int, np.ndarray] = {}  # decoded but not yet handed out (decoders emit in presentation order)
    nxt = 0  # position in `order` of the next frame to hand out
    # Skipping whole stretches: once every wanted frame presented before the next restart point (a clean key frame,
    # see ProbeInfo.restart_ticks) has been handed out, no packet before that key frame is needed; they are not sent,
    # and the decoder is flushed before the key frame, exactly as after a seek to it. A key frame none of whose
    # stretch is wanted is passed over too (an all-intra stream decodes only its sampled frames).
    restarts = info.restart_ticks if skip_nonref else np.empty(0, np.int64)
    wanted_ticks = info.pts_ticks[np.asarray(order, np.int64)]  # ascending, as `order`
    bound = len(order)  # wanted frames presented before the next restart point (all, until one is known)
    skipping, mode = False, None

    def take(frames):
        nonlocal nxt
        for frame in frames:
            i = wanted.get(frame.pts)
            if i is not None and i not in ready and nxt < len(order) and i >= order[nxt]:
                ready[i] = sample(frame, size)
        while nxt < len(order) and order[nxt] in ready:
            yield order[nxt], ready.pop(order[nxt])
            nxt += 1

    for pkt in packets:
        if pkt.size == 0:
            continue
        k = int(np.searchsorted(restarts, pkt.pts, side="right")) if pkt.is_keyframe and len(restarts) else 0
        if k and restarts[k - 1] == pkt.pts:  # a restart point
            bound = len(order) if k == len(restarts) else int(np.searchsorted(wanted_ticks, restarts[k]))
            if nxt >= bound:
                skipping = True  # nothing wanted before the next restart point: pass this stretch over
                continue
            if skipping:
                ctx.flush_buffers()  # what is left inside was never wanted; start clean, as after a seek
                skipping = False
        elif skipping:
            continue
        if skip_nonref:
            want = "DEFAULT" if pkt.pts in wanted else "NONREF"
            if want != mode:  # setting it costs a call per packet; most packets keep the previous value
                ctx.skip_frame = mode = want
        yield from take(stream.decode(pkt))
        if nxt == len(order):
            return  # everything of this run is decoded; the rest of the file is not needed for it
        skipping = nxt >= bound
    ctx.skip_frame = "DEFAULT"
    yield from take(stream.decode(None))
    if nxt < len(order):
        raise DecodeError(CORRUPT, f"{len(order) - nxt} sampled frames did not decode (first: frame {order[nxt]})")


def _collect(frames_iter, idx: np.ndarray, times: np.ndarray):
    """(frames (K, h, w, 3) uint8, times, idx) for the sample list ``idx`` from distinct-frame pairs."""
    got, out = {}, []
    for i, f in frames_iter:
        got[i] = len(out)
        out.append(f)
    if not out:
        raise DecodeError(CORRUPT, "no frame could be decoded")
    frames = np.stack(out)
    return frames[np.array([got[int(i)] for i in idx], dtype=np.int64)], times, idx


def decode_decord(readable: Readable, info: ProbeInfo, fps: float, size: Size, threads: int = 1):
    """All sampled frames by the decord path (raises ``Unverified`` where it cannot be relied on)."""
    idx, times = select_frames(info.pts_ticks, info.end_tick, fps, info.time_base, info.rates)
    if len(idx) == 0:
        raise DecodeError(CORRUPT, "no frame to sample")
    return _collect(iter_decord(readable, info, np.unique(idx), size, threads), idx, times)


def decode_pyav(readable: Readable, info: ProbeInfo, fps: float, size: Size, threads: int = 1,
                skip_nonref: bool = True):
    """PyAV path. With the container's timestamps known (MP4/MKV) the selection is made up front and unneeded
    non-reference frames are never decoded; otherwise frames are chosen as they come out of the decoder, by their
    presentation time (MPEG-PS: the decoder's best-effort timestamp; AVI: output position / frame rate, because
    AVI stores no presentation times and FFmpeg's guesses are in decode order)."""
    if info.pts_reliable:
        idx, times = select_frames(info.pts_ticks, info.end_tick, fps, info.time_base, info.rates)
        if len(idx) == 0:
            raise DecodeError(CORRUPT, "no frame to sample")
        return _collect(iter_pyav(readable, info, [np.unique(idx)], size, threads, skip_nonref), idx, times)
    return decode_pyav_untimed(readable, info, fps, size, threads)


class FrameSpill:
    """The distinct sampled frames of an untimed video, on local disk until the sample count is known: appended in
    decode order, read back by position (``take``), so the decode child holds a window, not the video. The file is
    an unlinked temporary one (``TMPDIR``; nothing is left behind, even after kill -9); it needs one output frame
    per sample: 196 KB at 256², about 4.2 GB for two hours at 3 FPS. A local disk error (full, unwritable) is the
    node's, not the file's: it is a transient ``io_error`` (retried, then pending), never a final status."""

    def __init__(self):
        try:
            self._file = tempfile.TemporaryFile(prefix="vidtok-frames-")
        except OSError as e:
            raise DecodeError(IO_ERROR, f"cannot create the local frame spill file: {e}") from None
        self.shape: tuple | None = None
        self.count = 0

    def append(self, frame: np.ndarray) -> None:
        if self.shape is None:
            self.shape = frame.shape
        elif frame.shape != self.shape:
            raise DecodeError(CORRUPT, f"frame size changes mid-stream: {self.shape[:2]} -> {frame.shape[:2]}")
        try:
            self._file.write(np.ascontiguousarray(frame).data)
        except OSError as e:
            raise DecodeError(IO_ERROR, f"local frame spill file: {e}") from None
        self.count += 1

    def take(self, positions: np.ndarray) -> np.ndarray:
        """(len(positions), h, w, 3) uint8: the frames appended at ``positions``."""
        out = np.empty((len(positions), *self.shape), np.uint8)
        try:
            for k, pos in enumerate(positions):
                self._file.seek(int(pos) * out[0].nbytes)
                if self._file.readinto(memoryview(out[k].reshape(-1))) != out[0].nbytes:
                    raise OSError(f"short at frame {int(pos)}")
            self._file.seek(0, os.SEEK_END)
        except OSError as e:
            raise DecodeError(IO_ERROR, f"local frame spill file: {e}") from None
        return out

    def close(self) -> None:
        self._file.close()


class _FrameList(list):
    """FrameSpill's interface in memory (sample_frames returns every sample anyway)."""

    def take(self, positions: np.ndarray) -> np.ndarray:
        return np.stack(self)[positions]


def decode_pyav_untimed(readable: Readable, info: ProbeInfo, fps: float, size: Size, threads: int = 1):
    """Containers without presentation times (AVI, MPEG-PS): frames are chosen as they leave the decoder, so the
    sample count is known only at the end; (frames, times, idx) of every sample, held in memory."""
    frames, pos, times, idx = _untimed(readable, info, fps, size, threads, _FrameList())
    return frames.take(pos), times, idx


def spill_pyav_untimed(readable: Readable, info: ProbeInfo, fps: float, size: Size, threads: int = 1):
    """:func:`decode_pyav_untimed` for streaming: ``(spill, pos, times, idx)``, the distinct sampled frames in a
    :class:`FrameSpill` (the caller closes it) and sample k's frame at ``spill.take([pos[k]])``."""
    spill = FrameSpill()
    try:
        return _untimed(readable, info, fps, size, threads, spill)
    except BaseException:
        spill.close()
        raise


def _untimed(readable: Readable, info: ProbeInfo, fps: float, size: Size, threads: int, store):
    import av

    container = av.open(as_file(readable), mode="r")
    try:
        stream = container.streams.video[0]
        ctx = stream.codec_context
        ctx.thread_count, ctx.thread_type = threads, "AUTO"
        pos, times, idx = _decode_streaming(container, stream, info, fps, size, store)
        return store, pos, times, idx
    except av.FFmpegError as e:
        raise DecodeError(CORRUPT, f"{info.format_name}/{info.codec}: decoding failed: {e}") from None
    finally:
        container.close()


def _decode_streaming(container, stream, info: ProbeInfo, fps: float, size: Size, store):
    """Sample frames as they leave the decoder into ``store`` (append); (pos, times, idx) per sample, pos the
    sample's frame in ``store``."""
    # AVI: the n-th output frame is at tick n of 1/rate; otherwise the decoder's timestamps in the stream time base.
    tb = 1 / info.rate if info.cfr_order else Fraction(stream.time_base)
    nominal = max(1, round(1 / (info.rate * tb))) if info.rate else 1
    sel = StreamingSelector(fps, tb)
    ticks, indices, counts = [], [], []
    pending, pending_tick, n, prev = None, 0, 0, None

    def emit(count: int):
        if count:
            store.append(_sampled(pending, size))
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
    if not counts:
        raise DecodeError(CORRUPT, "no frame could be decoded")
    reps = np.asarray(counts, dtype=np.int64)
    pos = np.repeat(np.arange(len(counts)), reps)
    secs = np.asarray([float((t - sel.start) * tb) for t in ticks], dtype=np.float64)
    return pos, np.repeat(secs, reps), np.repeat(np.asarray(indices, np.int64), reps)
