"""Synthetic test video whose pixels say which frame they are.

Used by the decode tests (to read back exactly which source frame the sampler chose) and by the jobs (to generate a
small sample corpus without downloading anything), so it is library code.

The code: a 4×4 grid of black/white cells filling the *central square* of the displayed frame (side = the shorter
side), so it survives the official spatial policy (short side resize + center crop, ARCHITECTURE.md §13) at any
size ≥ 32 and lossy compression at any sane quality. The four corner cells are orientation markers (top-left white,
the other three black); the 12 remaining cells carry the frame number modulo 4096, most significant bit first in
raster order. Around the square a blurred noise texture scrolls by one pixel per frame, which gives encoders real
motion to compress (benchmarks need realistic decode cost) without touching the code cells.

Rotation: ``rotation`` is the *clockwise* angle a player must turn the coded picture to display it, the way a phone
records portrait video on a landscape sensor. The writer draws the code upright in the displayed frame and stores the
turned picture plus the display matrix, so a decoder that honours the matrix reads orientation 0; one that ignores it
reads a quarter-turn.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

GRID = 4
NUM_BITS = GRID * GRID - 4
MODULUS = 1 << NUM_BITS
_CORNERS = ((0, 0), (0, GRID - 1), (GRID - 1, GRID - 1), (GRID - 1, 0))  # clockwise from top-left
_DATA_CELLS = [(r, c) for r in range(GRID) for c in range(GRID) if (r, c) not in _CORNERS]
_BLACK, _WHITE = 24, 232


@dataclass(frozen=True)
class SynthVideo:
    """What was written: ``timestamps`` (N,) float64 seconds, the true presentation time of frame i (0 for the
    first); ``display_size`` (w, h) after rotation; ``coded_size`` (w, h) as stored."""

    path: str
    timestamps: np.ndarray
    display_size: tuple[int, int]
    coded_size: tuple[int, int]
    codec: str
    rotation: int


def _texture(h: int, w: int, seed: int = 0) -> np.ndarray:
    """(h, w + 4096) uint8 blurred noise, wide enough to scroll one pixel per frame for 4096 frames."""
    rng = np.random.default_rng(seed)
    small = rng.integers(40, 216, size=(h // 8 + 2, (w + 4096) // 8 + 2)).astype(np.float32)
    big = np.kron(small, np.ones((8, 8), np.float32))[:h, : w + 4096]
    return big.astype(np.uint8)


def draw_frame(number: int, width: int, height: int, texture: np.ndarray | None = None, grain: int = 0) -> np.ndarray:
    """One upright frame: (height, width, 3) uint8 RGB carrying ``number`` (mod 4096) in its central square.

    ``grain`` adds per-frame uniform noise of that amplitude to the background (camera-like bitrate for benchmarks).
    """
    if texture is None:
        frame = np.full((height, width), 128, np.uint8)
    else:
        off = number % (texture.shape[1] - width + 1)
        frame = texture[:height, off : off + width].copy()
    if grain:
        noise = np.random.default_rng(number).integers(-grain, grain + 1, size=frame.shape, dtype=np.int16)
        frame = (frame.astype(np.int16) + noise).clip(0, 255).astype(np.uint8)
    side = min(width, height)
    top, left = (height - side) // 2, (width - side) // 2
    edges = np.linspace(0, side, GRID + 1).round().astype(int)
    bits = [(number % MODULUS >> (NUM_BITS - 1 - i)) & 1 for i in range(NUM_BITS)]
    values = {cell: _BLACK for cell in _CORNERS}
    values[_CORNERS[0]] = _WHITE
    values.update({cell: _WHITE if bit else _BLACK for cell, bit in zip(_DATA_CELLS, bits)})
    for (r, c), v in values.items():
        frame[top + edges[r] : top + edges[r + 1], left + edges[c] : left + edges[c + 1]] = v
    return np.repeat(frame[:, :, None], 3, axis=2)


def read_frame_code(frame: np.ndarray) -> tuple[int, int]:
    """Read ``(number, quarter_turns)`` from a (H, W, 3) uint8 frame drawn by :func:`draw_frame`.

    ``quarter_turns`` is how many times the picture is turned clockwise from upright (0 when displayed correctly).
    Works after rescaling, center cropping to the central square and lossy compression; raises ``ValueError`` when the
    orientation markers are not found (not a synthetic frame, or badly damaged).
    """
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"expected a (H, W, 3) frame, got shape {frame.shape}")
    h, w = frame.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    luma = frame[top : top + side, left : left + side].astype(np.float32).mean(axis=2)
    edges = np.linspace(0, side, GRID + 1)
    cells = np.empty((GRID, GRID), np.float32)
    for r in range(GRID):
        for c in range(GRID):
            # The inner half of each cell: far from the edges that scaling and chroma subsampling blur.
            r0, r1 = edges[r] + side / (4 * GRID), edges[r + 1] - side / (4 * GRID)
            c0, c1 = edges[c] + side / (4 * GRID), edges[c + 1] - side / (4 * GRID)
            cells[r, c] = luma[int(r0) : max(int(r1), int(r0) + 1), int(c0) : max(int(c1), int(c0) + 1)].mean()
    bright = cells > (_BLACK + _WHITE) / 2
    corners = [bright[rc] for rc in _CORNERS]
    if sum(corners) != 1:
        raise ValueError(f"no synthetic frame code: corner cells {cells[0, 0]:.0f} {cells[0, -1]:.0f} "
                         f"{cells[-1, -1]:.0f} {cells[-1, 0]:.0f} (exactly one should be bright)")
    turns = corners.index(True)
    upright = np.rot90(bright, k=turns)  # np.rot90 turns counter-clockwise, undoing `turns` clockwise turns
    number = 0
    for r, c in _DATA_CELLS:
        number = (number << 1) | int(upright[r, c])
    return number, turns


def read_frame_number(frame: np.ndarray) -> int:
    """Frame number (mod 4096) encoded in a (H, W, 3) uint8 frame written by :func:`write_synthetic_video`."""
    return read_frame_code(frame)[0]


def _as_fraction(fps: float | str | Fraction) -> Fraction:
    if isinstance(fps, str):
        return Fraction(fps)
    if isinstance(fps, float):
        return Fraction(fps).limit_denominator(1001)
    return Fraction(fps)


def write_synthetic_video(
    path: str | Path,
    num_frames: int,
    fps: float | str | Fraction = 30,
    size: tuple[int, int] = (160, 120),
    codec: str = "libx264",
    container: str | None = None,
    pix_fmt: str | None = None,
    gop: int | None = None,
    bframes: int | None = None,
    timestamps: list[float] | np.ndarray | None = None,
    rotation: int = 0,
    audio: bool = False,
    options: dict[str, str] | None = None,
    texture: bool = True,
    grain: int = 0,
    container_options: dict[str, str] | None = None,
) -> SynthVideo:
    """Encode ``num_frames`` synthetic frames with PyAV.

    Args:
        path: output file; ``container`` (an FFmpeg muxer name: ``mp4``, ``matroska``, ``webm``, ``avi``, ``vob``)
            defaults to what the extension implies.
        fps: nominal rate (``30000/1001`` as a string or Fraction for NTSC). Frame i is at ``i / fps`` unless
            ``timestamps`` (seconds, increasing, first 0) gives variable-rate times.
        size: coded (width, height); odd sizes are fine for encoders that accept them.
        gop / bframes: keyframe interval and maximum consecutive B-frames (None: the encoder's default).
        rotation: clockwise display rotation in degrees (0, 90, 180, 270) stored as a display matrix.
        audio: add a 1 kHz AAC (or Opus for WebM) track of the same length.
        options: extra encoder options (e.g. ``{"crf": "30"}``).
        texture / grain: scrolling background texture, and per-frame noise amplitude on it (0: none).
        container_options: muxer options (e.g. ``{"movflags": "faststart"}`` to put the MP4 index first).
    """
    import av  # heavy import kept local: the reader side needs only numpy

    os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1 prints its banner to stderr otherwise

    if rotation % 90:
        raise ValueError(f"rotation must be a multiple of 90 degrees, got {rotation}")
    rate = _as_fraction(fps)
    w, h = size
    quarter = (rotation // 90) % 4
    dw, dh = (h, w) if quarter % 2 else (w, h)
    if timestamps is None:
        times = np.arange(num_frames, dtype=np.float64) / float(rate)
        time_base = 1 / rate
        pts = list(range(num_frames))
    else:
        times = np.asarray(timestamps, dtype=np.float64)
        if len(times) != num_frames or times[0] != 0 or np.any(np.diff(times) <= 0):
            raise ValueError("timestamps must be num_frames increasing seconds starting at 0")
        time_base = Fraction(1, 90000)
        pts = [round(t * 90000) for t in times]
        times = np.asarray(pts, dtype=np.float64) / 90000
    tex = _texture(dh, dw) if texture else None
    with av.open(str(path), mode="w", format=container, options=container_options or {}) as out:
        stream = out.add_stream(codec, rate=rate)
        stream.width, stream.height = w, h
        stream.pix_fmt = pix_fmt or ("yuv420p" if codec not in {"libx264rgb"} else "rgb24")
        stream.time_base = time_base
        stream.codec_context.time_base = time_base
        opts = dict(options or {})
        if gop is not None:
            stream.codec_context.gop_size = gop
            if codec in {"libx264", "libx265"}:
                opts.setdefault("keyint_min", str(min(gop, 25)))
                if codec == "libx265":
                    opts["x265-params"] = f"keyint={gop}:min-keyint={min(gop, 25)}:log-level=error"
        if bframes is not None:
            stream.codec_context.max_b_frames = bframes
            if codec == "libx265":
                opts["x265-params"] = opts.get("x265-params", "log-level=error") + f":bframes={bframes}"
        if codec == "libx265":
            opts.setdefault("x265-params", "log-level=error")
        if codec == "libsvtav1":  # one thread pool: with its default (one per core, 48 threads here) the encoder's
            opts.setdefault("svtav1-params", "lp=1")  # flush once hung for good in svt_av1_enc_get_packet (test media)
        stream.codec_context.options = opts
        if quarter:
            stream.set_display_rotation(-90 * quarter)  # PyAV takes counter-clockwise degrees
        astream = None
        if audio:
            acodec = "libopus" if out.format.name == "webm" else "aac"
            astream = out.add_stream(acodec, rate=48000)
            astream.layout = "mono"
        for i in range(num_frames):
            upright = draw_frame(i, dw, dh, tex, grain)
            coded = np.ascontiguousarray(np.rot90(upright, k=quarter))  # undone by a clockwise display turn
            frame = av.VideoFrame.from_ndarray(coded, format="rgb24")
            frame.pts = pts[i]
            frame.time_base = time_base
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
        if astream is not None:
            _write_tone(av, out, astream, duration=float(times[-1]) + (float(1 / rate) if num_frames else 0))
    return SynthVideo(str(path), times, (dw, dh), (w, h), codec, rotation)


def _write_tone(av, out, astream, duration: float) -> None:
    """A mono 1 kHz tone lasting ``duration`` seconds (fltp at 48 kHz)."""
    sr, chunk = 48000, 960
    total = int(math.ceil(duration * sr))
    for start in range(0, total, chunk):
        t = np.arange(start, start + chunk) / sr
        samples = (0.2 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)[None, :]
        frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
        frame.sample_rate = sr
        frame.pts = start
        frame.time_base = Fraction(1, sr)
        out.mux(astream.encode(frame))
    out.mux(astream.encode(None))


# ------------------------------------------------------------------------------------------ the embedded corpus
# The embedded default of every job: a few short synthetic clips written locally, so the jobs run with no arguments
# and no downloads. Idempotent: an existing clip with the expected name is reused, so reruns of a demo resume instead
# of tokenizing new files.
def make_sample_corpus(folder: str | Path, num_clips: int = 4, seconds: float = 6.5, fps: float = 24.0,
                       width: int = 160, height: int = 120) -> Path:
    """Write `num_clips` clips of `seconds` at `fps` (sizes vary a little so resizing is exercised); returns folder."""
    folder = Path(folder).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    made = 0
    for i in range(num_clips):
        w, h = width + 16 * (i % 3), height + 8 * (i % 2)  # a few aspect ratios: short-side resize + centre crop
        path = folder / f"clip_{i:03d}_{w}x{h}_{fps:g}fps.mp4"
        if path.exists() and path.stat().st_size > 0:
            continue
        tmp = path.with_name(path.name + ".part")  # not a video extension: never listed, even after a crash
        write_synthetic_video(tmp, num_frames=max(1, round(seconds * fps)), fps=fps, size=(w, h), container="mp4",
                              gop=2 * round(fps))
        tmp.replace(path)  # a half-written clip must never be listed as input
        made += 1
    log.info("sample corpus: %d clips in %s (%d new)", num_clips, folder, made)
    return folder
