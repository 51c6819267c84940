"""Pure helpers of the decode stage: the timestamp rule, window plans, the spatial policy, the synthetic frame code."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch

from pipeline.decode.resample import StreamingSelector, select_frames
from pipeline.decode.spatial import resize_crop
from pipeline.decode.synth import draw_frame, read_frame_code, read_frame_number, write_synthetic_video
from pipeline.decode.windows import plan_windows


def test_resample_25fps_is_exactly_3fps():
    """25 fps: one sample every 8 1/3 frames (not every 8th, which would be 3.125 FPS)."""
    ticks = np.arange(100) * 512  # 1/12800 time base, 25 fps
    idx, times = select_frames(ticks, 100 * 512, 3, Fraction(1, 12800))
    assert idx.tolist() == [int(np.floor(k * 25 / 3 + 1e-9)) for k in range(12)]
    np.testing.assert_allclose(times, idx / 25)


@pytest.mark.parametrize("rate,want", [(Fraction(30), [0, 10, 20, 30]), (Fraction(30000, 1001), [0, 9, 19, 29])])
def test_resample_millisecond_stamps_use_the_grid(rate, want):
    """Matroska's rounded stamps give the frames of the exact grid (30 fps: 20 at 2/3 s; 29.97: not yet)."""
    ms = np.array([round(i * 1000 / rate) for i in range(40)])
    idx, _ = select_frames(ms, round(40 * 1000 / rate), 3, Fraction(1, 1000), rates=(rate,))
    assert idx[:4].tolist() == want


def test_resample_variable_rate_and_slow_source():
    """VFR uses the stamps; a 2 fps source sampled at 3 fps repeats frames."""
    ticks = np.array([0, 30, 80, 300, 340, 700])  # ms
    idx, times = select_frames(ticks, 1000, 3, Fraction(1, 1000), rates=(Fraction(30),))
    assert idx.tolist() == [0, 3, 4]  # t = 0, 333, 667 ms
    np.testing.assert_allclose(times, [0, 0.3, 0.34])
    idx, _ = select_frames(np.arange(4) * 500, 2000, 3, Fraction(1, 1000))
    assert idx.tolist() == [0, 0, 1, 2, 2, 3]


def test_resample_streaming_matches_batch():
    """The streaming selector makes the same choices as the batch rule on random variable timing."""
    rng = np.random.default_rng(3)
    for _ in range(20):
        ticks = np.cumsum(rng.integers(1, 90, size=rng.integers(2, 200)))
        end = int(ticks[-1] + rng.integers(1, 90))
        fps = Fraction(int(rng.integers(1, 40)), int(rng.integers(1, 4)))
        want, _ = select_frames(ticks, end, fps, Fraction(1, 1000))
        sel, got = StreamingSelector(fps, Fraction(1, 1000)), []
        for i, t in enumerate(ticks):
            got += [i - 1] * sel.push(int(t))
        got += [len(ticks) - 1] * sel.finish(end)
        assert got == want.tolist()


@pytest.mark.parametrize("n,length,stride", [(0, 17, 17), (16, 17, 17), (17, 17, 17), (50, 17, 17), (60, 16, 8),
                                             (40, 17, 30), (100, 17, 5)])
def test_windows_plan_counts(n, length, stride):
    """Full windows = floor((n - length) / stride) + 1; pad/overlap add at most one, covering every sample."""
    full = 0 if n < length else (n - length) // stride + 1
    skip = plan_windows(n, length, stride, "skip")
    assert len(skip.spans) == full and all(b - a == length for a, b, _ in skip.spans)
    pad = plan_windows(n, length, stride, "pad")
    assert all(b - a + p == length for a, b, p in pad.spans)
    if n and stride <= length:
        assert pad.spans[-1][1] == n  # the last sample is in a window
    over = plan_windows(n, length, stride, "overlap")
    if full:
        assert over.spans[-1][1] == n or n - length < 0


def _official_float_path(frames: np.ndarray, size: int) -> np.ndarray:
    """ARCHITECTURE.md §13.1: /255, v2 Resize(size, antialias) on float, CenterCrop, back to uint8."""
    from torchvision.transforms import v2

    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255
    x = v2.CenterCrop(size)(v2.Resize(size, antialias=True)(x))
    return (x * 255).round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy()


@pytest.mark.parametrize("hw,size", [((120, 160), 64), ((480, 853), 256), ((853, 480), 128), ((100, 100), 128)])
def test_spatial_matches_official_float_path(hw, size):
    """Short side to size, bilinear antialias, center crop: within 1 grey level of the official float pipeline."""
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, size=(2, *hw, 3), dtype=np.uint8)
    frames = np.ascontiguousarray(np.repeat(np.repeat(frames[:, ::4, ::4], 4, 1), 4, 2)[:, : hw[0], : hw[1]])
    got = resize_crop(frames, size)
    want = _official_float_path(frames, size)
    diff = np.abs(got.astype(int) - want.astype(int))
    assert got.shape == (2, size, size, 3) and diff.max() <= 1, f"max {diff.max()} mean {diff.mean():.4f}"


def test_spatial_tuple_and_none():
    """(h, w) covers then crops; None passes frames through."""
    frames = np.zeros((1, 120, 160, 3), np.uint8)
    assert resize_crop(frames, (64, 128)).shape == (1, 64, 128, 3)
    assert resize_crop(frames, (128, 64)).shape == (1, 128, 64, 3)
    assert resize_crop(frames, None) is not None and resize_crop(frames, None).shape == frames.shape


@pytest.mark.parametrize("wh", [(160, 120), (853, 480), (120, 160), (64, 64)])
def test_synth_code_survives_resize(wh):
    """Frame numbers read back after the spatial policy at 128 and 256 and after a quarter turn."""
    for number in (0, 1, 7, 1234, 4095):
        frame = draw_frame(number, *wh, texture=None)
        assert read_frame_code(frame) == (number, 0)
        assert read_frame_code(np.rot90(frame, k=-1).copy()) == (number, 1)  # one clockwise turn
        for size in (128, 256):
            assert read_frame_number(resize_crop(frame[None], size)[0]) == number


def test_synth_reader_rejects_other_images():
    """A frame without the code is refused, not misread."""
    with pytest.raises(ValueError):
        read_frame_code(np.full((64, 64, 3), 200, np.uint8))


@pytest.mark.parametrize("wh", [(1280, 720), (854, 480), (850, 480), (162, 90), (258, 300), (256, 256)])
def test_sampled_frames_are_the_rgb24_frames_resized(tmp_path, wh):
    """The PyAV path resizes straight from swscale's rgb24 plane (line padding included): the same pixels as resizing
    the frame's rgb24 array, for every size policy, and the same on every call. (YUV->RGBA, which this path used
    before, gets the last two columns wrong at widths 850, 162, 258 and varies between calls at 854.)"""
    import av

    from pipeline.decode.backends import _sampled
    from pipeline.decode.spatial import resize_crop_frame

    path = tmp_path / "v.mp4"
    write_synthetic_video(path, 3, 30, size=wh, gop=2, bframes=1)
    with av.open(str(path)) as c:
        frame = list(c.decode(video=0))[-1]
    rgb = frame.to_ndarray(format="rgb24")
    for _ in range(3):
        np.testing.assert_array_equal(frame.to_ndarray(format="rgb24"), rgb)
    for size in (256, (256, 448), (128, 128), 64, wh[::-1], None):
        want = resize_crop_frame(rgb, size)
        for _ in range(3):
            got = _sampled(frame, size)
            assert got.shape == want.shape and got.dtype == np.uint8
            np.testing.assert_array_equal(got, want)


def test_crop_dropped_is_the_share_the_centre_crop_cuts():
    """Same aspect ratio: nothing dropped; 16:9 into a square: the sides, ~43.7 %; portrait into landscape: most."""
    from pipeline.decode.spatial import crop_dropped, resize_crop

    assert crop_dropped(480, 640, (240, 320)) == 0.0
    assert abs(crop_dropped(720, 1280, (256, 256)) - (1 - 256 / 455)) < 1e-12
    assert crop_dropped(1280, 720, (256, 448)) > 0.65
    frame = np.zeros((1, 720, 1280, 3), np.uint8)
    assert resize_crop(frame, 256).shape[1:3] == (256, 256)  # the crop the share describes
