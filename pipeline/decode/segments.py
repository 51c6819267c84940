"""Long inputs cut into segments: contiguous ranges of window indices, each decodable by its own task.

A segment is windows ``[first, stop)`` of the whole-video window plan (``DecodeConfig.window_plan``), decoded with
``iter_windows(..., choose=WindowRange(first, stop))``: the decoder seeks to the key frame before the segment's first
sample and decodes straight through its last window. The sampling, the plan and so the window indices, frames,
timestamps and tail are those of the whole-video decode, because each segment task probes the same container and
applies the same rule to all of its frames' times (tests/decode/test_segments.py checks the frames bit for bit on
closed and open GOPs, B-frames, VFR and rotated inputs).

When an input is cut (``decode.segment_s``): its *sampled* duration (samples / fps) exceeds ``segment_s``; it is
then cut into ``ceil(sampled / segment_s)`` segments of about equal length, each boundary moved (within a quarter
of a segment) to the window whose first sample lies closest after a restart point (a clean key frame,
``ProbeInfo.restart_ticks``), so the frames a segment decodes before its first sample — work the previous segment
also did — stay few: the cut falls at key frames.

Which inputs are looked at: only MP4/MOV files whose probe came from the container header (``indexed_from ==
"header"``): the split probes the header once and keeps the result in the job's video index (``find_segments``), and
every segment task reads that row (a header probe is also cheap enough to repeat where the index cannot be written:
a few KB per minute of video); a container that must be demuxed whole to be probed (Matroska without cues, AVI,
MPEG-PS) would be read once per segment, and one without presentation times (AVI, MPEG-PS) can only be sampled by
decoding all of it. Those stay one task. ``worth_probing`` is the cheap pre-filter on the listed size, so a corpus
of short clips costs no probe at all.

``find_segments`` reads the input's video index row, or runs the probe in the isolated decode child
(``pipeline/decode/isolate.py``) like every decode, and never raises: any failure means "do not cut", and the
whole-input decode then classifies the input.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .config import DecodeConfig
from .header import is_mp4
from .probe import ProbeInfo, probe
from .resample import select_frames
from .source import RemoteObject, Source, open_binary, open_source

if TYPE_CHECKING:
    from .index import VideoIndex

log = logging.getLogger(__name__)

# Listed bytes per second of video below which an input is not probed for cutting: 1 Mbit/s. A file smaller than
# `segment_s` seconds at this rate is either shorter than `segment_s` or so small in pixels that it decodes in about
# a segment's time anyway (720p H.264 runs at 2-8 Mbit/s); inputs of unknown size are probed.
MIN_BYTES_PER_S = 125_000
BOUNDARY_SLACK = 0.25  # a boundary may move this share of a segment to land just after a restart point


@dataclass(frozen=True)
class Segments:
    """How one input is cut: ``ranges`` ``(first, stop)`` window ranges, contiguous, covering ``[0, num_windows)``."""

    num_windows: int
    ranges: tuple[tuple[int, int], ...]
    sampled_s: float  # samples / fps: the duration the windows are cut from


def worth_probing(source_size: int | None, cfg: DecodeConfig) -> bool:
    """Whether an input of ``source_size`` listed bytes (None: unknown) may exceed ``decode.segment_s``."""
    if not cfg.segment_s:
        return False
    return source_size is None or source_size >= cfg.segment_s * MIN_BYTES_PER_S


def cut_segments(info: ProbeInfo, cfg: DecodeConfig) -> Segments | None:
    """The segments of a probed input under ``cfg`` (None: one task; see the module docstring)."""
    if not cfg.segment_s or not info.pts_reliable or not len(info.pts_ticks):
        return None
    idx, _ = select_frames(info.pts_ticks, info.end_tick, cfg.fps, info.time_base, info.rates)
    sampled_s = len(idx) / cfg.fps
    if sampled_s <= cfg.segment_s:
        return None
    plan = cfg.window_plan(len(idx))
    n = len(plan.spans)
    parts = math.ceil(sampled_s / cfg.segment_s)
    if n < 2 or parts < 2:
        return None
    start_s = np.array([a for a, _, _ in plan.spans], np.float64) / cfg.fps  # each window's first sample time
    first_tick = info.pts_ticks[idx[[a for a, _, _ in plan.spans]]]  # pts of each window's first frame
    restarts = np.asarray(info.restart_ticks, np.int64)
    if len(restarts):  # ticks decoded in vain before each window's first frame after a seek to its restart point
        k = np.searchsorted(restarts, first_tick, side="right") - 1
        waste = np.where(k >= 0, first_tick - restarts[np.maximum(k, 0)], first_tick - info.pts_ticks[0])
    else:
        waste = np.zeros(n, np.int64)
    length = sampled_s / parts
    bounds = [0]
    for j in range(1, parts):
        target = j * length
        near = np.flatnonzero(np.abs(start_s - target) <= BOUNDARY_SLACK * length)
        near = near[near > bounds[-1]]
        if not len(near):
            w = int(np.searchsorted(start_s, target))
            if w <= bounds[-1] or w >= n:
                continue
        else:  # least waste; ties: closest to the target
            w = int(min(near, key=lambda i: (waste[i], abs(start_s[i] - target))))
        if w < n:
            bounds.append(w)
    bounds.append(n)
    ranges = tuple((a, b) for a, b in zip(bounds, bounds[1:]) if b > a)
    return Segments(n, ranges, sampled_s) if len(ranges) > 1 else None


def segments_of(info: ProbeInfo | None, cfg: DecodeConfig) -> Segments | None:
    """The segments of an input probed from its header (``info``: a probe or a video index row), None for one task:
    not probed from a header (module docstring), or over ``max_pixels`` / ``max_duration_s`` (the whole-input decode
    reports those as ``too_large``), or not long enough to cut."""
    if info is None or info.indexed_from != "header":
        return None
    if cfg.max_pixels is not None and info.width * info.height > cfg.max_pixels:
        return None
    if cfg.max_duration_s is not None and info.duration_s > cfg.max_duration_s:
        return None
    return cut_segments(info, cfg)


def header_probe(source: Source, cfg: DecodeConfig, storage_options: dict | None = None) -> ProbeInfo | None:
    """``source``'s probe if it is an MP4/MOV object (runs in the decode child; raises what the probe raises); None
    for other containers and for bytes in memory (nothing to gain from reading it in pieces)."""
    readable, _ = open_source(source, storage_options, cfg.max_bytes, cfg.read_block_bytes, cfg.read_cache_bytes)
    try:
        if isinstance(readable, (bytes, bytearray)):
            return None
        with open_binary(readable) as f:
            head = f.read(16)
        return probe(readable) if is_mp4(head) else None
    finally:
        if isinstance(readable, RemoteObject):
            readable.close()


def probe_segments(source: Source, cfg: DecodeConfig, storage_options: dict | None = None) -> Segments | None:
    """Probe ``source`` from its header and cut it (in this process; raises what the probe raises)."""
    return segments_of(header_probe(source, cfg, storage_options), cfg)


def find_segments(source: Source, cfg: DecodeConfig, storage_options: dict | None = None,
                  index: "VideoIndex | None" = None, identity: dict | None = None) -> Segments | None:
    """The segments of ``source`` (None: one task); never raises: a failure of any kind is None (the input stays
    one task and its decode says what is wrong).

    With a video ``index`` and the input's listed ``identity``, its row there is used (one small read instead of the
    header's, which is 1 MB per ~15 minutes of 30 fps video); on a miss the header is probed and the row written, so
    the segment tasks (``DecodeInputs``) and later jobs read it instead of probing again. The probe runs in the
    isolated decode child, time-limited by ``decode.timeout_s``, like every decode."""
    from .sample import _runner  # the process's decode child, shared with iter_windows

    if index is not None and identity is not None:
        info = index.try_find(identity)
        if info is not None:
            return segments_of(info, cfg)
    try:
        if not cfg.isolate:
            info = header_probe(source, cfg, storage_options)
        else:
            out = _runner().call(header_probe, source, cfg, storage_options, timeout_s=cfg.timeout_s)
            if out.kind != "ok":
                log.info("%s: not cut into segments (probe %s: %s)", source, out.kind, out.message or out.value)
                return None
            info = out.value
    except Exception as e:
        log.info("%s: not cut into segments (%s: %s)", source, type(e).__name__, e)
        return None
    if info is not None and index is not None and identity is not None:
        index.try_keep(identity, info)  # a failed write costs a probe per segment task
    return segments_of(info, cfg)
