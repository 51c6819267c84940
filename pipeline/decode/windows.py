"""Cut the sampled frames of one video into fixed-length windows (17 frames causal, 16 non-causal).

Window w covers samples ``[w * stride, w * stride + num_frames)``. The samples after the last full window — and a
video with fewer samples than one window — follow the ``tail`` policy, and the result says what happened:

* ``skip`` (default): the tail is dropped (its size is recorded); a video shorter than one window is ``too_short``.
* ``pad``: the tail becomes one more window, padded by repeating its last frame (VidTok's evaluation does this);
  a video shorter than one window gives one padded window.
* ``overlap``: one more window aligned to the last sample, overlapping its predecessor, so no frame is lost; a
  video shorter than one window is ``too_short``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np

TAIL_POLICIES = ("skip", "pad", "overlap")


@dataclass
class Window:
    """One clip for the tokenizer. ``frames``: (N, H, W, 3) uint8; ``timestamps``: (N,) float64 seconds since the
    video's first frame; ``indices``: (N,) int64 source frame indices (presentation order); ``padded``: how many
    trailing frames repeat the last real one (tail="pad")."""

    index: int
    frames: np.ndarray
    timestamps: np.ndarray
    indices: np.ndarray
    padded: int = 0


def pad_to_length(frames: np.ndarray, length: int) -> np.ndarray:
    """``(N, H, W, 3)`` frames with ``N < length`` padded to ``length`` by repeating the last frame (the ``pad`` tail
    rule; VidTok spec §13.1 step 7); clips already long enough are returned as they are. Numpy only: a training
    decode task uses it without importing torch."""
    n = frames.shape[0]
    if n == 0:
        raise ValueError("cannot pad an empty clip")
    if n >= length:
        return frames
    return np.concatenate([frames, np.repeat(frames[-1:], length - n, axis=0)], axis=0)


@dataclass(frozen=True)
class WindowPlan:
    """``spans``: (start, stop, pad) over the samples for every window; ``tail``: samples after the last full
    window; ``note``: what the tail policy did (empty when nothing was left over)."""

    spans: tuple[tuple[int, int, int], ...]
    tail: int
    note: str


def plan_windows(num_samples: int, num_frames: int, stride: int, tail: str = "skip") -> WindowPlan:
    """Window spans for ``num_samples`` sampled frames (see the module docstring for the policies)."""
    if num_frames <= 0 or stride <= 0:
        raise ValueError(f"num_frames and stride must be > 0, got {num_frames}, {stride}")
    if tail not in TAIL_POLICIES:
        raise ValueError(f"tail must be one of {TAIL_POLICIES}, got {tail!r}")
    full = 0 if num_samples < num_frames else (num_samples - num_frames) // stride + 1
    spans = [(w * stride, w * stride + num_frames, 0) for w in range(full)]
    covered = spans[-1][1] if spans else 0
    left = num_samples - covered
    note = ""
    if left > 0 and num_samples > 0:
        if tail == "skip":
            note = f"{left} sampled frames after the last full window dropped (tail=skip)"
        elif tail == "pad" and full * stride < num_samples:
            start = full * stride
            pad = num_frames - (num_samples - start)
            spans.append((start, num_samples, pad))
            note = f"last window padded with {pad} repeats of its last frame (tail=pad)"
        elif tail == "pad":  # stride > num_frames: the next window would start past the end
            note = f"{left} sampled frames after the last window dropped (stride {stride} > num_frames)"
        elif full:  # overlap, and at least one full window exists
            spans.append((num_samples - num_frames, num_samples, 0))
            note = f"last window shifted back to end at the last sample, overlapping by " \
                   f"{covered - (num_samples - num_frames)} frames (tail=overlap)"
    return WindowPlan(tuple(spans), max(left, 0), note)


def plan_pieces(num_samples: int, max_frames: int) -> WindowPlan:
    """Whole-clip mode: the clip as one window, or consecutive pieces of at most `max_frames` samples (the last one
    shorter); nothing is dropped or padded. For v1.1 causal models, which encode any length."""
    if max_frames <= 0:
        raise ValueError(f"max_frames must be > 0, found {max_frames}")
    spans = tuple((s, min(s + max_frames, num_samples), 0) for s in range(0, num_samples, max_frames))
    note = f"whole clip in {len(spans)} pieces of at most {max_frames} frames" if len(spans) > 1 else ""
    return WindowPlan(spans, 0, note)


def cut_windows(frames: np.ndarray, timestamps: np.ndarray, indices: np.ndarray, plan: WindowPlan,
                skip: frozenset[int] = frozenset()) -> list[Window]:
    """Materialise the planned windows, leaving out those whose index is in ``skip`` (already committed)."""
    return list(iter_cut_windows(frames.__getitem__, timestamps, indices, plan, skip))


def iter_cut_windows(take: Callable[[np.ndarray], np.ndarray], timestamps: np.ndarray, indices: np.ndarray,
                     plan: WindowPlan, skip: frozenset[int] = frozenset()) -> Iterator[Window]:
    """The windows of :func:`cut_windows` one by one, their frames from ``take(sample positions)`` (e.g. read back
    from a spill file, so the caller never holds all samples)."""
    for w, (start, stop, pad) in enumerate(plan.spans):
        if w in skip:
            continue
        sel = np.arange(start, stop)
        if pad:
            sel = np.concatenate([sel, np.full(pad, stop - 1)])
        yield Window(w, take(sel), timestamps[sel], indices[sel], pad)


@dataclass(frozen=True)
class RandomWindows:
    """A picklable window choice for :func:`pipeline.decode.iter_windows` (``choose=``): ``count`` window indices
    drawn uniformly, with replacement, from the ``num_windows`` of a video, by ``numpy.random.default_rng(seed)``.
    With ``stride=1`` windows that is a uniform random start over ``[0, N - num_frames]`` of the N samples."""

    seed: tuple
    count: int = 1

    def __call__(self, num_windows: int) -> list[int]:
        rng = np.random.default_rng(list(self.seed))
        return [int(rng.integers(0, num_windows)) for _ in range(self.count)]


@dataclass(frozen=True)
class WindowRange:
    """A picklable window choice for :func:`pipeline.decode.iter_windows` (``choose=``): the contiguous windows
    ``[first, stop)`` of a video — one segment of a long input (``pipeline/decode/segments.py``). The decode seeks
    once, to the key frame before the first window's first sample, and decodes straight through the last one."""

    first: int
    stop: int

    def __call__(self, num_windows: int) -> range:
        return range(max(self.first, 0), min(self.stop, num_windows))


class WindowCutter:
    """The windows of ``plan`` (except those in ``skip``) cut from a video's samples arriving in order, a run of
    consecutive samples at a time (``add``; e.g. the frames cache's rows): exactly the windows :func:`cut_windows`
    cuts from all samples, each returned as soon as its last sample is in, holding only the samples from the next
    window's start on. ``start``: the position of the first sample added (a segment of a video; the windows asked
    for must not start before it)."""

    def __init__(self, plan: WindowPlan, skip: frozenset[int] = frozenset(), start: int = 0):
        self.plan = plan
        self.todo = [w for w in range(len(plan.spans)) if w not in skip]
        self.next = 0  # position in `todo` of the next window to cut
        self.first = start  # sample position of the first held sample
        self.seen = start  # samples added so far (the first one added is sample `start`)
        self.held: list[tuple[np.ndarray, float, int]] = []  # (frame, timestamp, index) from `first` on

    @property
    def done(self) -> bool:
        """Every window asked for has been cut."""
        return self.next == len(self.todo)

    def add(self, frames: np.ndarray, timestamps, indices) -> list[Window]:
        """Take the next ``len(frames)`` samples; returns the windows they complete."""
        self.held.extend(zip(frames, timestamps, indices))
        self.seen += len(frames)
        out = []
        while not self.done:
            w = self.todo[self.next]
            start, stop, pad = self.plan.spans[w]
            if stop > self.seen:
                break
            sel = list(range(start, stop)) + [stop - 1] * pad
            rows = [self.held[p - self.first] for p in sel]
            out.append(Window(w, np.stack([r[0] for r in rows]), np.array([r[1] for r in rows], np.float64),
                              np.array([r[2] for r in rows], np.int64), pad))
            self.next += 1
        keep = min(self.plan.spans[self.todo[self.next]][0] if not self.done else self.seen, self.seen)
        if keep > self.first:
            del self.held[:keep - self.first]
            self.first = keep
        return out
