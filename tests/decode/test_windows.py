"""Windows cut from samples arriving in pieces (`pipeline.decode.windows.WindowCutter`: the tokenize job's frames
side output) equal the windows cut from all samples at once."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.decode.windows import TAIL_POLICIES, WindowCutter, cut_windows, plan_windows


@pytest.mark.parametrize("tail", TAIL_POLICIES)
@pytest.mark.parametrize("stride", [17, 5, 20])
def test_window_cutter_equals_cut_windows_for_any_pieces(tail, stride):
    """Samples arriving in pieces of any sizes give `cut_windows`' windows (frames, times, indices, pads), skipped
    ones left out, and the cutter holds no sample before the next window's start."""
    rng = np.random.default_rng(stride)
    for n in (10, 17, 40, 61):
        frames = rng.integers(0, 255, (n, 2, 2, 3), dtype=np.uint8)
        ts, idx = np.arange(n) / 3.0, np.arange(n) * 10
        plan = plan_windows(n, 17, stride, tail)
        skip = frozenset(rng.choice(len(plan.spans), size=len(plan.spans) // 2, replace=False).tolist()) \
            if plan.spans else frozenset()
        want = cut_windows(frames, ts, idx, plan, skip)
        cutter, got, pos = WindowCutter(plan, skip), [], 0
        while pos < n:
            k = int(rng.integers(1, 9))
            got += cutter.add(frames[pos:pos + k], ts[pos:pos + k], idx[pos:pos + k])
            pos = min(pos + k, n)
            nxt = [plan.spans[w][0] for w in cutter.todo[cutter.next:]]
            assert cutter.first == min(nxt[0] if nxt else pos, pos)  # nothing held before the next window
        assert cutter.done and [w.index for w in got] == [w.index for w in want]
        for a, b in zip(got, want):
            assert np.array_equal(a.frames, b.frames) and np.array_equal(a.timestamps, b.timestamps)
            assert np.array_equal(a.indices, b.indices) and a.padded == b.padded
