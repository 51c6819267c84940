"""Segments of a long input (pipeline/decode/segments.py): decoded apart, their windows are the whole-video decode's,
bit for bit, on closed and open GOPs, B-frames, VFR and rotated inputs; the cut lands just after key frames; inputs
that cannot be cut cheaply stay whole."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from pipeline.decode import DecodeConfig, decode_windows
from pipeline.decode import status as st
from pipeline.decode.probe import probe
from pipeline.decode.resample import select_frames
from pipeline.decode.segments import MIN_BYTES_PER_S, cut_segments, find_segments, probe_segments, worth_probing
from pipeline.decode.synth import write_synthetic_video
from pipeline.decode.windows import WindowRange
from tests.decode.media import vfr_times

# name: (extension, codec, fps, frames, gop, bframes, rotation, vfr, encoder options)
VIDEOS = {
    "h264_closed_bf_mp4": ("mp4", "libx264", 30, 360, 24, 3, 0, False, None),
    "h264_open_gop_mp4": ("mp4", "libx264", 25, 300, 24, 3, 0, False, {"x264-params": "open-gop=1"}),
    "hevc_open_gop_mp4": ("mp4", "libx265", 25, 300, 25, 3, 0, False, None),  # CRA pictures, leading frames
    "h264_vfr_mp4": ("mp4", "libx264", 30, 360, 30, 2, 0, True, None),
    "h264_rot90_mp4": ("mp4", "libx264", 30, 300, 30, 2, 90, False, None),
    "mpeg4_bf_mp4": ("mp4", "mpeg4", 25, 300, 12, 2, 0, False, None),
    "h264_open_gop_mkv": ("mkv", "libx264", 30, 330, 30, 3, 0, False, {"x264-params": "open-gop=1"}),
}
# (num_frames, stride, tail) of the window plan, small so a 10-12 s clip has a dozen windows
SHAPES = [(4, None, "skip"), (5, 3, "pad"), (6, 4, "overlap")]


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("segments")
    out = {}
    for name, (ext, codec, fps, n, gop, bf, rot, vfr, opts) in VIDEOS.items():
        path = folder / f"{name}.{ext}"
        write_synthetic_video(path, n, fps, (96, 64), codec=codec, gop=gop, bframes=bf, rotation=rot,
                              timestamps=vfr_times(n) if vfr else None, options=opts)
        out[name] = str(path)
    return out


def _cfg(shape, segment_s=2.5, **kw) -> DecodeConfig:
    num_frames, stride, tail = shape
    return DecodeConfig(size=32, num_frames=num_frames, stride=stride, tail=tail, segment_s=segment_s, **kw)


def _segments(path: str, cfg: DecodeConfig):
    """The cut of `path`: from the header probe for MP4 (what the split stage does), from the probe otherwise."""
    return probe_segments(path, cfg) if path.endswith(".mp4") else cut_segments(probe(path), cfg)


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[0]}-{s[1]}-{s[2]}")
@pytest.mark.parametrize("name", list(VIDEOS))
def test_segments_decode_to_the_whole_video_windows(videos, name, shape):
    """Every segment decoded on its own (a seek to its key frame) gives exactly the whole decode's windows."""
    path, cfg = videos[name], _cfg(shape)
    whole = decode_windows(path, cfg)
    assert whole.status == st.OK and whole.num_windows_total >= 6, whole.message
    segs = _segments(path, cfg)
    assert segs is not None and len(segs.ranges) >= 3 and segs.num_windows == whole.num_windows_total
    assert segs.ranges[0][0] == 0 and segs.ranges[-1][1] == segs.num_windows
    assert all(a[1] == b[0] for a, b in zip(segs.ranges, segs.ranges[1:])), segs.ranges
    got = []
    for a, b in segs.ranges:
        res = decode_windows(path, cfg, choose=WindowRange(a, b))
        assert res.status == st.OK and res.num_windows_total == whole.num_windows_total, res.message
        assert [w.index for w in res.windows] == list(range(a, b))
        got += res.windows
    assert [w.index for w in got] == [w.index for w in whole.windows]
    for x, y in zip(got, whole.windows):
        np.testing.assert_array_equal(x.indices, y.indices)
        np.testing.assert_array_equal(x.timestamps, y.timestamps)
        assert x.padded == y.padded and x.frames.shape == y.frames.shape
        diff = np.abs(x.frames.astype(int) - y.frames.astype(int))
        assert diff.max() == 0, f"{name} window {x.index}: max {diff.max()} mean {diff.mean():.4f}"


def test_segments_resume_inside_a_segment(videos):
    """A segment with some windows already committed decodes only the others, equal to the whole decode's."""
    path, cfg = videos["h264_open_gop_mp4"], _cfg(SHAPES[0])
    whole = decode_windows(path, cfg)
    a, b = _segments(path, cfg).ranges[1]
    res = decode_windows(path, cfg, skip_windows=frozenset({a, a + 1}), choose=WindowRange(a, b))
    assert [w.index for w in res.windows] == list(range(a + 2, b))
    for w in res.windows:
        np.testing.assert_array_equal(w.frames, whole.windows[w.index].frames)


def test_cut_segments_lengths_and_key_frames(videos):
    """About equal segments no longer than 1.25 x segment_s; each starts just after a restart point; short or
    unset means no cut."""
    path = videos["h264_closed_bf_mp4"]  # 12 s, GOP 24 frames (0.8 s)
    info = probe(path)
    cfg = _cfg((1, None, "skip"), segment_s=3.0)  # a window every 1/3 s: several candidates near each target
    segs = cut_segments(info, cfg)
    idx, _ = select_frames(info.pts_ticks, info.end_tick, cfg.fps, info.time_base, info.rates)
    spans = cfg.window_plan(len(idx)).spans
    assert len(segs.ranges) == 4  # ceil(12 / 3)
    for a, b in segs.ranges:
        assert (spans[b - 1][1] - spans[a][0]) / cfg.fps <= 1.25 * 3.0 + 1.0
    tb = float(info.time_base)
    for a, _ in segs.ranges[1:]:
        tick = info.pts_ticks[idx[spans[a][0]]]
        before = info.restart_ticks[info.restart_ticks <= tick].max()
        assert (tick - before) * tb < 0.8 / 2, "the boundary should sit in the first half of a GOP"
    assert cut_segments(info, dataclasses.replace(cfg, segment_s=12.5)) is None  # not longer than segment_s
    assert cut_segments(info, dataclasses.replace(cfg, segment_s=None)) is None


def test_find_segments_keeps_what_it_cannot_cut_whole(videos, tmp_path):
    """Matroska (demuxed to probe), a non-video and a missing file are not cut, and nothing raises."""
    cfg = _cfg(SHAPES[0])
    assert find_segments(videos["h264_open_gop_mkv"], cfg) is None
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video at all" * 100)
    assert find_segments(str(junk), cfg) is None
    assert find_segments(str(tmp_path / "missing.mp4"), cfg) is None
    found = find_segments(videos["h264_closed_bf_mp4"], cfg)  # through the isolated child, as the split stage runs
    assert found is not None and found == probe_segments(videos["h264_closed_bf_mp4"], cfg)


def test_worth_probing_by_listed_size():
    """Only inputs large enough to last segment_s at 1 Mbit/s, or of unknown size, are probed."""
    cfg = DecodeConfig(segment_s=100.0)
    assert worth_probing(None, cfg) and worth_probing(int(100 * MIN_BYTES_PER_S), cfg)
    assert not worth_probing(int(100 * MIN_BYTES_PER_S) - 1, cfg)
    assert not worth_probing(10**12, DecodeConfig(segment_s=None))
    with pytest.raises(ValueError, match="decode.segment_s"):
        DecodeConfig(segment_s=0)
