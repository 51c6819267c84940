"""Every codec × container × rate of ``tests/decode/media.py`` gives exactly the frames the sampling rule names.

The expected frames are computed here, independently of ``pipeline.resample``, from the *true* frame times the
writer used (exact fractions for constant rates), and the frames actually returned are identified by reading the
frame number back from their pixels.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from pipeline.decode import sample_frames
from pipeline.decode.synth import read_frame_code
from tests.decode.media import CASES, broken, media  # noqa: F401  (session fixtures)

FPS = 3


def true_times(m) -> list[Fraction]:
    """Frame times as exact fractions (constant rate) or the writer's 1/90000-rounded times (variable rate)."""
    if m.case.vfr:
        return [Fraction(round(t * 90000), 90000) for t in m.truth.timestamps]
    rate = Fraction(m.case.fps)
    return [Fraction(i) / rate for i in range(m.case.num_frames)]


def expected(times: list[Fraction], end: Fraction, fps: int = FPS) -> list[int]:
    """The rule, by brute force: for t_k = t_0 + k/fps < end, the last frame with time <= t_k."""
    out, k = [], 0
    while times[0] + Fraction(k, fps) < end:
        t = times[0] + Fraction(k, fps)
        out.append(max(i for i, ti in enumerate(times) if ti <= t))
        k += 1
    return out


def expected_for(m) -> list[int]:
    times = true_times(m)
    if not m.case.vfr:
        return expected(times, times[-1] + 1 / Fraction(m.case.fps))
    # The last frame's duration is the muxer's choice; the clip is built so that any plausible one gives one answer.
    short, long = expected(times, times[-1] + Fraction(1, 40)), expected(times, times[-1] + Fraction(1, 20))
    assert short == long, "test media: VFR clip ends where the last frame's duration changes the sample count"
    return short


def _media(media, name):
    m = media[name]
    if m.skipped:
        pytest.skip(m.skipped)
    return m


@pytest.mark.parametrize("backend", ["auto", "pyav", "decord"])
@pytest.mark.parametrize("name", [c.name for c in CASES])
def test_decode_matrix_frames_follow_rule(media, name, backend):
    """The sampled frames are exactly the rule's frames, with their true timestamps, on every backend choice."""
    m = _media(media, name)
    s = sample_frames(str(m.path), fps=FPS, size=None, backend=backend)
    want = expected_for(m)
    got_numbers = [read_frame_code(f)[0] for f in s.frames]
    assert s.indices.tolist() == want, f"indices {s.indices.tolist()} != rule {want}"
    assert got_numbers == want, f"pixels say frames {got_numbers}, the rule names {want} (backend {s.backend})"
    times = true_times(m)
    want_t = np.array([float(times[i] - times[0]) for i in want])
    err = np.abs(s.timestamps - want_t)
    assert err.max() <= 1e-3, f"timestamps off by up to {err.max() * 1e3:.3f} ms (mean {err.mean() * 1e3:.3f})"
    assert s.frames.dtype == np.uint8 and s.frames.shape[1:] == (m.truth.display_size[1], m.truth.display_size[0], 3)
    assert s.timestamps.dtype == np.float64 and s.indices.dtype == np.int64
    if backend == "decord":
        assert s.backend == ("decord" if m.case.decord_ok else "pyav"), s.notes
        assert m.case.decord_ok or s.notes, "decord cannot be trusted here: the fallback must leave a note"
    else:
        assert s.backend == "pyav"


@pytest.mark.parametrize("name", ["h264_gop250_bf_mp4_30", "hevc8_mkv_30", "h264_vfr_mkv", "mpeg2_ps_25",
                                  "h264_avi_bf_30", "av1_mp4_24"])
def test_decode_matrix_threads(media, name):
    """With decoder threads (frame threading) the skipping PyAV path still returns exactly the rule's frames."""
    m = _media(media, name)
    s = sample_frames(str(m.path), fps=FPS, size=64, threads=3)
    want = expected_for(m)
    assert s.indices.tolist() == want and [read_frame_code(f)[0] for f in s.frames] == want


@pytest.mark.parametrize("name", [c.name for c in CASES if c.rotation] + ["h264_gop250_bf_mp4_30"])
@pytest.mark.parametrize("backend", ["decord", "pyav"])
def test_decode_matrix_rotation_applied(media, name, backend):
    """Both paths turn frames for display: the code reads upright and the shape is the displayed one."""
    m = _media(media, name)
    s = sample_frames(str(m.path), fps=FPS, backend=backend)
    turns = {read_frame_code(f)[1] for f in s.frames}
    assert turns == {0}, f"frames turned by {turns} quarter turns (rotation {m.case.rotation})"
    assert (s.width, s.height) == m.truth.display_size


@pytest.mark.parametrize("size", [128, 256, (112, 144)])
@pytest.mark.parametrize("name", ["h264_gop30_bf_mkv_25", "vp9_odd_853x480_webm", "h264_rot90_mp4", "mpeg2_ps_25"])
def test_decode_matrix_resized_frames_keep_identity(media, name, size):
    """After the spatial policy the frames have the asked size and still carry the right frame numbers."""
    m = _media(media, name)
    if isinstance(size, tuple) and m.truth.display_size[0] < m.truth.display_size[1]:
        size = size[::-1]  # keep the crop from cutting into the central code square of a portrait video
    s = sample_frames(str(m.path), fps=FPS, size=size)
    shape = (size, size) if isinstance(size, int) else size
    assert s.frames.shape[1:3] == shape
    assert [read_frame_code(f) for f in s.frames] == [(i, 0) for i in expected_for(m)]


@pytest.mark.parametrize("name", [c.name for c in CASES if c.decord_ok][:6])
def test_decode_matrix_backends_agree_on_pixels(media, name):
    """decord and PyAV give the same images for the same frames (up to colour-conversion rounding)."""
    m = _media(media, name)
    a = sample_frames(str(m.path), fps=FPS, size=128, backend="decord")
    b = sample_frames(str(m.path), fps=FPS, size=128, backend="pyav")
    assert a.backend == "decord" and b.backend == "pyav"
    np.testing.assert_array_equal(a.indices, b.indices)
    diff = np.abs(a.frames.astype(np.int16) - b.frames.astype(np.int16))
    assert diff.mean() < 1.5 and np.percentile(diff, 99) <= 8, f"max {diff.max()} mean {diff.mean():.3f}"


def test_decode_matrix_bytes_and_path_agree(media):
    """Bytes in memory decode exactly like the file on disk."""
    m = _media(media, "h264_vfr_mkv")
    a = sample_frames(str(m.path), fps=FPS, size=64)
    b = sample_frames(m.path.read_bytes(), fps=FPS, size=64)
    np.testing.assert_array_equal(a.indices, b.indices)
    np.testing.assert_array_equal(a.frames, b.frames)


@pytest.mark.parametrize("fps", [1.0, 2.5, 7.0, 50.0])
def test_decode_matrix_other_rates(media, fps):
    """Any target rate follows the rule, including one above the source rate (frames repeat)."""
    m = _media(media, "h264_gop30_bf_mkv_25")
    s = sample_frames(str(m.path), fps=fps, backend="pyav")
    times = true_times(m)
    want = expected(times, times[-1] + Fraction(1, 25), fps=Fraction(fps))
    assert s.indices.tolist() == want
    assert [read_frame_code(f)[0] for f in s.frames] == want
