"""An MP4/MOV probed from its header (media data read as zeros) equals the full demux, field by field."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from pipeline.decode.probe import probe
from pipeline.decode.status import DecodeError
from tests.decode.media import CASES, broken, build, media  # noqa: F401  (session fixtures)

MP4_CASES = [c.name for c in CASES if c.ext in ("mp4", "mov")]


def _diffs(a, b) -> list[str]:
    out = []
    for f in dataclasses.fields(a):
        if f.name == "indexed_from":
            continue
        x, y = getattr(a, f.name), getattr(b, f.name)
        same = np.array_equal(x, y) if isinstance(x, np.ndarray) else (x == y or (x != x and y != y))
        if not same:
            out.append(f"{f.name}: demux {x!r} header {y!r}")
    return out


@pytest.fixture(scope="module")
def long_gops(tmp_path_factory):
    """The MP4 cases at 8 s, 320x240, GOP 24: several key frames, media data well past the kept bytes."""
    folder = tmp_path_factory.mktemp("header")
    return {c.name: build(dataclasses.replace(c, seconds=8.0, size=(320, 240), gop=24), folder)
            for c in CASES if c.ext in ("mp4", "mov")}


@pytest.mark.parametrize("name", MP4_CASES)
def test_header_probe_equals_demux(long_gops, name):
    """With only the first 8 KiB of media real, the header probe gives the demux probe's every field (times, key
    frames, rotation, pixel format) and reads the media data as zeros."""
    m = long_gops[name]
    if m.skipped:
        pytest.skip(m.skipped)
    full = probe(str(m.path), header_only=False)
    head = probe(str(m.path), keep=8192, align=1)
    assert full.indexed_from == "demux" and head.indexed_from == "header"
    assert not _diffs(full, head), _diffs(full, head)
    assert len(head.restart_ticks) > 1  # several key frames, found in the header


def test_header_probe_falls_back_when_first_frame_is_not_kept(long_gops):
    """Keeping no media bytes leaves the first frame unknown: the probe demuxes the real file instead."""
    m = long_gops["h264_rot90_mp4"]
    info = probe(str(m.path), keep=0, align=1)
    assert info.indexed_from == "demux" and info.rotation == 90


@pytest.mark.parametrize("name", ["truncated_index_front", "truncated_index_end", "too_short"])
def test_header_probe_keeps_failure_classes(broken, name):  # noqa: F811
    """A cut MP4 is `truncated` from its header as from its packets, and a good short one is probed the same."""
    b = broken[name]
    for kw in ({"header_only": False}, {"keep": 1024, "align": 1}):
        try:
            got = probe(str(b.path), **kw).num_packets
        except DecodeError as e:
            got = e.reason
        if name == "too_short":
            assert got == 30
        else:
            assert got == b.reason


@pytest.mark.parametrize("flags", ["frag_keyframe+empty_moov", "faststart"])
def test_header_probe_fragmented_and_faststart(tmp_path, flags):
    """A fragmented MP4 (sample tables in `moof` boxes between the media) and an index-first one: the header probe
    equals the demux, and reads the media as zeros."""
    from pipeline.decode.synth import write_synthetic_video

    path = tmp_path / "v.mp4"
    write_synthetic_video(path, 192, 24, size=(320, 240), gop=24, bframes=2, container_options={"movflags": flags})
    full, head = probe(str(path), header_only=False), probe(str(path), keep=8192, align=1)
    assert not _diffs(full, head), _diffs(full, head)
    assert head.indexed_from == "header" and len(head.restart_ticks) == 8


def test_header_probe_keeps_ffmpeg_quiet_about_its_zeros(long_gops):
    """FFmpeg's H.264 parser complains of every zeroed packet ("Invalid NAL unit size", two lines each); those
    complaints are the view's, not the file's, so the header probe captures them: the decode child's log (where
    `av.logging` passes FFmpeg's errors on) stays clean."""
    import av

    m = long_gops["h264_gop250_bf_mp4_30"]
    before = av.logging.get_level()
    av.logging.set_level(av.logging.ERROR)  # as the decode child (pipeline/decode/sample.py: _warmup)
    try:
        with av.logging.Capture() as logs:
            head = probe(str(m.path), keep=8192, align=1)
    finally:
        av.logging.set_level(before)
    assert head.indexed_from == "header" and not logs, logs[:3]
