"""Training clips decode only their window: the same clip whole-video decoding would cut at the same start."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.decode import DecodeConfig
from pipeline.decode.synth import read_frame_number, write_synthetic_video
from pipeline.train.data import random_clips, random_window, sampled_frames


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """12 s at 24 fps, GOP 48 with B-frames: 36 samples at 3 FPS, so windows start in many GOPs."""
    path = tmp_path_factory.mktemp("train") / "c.mp4"
    write_synthetic_video(path, 12 * 24, 24, size=(160, 120), gop=48, bframes=2)
    return str(path)


@pytest.mark.parametrize("backend", ["decord", "pyav"])
def test_data_random_clips_equal_whole_video_cut(clip, backend):
    """Each seeked clip equals `random_window` over the whole video's samples with the same seed."""
    decode = DecodeConfig(size=32, backend=backend)
    frames = sampled_frames(clip, decode, None)
    for item in range(4):
        seed = (0, item, 7)
        got = random_clips(clip, decode, 17, 3, seed, None)
        rng = np.random.default_rng(list(seed))
        want = [random_window(frames, 17, rng)[0] for _ in range(3)]
        assert len(got) == 3
        for a, b in zip(got, want):
            diff = np.abs(a.astype(int) - b.astype(int))
            assert a.shape == b.shape == (17, 32, 32, 3) and diff.max() == 0, f"max {diff.max()} mean {diff.mean()}"


def test_data_random_clips_pad_short_video(tmp_path):
    """A video with fewer samples than a clip gives one clip padded with its last frame, as `random_window` does."""
    path = tmp_path / "short.mp4"
    write_synthetic_video(path, 48, 24, size=(160, 120))  # 2 s -> 6 samples
    (got,) = random_clips(str(path), DecodeConfig(size=64), 17, 1, (1, 2, 7), None)
    assert got.shape == (17, 64, 64, 3)
    assert [read_frame_number(f) for f in got] == [0, 8, 16, 24, 32, 40] + [40] * 11
