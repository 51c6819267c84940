"""Resample a video to a fixed rate by presentation timestamps (the project's sampling rule, stated below).

Rule. Let ``p_0 < p_1 < ... < p_{F-1}`` be the frames' presentation times in presentation order and ``e`` the end of
the last frame's display (``p_{F-1}`` plus its duration). Frame i is *on screen* during ``[p_i, p_{i+1})`` (the last
one until ``e``). The sample times are ``t_k = p_0 + k / fps`` for every k ≥ 0 with ``t_k < e``, and the frame chosen
for ``t_k`` is the one on screen at ``t_k``: the largest i with ``p_i <= t_k``. Variable frame rate needs nothing
special; a source slower than ``fps`` repeats frames.

Exactness. Times are integer ticks of the stream's time base and every comparison is done in integers (``t_k`` is a
rational number of ticks), so there is no float drift on long videos and no epsilon. One refinement: containers with
a clock coarser than the frame grid (Matroska stores milliseconds) round the true times; when every timestamp lies
within half a tick of a constant-rate grid ``p_0 + i / r`` for the stream's nominal rate ``r``, the grid times are
used — they are what the stamps were rounded from. Without this, 30 fps in MKV (frame 20 stamped 667 ms > 2/3 s)
and 29.97 fps in MKV (frame 20 stamped 667 ms, truly 667.33 ms > 666.67 ms) cannot both come out right. Variable-rate
streams are used as stamped.

Why not "every round(avg_fps / fps)-th frame" (VidTok's loader, ``ray.data.read_videos``): 25 fps gives 3.125 FPS,
and for variable-rate phone video the average fps does not describe where frames are.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Sequence

import numpy as np


def as_fraction(x) -> Fraction:
    """Exact rate or time base; floats are limited to denominators ≤ 1e6 (29.97 -> 2997/100)."""
    if isinstance(x, Fraction):
        return x
    if isinstance(x, float):
        return Fraction(x).limit_denominator(1_000_000)
    return Fraction(x)


class SampleClock:
    """Sample times ``t_k = p_0 + k / fps`` against integer ticks of ``time_base``, exactly."""

    def __init__(self, start_tick: int, fps, time_base):
        fps, tb = as_fraction(fps), as_fraction(time_base)
        if fps <= 0 or tb <= 0:
            raise ValueError(f"fps and time_base must be > 0, got {fps}, {tb}")
        # t_k in ticks = p_0 + k * B / A
        self.start, self.a, self.b = int(start_tick), tb.numerator * fps.numerator, tb.denominator * fps.denominator

    def last_tick_on_screen(self, k: int) -> int:
        """The largest tick x with x <= t_k (a frame stamped x is on screen at t_k when it is the latest such)."""
        return self.start + (k * self.b) // self.a

    def before(self, k: int, tick: int) -> bool:
        """Whether t_k < tick."""
        return k * self.b < (tick - self.start) * self.a

    def count_before(self, tick: int) -> int:
        """Number of samples with t_k < tick."""
        span = (tick - self.start) * self.a
        return 0 if span <= 0 else -(-span // self.b)


def grid_rate(pts_ticks: np.ndarray, time_base, rates: Sequence) -> Fraction | None:
    """The first candidate rate whose grid ``p_0 + i / r`` every timestamp rounds from (within half a tick)."""
    tb = as_fraction(time_base)
    if len(pts_ticks) < 2:
        return None
    rel = (pts_ticks - pts_ticks[0]).astype(np.float64)
    i = np.arange(len(pts_ticks), dtype=np.float64)
    for r in rates:
        if not r:
            continue
        r = as_fraction(r)
        grid = i * float(1 / (r * tb))
        if np.all(np.abs(rel - grid) <= 0.5 + 1e-6):
            return r
    return None


def select_frames(pts_ticks, end_tick: int, fps, time_base, rates: Sequence = ()) -> tuple[np.ndarray, np.ndarray]:
    """Apply the rule to sorted presentation times ``pts_ticks`` (F,) int in units of ``time_base``.

    ``rates``: candidate nominal rates for the grid refinement (empty: use the stamps as they are).
    Returns ``(indices (K,) int64, times (K,) float64)``: for each sample the index into ``pts_ticks`` of the frame on
    screen, and that frame's presentation time in seconds since ``p_0``.
    """
    pts = np.asarray(pts_ticks, dtype=np.int64)
    if pts.ndim != 1 or len(pts) == 0:
        return np.empty(0, np.int64), np.empty(0, np.float64)
    if np.any(np.diff(pts) < 0):
        raise ValueError("pts must be sorted into presentation order")
    fps, tb = as_fraction(fps), as_fraction(time_base)
    r = grid_rate(pts, tb, rates)
    if r is not None:
        # Frame i is at i / r: t_k = k / fps shows frame floor(k * r / fps), until frame F ends at F / r.
        count = -(-(len(pts) * r.denominator * fps.numerator) // (r.numerator * fps.denominator))
        num, den = r.numerator * fps.denominator, r.denominator * fps.numerator
        idx = np.array([(k * num) // den for k in range(count)], dtype=np.int64)
        times = np.array([float(Fraction(int(i)) / r) for i in idx], dtype=np.float64)
        return idx, times
    clock = SampleClock(int(pts[0]), fps, tb)
    count = clock.count_before(int(end_tick))
    limits = np.array([clock.last_tick_on_screen(k) for k in range(count)], dtype=np.int64)
    idx = (np.searchsorted(pts, limits, side="right") - 1).astype(np.int64)
    return idx, (pts[idx] - pts[0]).astype(np.float64) * float(tb)


class StreamingSelector:
    """The same rule applied while frames arrive in presentation order, for streams whose timestamps are known only
    after decoding (AVI, MPEG-PS): a frame is chosen for every sample time before the next frame's time.

    ``push(tick)`` for each frame returns how many samples the *previous* frame covers; ``finish(end_tick)`` returns
    the count for the last one. Ticks are integers of the ``time_base`` given at construction.
    """

    def __init__(self, fps, time_base):
        self.fps, self.time_base = fps, time_base
        self.clock: SampleClock | None = None
        self.k = 0  # next sample index

    def _covered_until(self, limit: int) -> int:
        n = max(0, self.clock.count_before(limit) - self.k)
        self.k += n
        return n

    def push(self, tick: int) -> int:
        if self.clock is None:
            self.clock = SampleClock(tick, self.fps, self.time_base)
            return 0
        return self._covered_until(tick)

    def finish(self, end_tick: int) -> int:
        return 0 if self.clock is None else self._covered_until(end_tick)

    @property
    def start(self) -> int | None:
        return None if self.clock is None else self.clock.start
