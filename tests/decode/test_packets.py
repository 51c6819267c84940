"""Windows of an MP4/MOV decoded from the probe's packet table (no container) are the container path's frames."""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import pytest

from pipeline.decode import packets
from pipeline.decode.backends import iter_pyav
from pipeline.decode.probe import probe
from pipeline.decode.synth import write_synthetic_video
from tests.decode.media import CASES, build

MP4_CASES = [c.name for c in CASES if c.ext in ("mp4", "mov")]
EXTRA = {  # name: write_synthetic_video kwargs beyond 8 s at 24 fps, 320x240
    "h264_open_gop_mp4": dict(gop=24, bframes=3, options={"x264-params": "open-gop=1"}),
    "h264_fragmented_mp4": dict(gop=24, bframes=2, container_options={"movflags": "frag_keyframe+empty_moov"}),
    "h264_faststart_audio_mp4": dict(gop=24, bframes=2, audio=True, container_options={"movflags": "faststart"}),
    "hevc_open_gop_mp4": dict(codec="libx265", gop=24, bframes=3),  # CRA pictures with leading frames
}


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """The decode matrix's MP4 cases at 8 s, 320x240, GOP 24 (several key frames), and a few more GOP layouts."""
    folder = tmp_path_factory.mktemp("packets")
    out = {c.name: build(dataclasses.replace(c, seconds=8.0, size=(320, 240), gop=24), folder)
           for c in CASES if c.ext in ("mp4", "mov")}
    out = {k: (None if m.skipped else str(m.path)) for k, m in out.items()}
    for name, kw in EXTRA.items():
        path = folder / f"{name}.mp4"
        write_synthetic_video(path, 8 * 24, 24, size=(320, 240), **kw)
        out[name] = str(path)
    return out


def _runs(n: int) -> list[np.ndarray]:
    """Three runs like training windows: near the start, in the middle, at the end; every 3rd frame."""
    return [np.arange(a, min(n, a + 40), 3) for a in (5, n // 2, n - 41)]


@pytest.mark.parametrize("threads", [1, 3])
@pytest.mark.parametrize("name", MP4_CASES + sorted(EXTRA))
def test_packets_equal_container_seek(videos, name, threads):
    """H.264 and HEVC windows from the packet table equal the container path's (seek to the key frame, decode),
    frame by frame; other codecs are not taken by the packet path."""
    path = videos[name]
    if path is None:
        pytest.skip("tool missing")
    info = probe(path)
    assert packets.usable(info) == (info.codec in ("h264", "hevc")), (info.codec, len(info.pkt_pos))
    if not packets.usable(info):
        return
    runs = _runs(len(info.pts_ticks))
    got = list(packets.iter_packets(path, info, runs, 64, threads, chunk=50_000))
    want = list(iter_pyav(path, info, runs, 64, threads, seek=True))
    assert [i for i, _ in got] == [i for i, _ in want] == [int(i) for r in runs for i in r]
    for (i, a), (_, b) in zip(got, want):
        d = np.abs(a.astype(int) - b.astype(int))
        assert d.max() == 0, f"frame {i}: max {d.max()} mean {d.mean()}"


def test_packets_read_only_the_span(videos):
    """The bytes read are (at most) the span from each run's key frame to its last packet, each byte once."""
    from pipeline.decode.source import RemoteObject

    path = videos["h264_faststart_audio_mp4"]
    info = probe(path)
    runs = _runs(len(info.pts_ticks))
    obj = RemoteObject(f"file://{path}", size=os.path.getsize(path), block_size=64 << 10)
    list(packets.iter_packets(obj, info, runs, 32, chunk=16 << 10))
    spans = [packets.byte_range(info, a, b) for a, b in packets.spans(info, runs)]
    total = sum(e - s for s, e in spans)  # the decode may stop a few packets early: all its frames are out
    assert 0.9 * total <= obj.fetched_bytes <= total < 0.8 * obj.size, (obj.fetched_bytes, total, obj.size)
    first, last = packets.spans(info, runs[1:2])[0]
    assert info.pkt_key[first] and first > 0  # the middle run starts at its key frame, not at the file's start
    assert spans[1][0] == info.pkt_pos[first] and last < len(info.pkt_pos) - 1
