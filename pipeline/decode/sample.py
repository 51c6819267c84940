"""Decode any real-world video into exactly-``fps`` frames and fixed-length windows (the decode issue).

Two entry points:

* :func:`sample_frames` — the pure helper: read (``decode/source.py``), probe and pick a backend
  (``decode/probe.py``), decode only the frames the timestamp rule names (``decode/resample.py``,
  ``decode/backends.py``) and apply the spatial policy (``decode/spatial.py``). Raises ``DecodeError`` for bad input.
* :func:`decode_windows` — what the tokenize, training and evaluation jobs call: the same work in an isolated child
  process under a per-file time limit (``decode/isolate.py``), cut into windows (``decode/windows.py``). It never
  raises for bad input; the result's ``status`` is ``ok`` or one reason class of ``decode/status.py``.

Backends: ``auto`` (the default) decodes with decord wherever the probe trusts it (MP4/MKV/WebM with
H.264/HEVC/VP9, MPEG-4 without B-frames, complete timestamps cross-checked against decord's own) and with PyAV
everywhere else (AVI, MPEG-PS, MPEG-4 with B-frames, AV1, Theora, ...), leaving a note that says why. ``pyav`` forces
PyAV, which with the probe's timestamps never decodes the non-reference frames that nothing samples and stops after the
last sampled frame: on this project's benchmark clips it was faster than decord (`benchmarks/decode.py` prints both),
so CPU-bound clusters may prefer ``decode.backend=pyav``. ``decord`` behaves like ``auto``.
"""

from __future__ import annotations

import atexit
import logging
import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import status as st
from .backends import Unverified, decode_decord, decode_pyav
from .config import BACKENDS, DecodeConfig
from .isolate import IsolatedRunner
from .probe import probe
from .source import Source, open_source
from .spatial import Size, nearest_bucket, normalize_size
from .status import DecodeError
from .windows import Window, cut_windows

log = logging.getLogger(__name__)

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


def sample_frames(source: Source, fps: float = 3.0, size: Size = None, *, backend: str = "auto",
                  storage_options: dict | None = None, max_pixels: int | None = None,
                  max_duration_s: float | None = None, max_bytes: int | None = None, threads: int = 1,
                  buckets=None) -> SampledFrames:
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
    readable, _ = open_source(source, storage_options, max_bytes)
    info = probe(readable)
    if max_pixels is not None and info.width * info.height > max_pixels:
        raise DecodeError(st.TOO_LARGE, f"{info.width}x{info.height} frames exceed max_pixels={max_pixels}")
    if max_duration_s is not None and info.duration_s > max_duration_s:
        raise DecodeError(st.TOO_LARGE, f"{info.duration_s:.1f}s exceeds max_duration_s={max_duration_s:g}")
    notes: list[str] = []
    if buckets:
        dw, dh = (info.height, info.width) if info.rotation in (90, 270) else (info.width, info.height)
        size = nearest_bucket(dh, dw, buckets)
    use = "decord" if backend == "auto" else backend
    if use == "decord" and not info.pts_reliable:
        notes.append(f"decord needs container timestamps, {info.format_name} has none: used pyav")
        use = "pyav"
    if use == "decord":
        try:
            frames, ts, idx = decode_decord(readable, info, fps, size, threads)
        except Unverified as e:
            notes.append(f"{e}: used pyav")
            log.info("%s", notes[-1])
            use = "pyav"
    if use == "pyav":
        frames, ts, idx = decode_pyav(readable, info, fps, size, threads)
    w, h = (info.height, info.width) if info.rotation in (90, 270) else (info.width, info.height)
    return SampledFrames(frames, np.asarray(ts, np.float64), np.asarray(idx, np.int64), info.avg_fps,
                         info.duration_s, use, w, h, info.codec, info.format_name, notes)


@dataclass
class DecodeResult:
    """One input's outcome. ``status``: ``ok`` or a reason class; ``message``: why ('' when ok); ``windows``: the
    windows not in ``skip_windows``; ``num_windows_total``: all windows, skipped ones included; ``notes``: what the
    tail policy and backend choice did."""

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


def decode_windows_inprocess(source: Source, cfg: DecodeConfig, storage_options: dict | None = None,
                             skip_windows: frozenset[int] = frozenset()) -> DecodeResult:
    """:func:`decode_windows` without isolation (it runs this in the child process)."""
    name = _source_name(source)
    try:
        s = sample_frames(source, cfg.fps, cfg.size, backend=cfg.backend, storage_options=storage_options,
                          max_pixels=cfg.max_pixels, max_duration_s=cfg.max_duration_s, max_bytes=cfg.max_bytes,
                          threads=cfg.threads, buckets=cfg.buckets)
    except DecodeError as e:
        return DecodeResult(name, e.reason, e.message)
    res = DecodeResult(name, st.OK, "", num_samples=len(s.indices), source_fps=s.source_fps, duration_s=s.duration_s,
                       backend=s.backend, width=s.width, height=s.height, codec=s.codec, notes=list(s.notes))
    plan = cfg.window_plan(len(s.indices))
    if not plan.spans:
        res.status = st.TOO_SHORT
        res.message = (f"{len(s.indices)} frames at {cfg.fps:g} fps ({s.duration_s:.2f}s) is shorter than one "
                       f"window of {cfg.frames_per_window} (tail={cfg.tail})")
        return res
    if plan.note:
        res.notes.append(plan.note)
    res.num_windows_total = len(plan.spans)
    res.windows = cut_windows(s.frames, s.timestamps, s.indices, plan, frozenset(skip_windows))
    return res


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


def decode_windows(source: Source, cfg: DecodeConfig | None = None, storage_options: dict | None = None,
                   skip_windows: frozenset[int] = frozenset()) -> DecodeResult:
    """Decode ``source`` into windows under the per-file time limit, in an isolated child process.

    Never raises for bad input: a timeout, a decoder crash or any unexpected error becomes a status record. The
    child is reused across calls (per calling thread) and replaced after a kill, so a long-lived actor can call this
    for thousands of files.
    """
    cfg = cfg or DecodeConfig()
    name = _source_name(source)
    if not cfg.isolate:
        try:
            return decode_windows_inprocess(source, cfg, storage_options, skip_windows)
        except Exception as e:  # an unexpected failure is still this file's status, not the caller's crash
            return DecodeResult(name, st.CORRUPT, f"unexpected {type(e).__name__}: {e}")
    out = _runner().call(decode_windows_inprocess, source, cfg, storage_options, frozenset(skip_windows),
                         timeout_s=cfg.timeout_s)
    if out.kind == "ok":
        return out.value
    if out.kind == "timeout":
        return DecodeResult(name, st.TIMEOUT, out.message)
    if out.kind == "crashed":
        return DecodeResult(name, st.CORRUPT, f"decoder crashed: {out.message}")
    err = out.value
    log.warning("unexpected error decoding %s: %r", name, err)
    return DecodeResult(name, st.CORRUPT, f"unexpected {type(err).__name__}: {err}")
