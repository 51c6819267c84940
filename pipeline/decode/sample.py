"""Decode any real-world video into exactly-``fps`` frames and fixed-length windows.

Entry points:

* :func:`sample_frames` — the pure helper: read (``decode/source.py``), probe and pick a backend
  (``decode/probe.py``), decode only the frames the timestamp rule names (``decode/resample.py``,
  ``decode/backends.py``) and apply the spatial policy (``decode/spatial.py``). Raises ``DecodeError`` for bad input.
  Holds every sampled frame (it returns them); use the window stream for long videos.
* :func:`iter_windows` — what the tokenize job consumes: the same work in an isolated child process
  (``decode/isolate.py``), with windows (``decode/windows.py``) leaving the child as they are cut, a few at a time,
  so memory is flat in the video's length. The stream's ``result`` carries ``num_windows_total`` before the first
  window arrives: for containers with presentation times (MP4/MOV/MKV/WebM) the probe's timestamps give the sample
  count (``resample.select_frames``) and so the window plan before anything is decoded. Containers without them
  (AVI, MPEG-PS) are sampled by the decoder's output times, known only at the end: there the child decodes the whole
  video first, its sampled frames at output size waiting in an unlinked local temporary file
  (``backends.FrameSpill``, not in memory), and then streams the windows, reading each one's frames back.
* :func:`decode_windows` — the collected stream (evaluation, tools, tests): never raises for bad input; the result's
  ``status`` is ``ok`` or one reason class of ``decode/status.py``.

Time limits (``decode.timeout_s``, ``decode.max_wall_s``): the isolated call is killed when no new frame (before the
first one: no probe result) arrives for ``timeout_s``, and a video whose decode time passes ``wall_limit_s(duration)``
is stopped by the child itself; both give status ``timeout``. Decode time counts only while the stream's consumer
waits for it, so downstream backpressure never times a file out.

Backends: ``auto`` (the default) decodes with PyAV, which with the probe's timestamps never decodes the
non-reference frames that nothing samples and stops after the last sampled frame — measured faster than decord on the
benchmark (`docs/benchmarks.md`, "Decode backends"). ``decord`` uses decord wherever the probe trusts it (MP4/MKV/WebM
with H.264/HEVC/VP9, MPEG-4 without B-frames, complete timestamps cross-checked against decord's own) and falls back
to PyAV, with a note saying why, everywhere else and wherever decord fails on a frame (e.g. 48x40 H.264). ``pyav``
forces PyAV. ``decode.device=cuda`` decodes with torchcodec on NVDEC (``decode/gpu.py``).
"""

from __future__ import annotations

import atexit
import dataclasses
import logging
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from . import status as st
from .assemble import ActiveClock, Frames, assemble, frame_runs
from .backends import Unverified, decode_decord, decode_pyav, spill_pyav_untimed
from .config import BACKENDS, DecodeConfig
from .isolate import CallOutcome, IsolatedRunner
from .probe import ProbeInfo, probe
from .resample import select_frames
from .source import BLOCK_BYTES, CACHE_BYTES, SPILL_BYTES, Readable, RemoteObject, Source, decord_input, open_source
from .spatial import Size, nearest_bucket, normalize_size
from .status import DecodeError
from .windows import Window, WindowRange, iter_cut_windows

log = logging.getLogger(__name__)

WINDOW_CREDIT = 2  # windows the decode child may run ahead of its consumer (the bounded queue of the stream)


@dataclass
class SampledFrames:
    """``frames``: (N, H, W, 3) uint8 RGB, rotation applied; ``timestamps``: (N,) float64 seconds, presentation time
    of each chosen frame counted from the video's first frame; ``indices``: (N,) int64 source frame indices in
    presentation order. Sample k was taken at ``k / fps`` s; ``timestamps[k]`` is when its frame appeared."""

    frames: np.ndarray
    timestamps: np.ndarray
    indices: np.ndarray
    source_fps: float
    duration_s: float
    backend: str
    width: int  # displayed source size (after rotation)
    height: int
    codec: str
    format_name: str
    notes: list[str] = field(default_factory=list)


def _display_wh(info: ProbeInfo) -> tuple[int, int]:
    return (info.height, info.width) if info.rotation in (90, 270) else (info.width, info.height)


def _open_probe(source: Source, storage_options, max_pixels, max_duration_s, max_bytes,
                block_size: int = BLOCK_BYTES, cache_bytes: int = CACHE_BYTES,
                info: ProbeInfo | None = None) -> tuple[Readable, ProbeInfo]:
    readable, _ = open_source(source, storage_options, max_bytes, block_size, cache_bytes, read_first=info is None)
    info = info if info is not None else probe(readable)
    if max_pixels is not None and info.width * info.height > max_pixels:
        raise DecodeError(st.TOO_LARGE, f"{info.width}x{info.height} frames exceed max_pixels={max_pixels}")
    if max_duration_s is not None and info.duration_s > max_duration_s:
        raise DecodeError(st.TOO_LARGE, f"{info.duration_s:.1f}s exceeds max_duration_s={max_duration_s:g}")
    return readable, info


def _first_choice(backend: str, info: ProbeInfo, notes: list[str]) -> str:
    """``decord`` or ``pyav`` for this file (the decord path may still fall back while decoding)."""
    use = "decord" if backend == "decord" else "pyav"  # auto: PyAV, measured fastest (module docstring)
    if use == "decord" and not info.pts_reliable:
        notes.append(f"decord needs container timestamps, {info.format_name} has none: used pyav")
        use = "pyav"
    return use


def sample_frames(source: Source, fps: float = 3.0, size: Size = None, *, backend: str = "auto",
                  storage_options: dict | None = None, max_pixels: int | None = None,
                  max_duration_s: float | None = None, max_bytes: int | None = None, threads: int = 1,
                  spill_bytes: int = SPILL_BYTES, buckets=None) -> SampledFrames:
    """Decode ``source`` (a path, an fsspec URL or the file's bytes) at ``fps`` by presentation timestamps.

    The rule (``pipeline.decode.resample``): sample times ``t_k = t_0 + k / fps`` from the first frame's time ``t_0`` up to
    the end of the last frame's display; the frame chosen for ``t_k`` is the one on screen at ``t_k`` (the last frame
    whose presentation time is ≤ ``t_k``, within 1 ms for container rounding). Works for variable frame rate.
    ``buckets`` (a list of ``(h, w)``): the frames go to the bucket nearest the displayed aspect ratio instead of
    ``size`` (``pipeline.decode.spatial.nearest_bucket``).
    Runs in the calling process with no time limit; use :func:`decode_windows` for untrusted input at scale.
    Raises ``DecodeError`` (with a reason class) for input that yields no frames.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    size = normalize_size(size)
    readable, info = _open_probe(source, storage_options, max_pixels, max_duration_s, max_bytes)
    notes: list[str] = []
    if buckets:
        dw, dh = _display_wh(info)
        size = nearest_bucket(dh, dw, buckets)
    use = _first_choice(backend, info, notes)
    if use == "decord":
        try:
            with decord_input(readable, spill_bytes) as r:
                frames, ts, idx = decode_decord(r, info, fps, size, threads)
        except Unverified as e:
            notes.append(f"{e}: used pyav")
            log.info("%s", notes[-1])
            use = "pyav"
    if use == "pyav":
        frames, ts, idx = decode_pyav(readable, info, fps, size, threads)
    w, h = _display_wh(info)
    return SampledFrames(frames, np.asarray(ts, np.float64), np.asarray(idx, np.int64), info.avg_fps,
                         info.duration_s, use, w, h, info.codec, info.format_name, notes)


@dataclass
class DecodeResult:
    """One input's outcome. ``status``: ``ok`` or a reason class; ``message``: why ('' when ok); ``windows``: the
    windows not in ``skip_windows`` (empty for a stream: they went to its consumer); ``num_windows_total``: all
    windows, skipped ones included; ``notes``: what the tail policy and backend choice did."""

    source: str
    status: str
    message: str = ""
    windows: list[Window] = field(default_factory=list)
    num_windows_total: int = 0
    num_samples: int = 0
    source_fps: float = 0.0
    duration_s: float = 0.0
    backend: str = ""
    width: int = 0
    height: int = 0
    codec: str = ""
    notes: list[str] = field(default_factory=list)


def _source_name(source: Source) -> str:
    return f"<{len(source)} bytes>" if isinstance(source, (bytes, bytearray, memoryview)) else str(source)


def _stream_items(source: Source, cfg: DecodeConfig, storage_options: dict | None = None,
                  skip_windows: frozenset[int] = frozenset(), choose: Callable[[int], Iterable[int]] | None = None,
                  info: ProbeInfo | None = None) -> Iterator[Any]:
    """The window stream as the child sends it: the ``ProbeInfo`` when it probed the source (not when ``info`` was
    given), a header ``DecodeResult`` (status ok, ``num_windows_total`` and the video's facts) before the first window,
    the ``Window``s, ``int`` progress beats (frames decoded so far), and a final ``DecodeResult`` (the header's facts
    with the final status). Failures are final results, never raised."""
    name = _source_name(source)
    head: DecodeResult | None = None
    readable = None
    untimed = None  # (FrameSpill, ...) of an untimed container, closed at the end
    clock = ActiveClock()
    try:
        probed = info is None
        readable, info = _open_probe(source, storage_options, cfg.max_pixels, cfg.max_duration_s, cfg.max_bytes,
                                     cfg.read_block_bytes, cfg.read_cache_bytes, info)
        if probed:  # for the caller's video index (WindowStream.info): the next job need not probe again
            clock.pause()
            yield info
            clock.resume()
        notes: list[str] = []
        use = _first_choice(cfg.backend, info, notes)
        w, h = _display_wh(info)
        if cfg.buckets:  # the bucket nearest the displayed aspect ratio replaces decode.size for this file
            cfg = dataclasses.replace(cfg, size=nearest_bucket(h, w, cfg.buckets))
        res = DecodeResult(name, st.OK, "", source_fps=info.avg_fps, duration_s=info.duration_s, backend=use,
                           width=w, height=h, codec=info.codec, notes=notes)
        limit = cfg.wall_limit_s(info.duration_s)
        if info.pts_reliable:
            idx, times = select_frames(info.pts_ticks, info.end_tick, cfg.fps, info.time_base, info.rates)
            if len(idx) == 0:
                raise DecodeError(st.CORRUPT, "no frame to sample")
        else:  # AVI / MPEG-PS: sampled by decode order's output times, known only after decoding (module docstring);
            # the sampled frames wait on local disk, not in memory (backends.FrameSpill)
            untimed = spill_pyav_untimed(readable, info, cfg.fps, cfg.size, cfg.threads)
            _, pos, times, idx = untimed
        res.num_samples = len(idx)
        plan = cfg.window_plan(len(idx))
        if not plan.spans:
            res.status = st.TOO_SHORT
            res.message = (f"{len(idx)} frames at {cfg.fps:g} fps ({info.duration_s:.2f}s) is shorter than one "
                           f"window of {cfg.frames_per_window} (tail={cfg.tail})")
            clock.pause()
            yield res
            return
        if plan.note:
            notes.append(plan.note)
        res.num_windows_total = len(plan.spans)
        wanted = range(len(plan.spans)) if choose is None else set(int(x) for x in choose(len(plan.spans)))
        chosen = sorted(x for x in wanted if x not in skip_windows and 0 <= x < len(plan.spans))
        if not chosen:  # every window is already committed (or none chosen): nothing to decode
            pass
        elif untimed is not None:
            head = res
            clock.pause()
            yield head
            clock.resume()
            spill = untimed[0]
            for win in iter_cut_windows(lambda sel: spill.take(pos[sel]), times, idx, plan,
                                        frozenset(range(len(plan.spans))) - set(chosen)):
                clock.pause()
                yield win
                clock.resume()
        else:
            # a segment (WindowRange) is one run: one seek to its first key frame, then straight through
            runs = frame_runs(idx, plan, chosen, merge_all=choose is None or isinstance(choose, WindowRange))
            frames = Frames(readable, info, runs, cfg, use, notes, seek=choose is not None)
            for item in assemble(frames, idx, times, plan, chosen):
                if head is None:  # after the first frame: the backend that really decodes is known
                    res.backend = frames.backend
                    head = res
                    clock.pause()
                    yield dataclasses.replace(head, notes=list(notes))
                    clock.resume()
                if clock.now() > limit:
                    raise DecodeError(st.TIMEOUT, f"decoding took over {limit:g}s of decode time (decode.max_wall_s; "
                                                  f"{info.duration_s:.0f}s of video)")
                clock.pause()
                yield item
                clock.resume()
            res.backend = frames.backend
        clock.pause()
        yield dataclasses.replace(res, notes=list(notes))
    except DecodeError as e:
        clock.pause()
        base = head if head is not None else DecodeResult(name, st.OK)
        yield dataclasses.replace(base, status=e.reason, message=e.message, notes=list(base.notes))
    finally:  # also when the consumer abandons the stream
        if untimed is not None:
            untimed[0].close()
        if isinstance(readable, RemoteObject):  # its block cache (local temporary file)
            readable.close()


class WindowStream:
    """The windows of one input as they are cut (iterate once). ``result``: the input's ``DecodeResult`` — its facts
    and ``num_windows_total`` as soon as the first window has arrived (or the failure, if none will), and its final
    status once the iteration ends. A status other than ``ok`` after some windows means the rest did not come.
    ``info``: the ``ProbeInfo`` the decode probed (None when it was given one, or the probe failed)."""

    def __init__(self, items: Iterator[Any], name: str):
        self._items, self.result = items, DecodeResult(name, st.OK)
        self.info: ProbeInfo | None = None  # the source's probe result, when this stream probed it

    def __iter__(self) -> Iterator[Window]:
        for item in self._items:
            if isinstance(item, Window):
                yield item
            elif isinstance(item, DecodeResult):
                self.result = item
            elif isinstance(item, ProbeInfo):
                self.info = item
            elif isinstance(item, CallOutcome) and item.kind != "ok":
                self.result = self._failed(item)

    def _failed(self, out: CallOutcome) -> DecodeResult:
        if out.kind == "timeout":
            status, message = st.TIMEOUT, out.message
        elif out.kind == "crashed":
            status, message = st.CORRUPT, f"decoder crashed: {out.message}"
        else:
            err = out.value
            log.warning("unexpected error decoding %s: %r", self.result.source, err)
            status, message = st.CORRUPT, f"unexpected {type(err).__name__}: {err}"
        return dataclasses.replace(self.result, status=status, message=message)


def _guarded(items: Iterator[Any]) -> Iterator[Any]:
    """In-process stream: an unexpected failure is still this file's status, not the caller's crash."""
    try:
        yield from items
    except Exception as e:
        yield CallOutcome("error", e)


def _warmup() -> None:
    """Import the decode stack once per child (no torch: it would cost ~900 MB resident per child)."""
    import av
    import decord  # noqa: F401
    import PIL.Image  # noqa: F401

    av.logging.set_level(av.logging.ERROR)


_runners = threading.local()
_all_runners: list[IsolatedRunner] = []


def _runner() -> IsolatedRunner:
    r = getattr(_runners, "runner", None)
    if r is None:
        r = _runners.runner = IsolatedRunner(warmup=_warmup)
        _all_runners.append(r)
    return r


@atexit.register
def close_runners() -> None:
    """Stop this process's decode children (also run at exit)."""
    while _all_runners:
        _all_runners.pop().close()
    _runners.__dict__.clear()


def iter_windows(source: Source, cfg: DecodeConfig | None = None, storage_options: dict | None = None,
                 skip_windows: frozenset[int] = frozenset(),
                 choose: Callable[[int], Iterable[int]] | None = None, info: ProbeInfo | None = None) -> WindowStream:
    """Decode ``source`` into a :class:`WindowStream`, isolated and time-limited (``cfg.isolate``).

    ``skip_windows``: windows already committed (counted, not cut). ``choose``: a picklable callable given the number
    of windows that returns the ones to cut (e.g. :class:`pipeline.decode.windows.RandomWindows`); only the frames
    of those are decoded, each window from a seek to its key frame (an MP4/MOV: from its packets, reading only their
    bytes, ``packets.py``). ``info``: the source's probe result from the video index (``index.py``): not probed
    again. Never raises for bad input.
    """
    cfg = cfg or DecodeConfig()
    name = _source_name(source)
    if not cfg.isolate:
        return WindowStream(_guarded(_stream_items(source, cfg, storage_options, frozenset(skip_windows), choose,
                                                   info)), name)
    items = _runner().stream(_stream_items, source, cfg, storage_options, frozenset(skip_windows), choose, info,
                             timeout_s=cfg.timeout_s, credit=WINDOW_CREDIT)
    return WindowStream(items, name)


def _probe_child(source: Source, cfg: DecodeConfig, storage_options: dict | None) -> ProbeInfo:
    readable, info = _open_probe(source, storage_options, cfg.max_pixels, cfg.max_duration_s, cfg.max_bytes,
                                 cfg.read_block_bytes, cfg.read_cache_bytes)
    if isinstance(readable, RemoteObject):
        readable.close()
    return info


def probe_source(source: Source, cfg: DecodeConfig, storage_options: dict | None = None) -> ProbeInfo | None:
    """``source``'s probe result (for the video index), isolated and time-limited as a decode (``cfg.isolate``);
    None when it fails: the decode that follows reports why."""
    if not cfg.isolate:
        try:
            return _probe_child(source, cfg, storage_options)
        except DecodeError:
            return None
    out = _runner().call(_probe_child, source, cfg, storage_options, timeout_s=cfg.timeout_s)
    return out.value if out.kind == "ok" else None


def decode_windows(source: Source, cfg: DecodeConfig | None = None, storage_options: dict | None = None,
                   skip_windows: frozenset[int] = frozenset(),
                   choose: Callable[[int], Iterable[int]] | None = None) -> DecodeResult:
    """:func:`iter_windows`, collected: the result holds the windows (none unless ``status`` is ``ok``).

    Never raises for bad input: a timeout, a decoder crash or any unexpected error becomes a status record. The
    child is reused across calls (per calling thread) and replaced after a kill, so a long-lived actor can call this
    for thousands of files.
    """
    stream = iter_windows(source, cfg, storage_options, skip_windows, choose)
    windows = list(stream)
    res = stream.result
    res.windows = windows if res.status == st.OK else []
    return res


def decode_windows_inprocess(source: Source, cfg: DecodeConfig, storage_options: dict | None = None,
                             skip_windows: frozenset[int] = frozenset()) -> DecodeResult:
    """:func:`decode_windows` without isolation."""
    return decode_windows(source, dataclasses.replace(cfg, isolate=False), storage_options, skip_windows)
