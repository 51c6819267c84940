"""The PyAV path decodes only what the rule's frames need: non-reference frames nothing samples are dropped by the
decoder (``skip_frame``), and the stretch between a GOP's last needed packet and the next clean key frame is never
sent (``ProbeInfo.restart_ticks``). Whatever it skips, the frames are the ones a full decode gives."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.decode.backends import _run_frames, _sampled, iter_pyav
from pipeline.decode.probe import probe
from pipeline.decode.resample import select_frames
from pipeline.decode.synth import read_frame_code, write_synthetic_video

FPS = 3.0

# (codec, extension, gop, bframes, encoder options): short GOPs, so most of each GOP lies after its last sample
CASES = {
    "h264_closed": ("libx264", "mp4", 12, 3, None),
    "h264_open_gop": ("libx264", "mkv", 12, 3, {"x264-params": "open-gop=1"}),
    "h264_all_intra": ("libx264", "mp4", 1, 0, None),
    "hevc_open_gop": ("libx265", "mkv", 12, 3, None),  # x265 writes CRA pictures with leading (RASL) frames
    "mpeg2_open_gop": ("mpeg2video", "mkv", 12, 2, None),
    "mpeg4_bf": ("mpeg4", "mp4", 12, 2, None),
    "vp9": ("libvpx-vp9", "webm", 12, None, None),
}


class _Counted:
    """The real stream, counting the packets handed to its decoder."""

    def __init__(self, stream):
        self.stream, self.sent = stream, 0

    @property
    def codec_context(self):
        return self.stream.codec_context

    def decode(self, packet=None):
        self.sent += packet is not None
        return self.stream.decode(packet)


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("skip")
    out = {}
    for name, (codec, ext, gop, bframes, options) in CASES.items():
        path = folder / f"{name}.{ext}"
        write_synthetic_video(path, 75, 30, codec=codec, gop=gop, bframes=bframes, options=options)
        out[name] = str(path)
    return out


def _wanted(info):
    idx, _ = select_frames(info.pts_ticks, info.end_tick, FPS, info.time_base, info.rates)
    return np.unique(idx)


@pytest.mark.parametrize("threads", [1, 3])
@pytest.mark.parametrize("name", list(CASES))
def test_skipping_gives_the_full_decodes_frames(videos, name, threads):
    """Skipping GOP tails and unsampled non-reference frames yields exactly a full decode's frames, the rule's ones."""
    info = probe(videos[name])
    wanted = _wanted(info)
    full = list(iter_pyav(videos[name], info, [wanted], None, threads, skip_nonref=False))
    got = list(iter_pyav(videos[name], info, [wanted], None, threads))
    assert [i for i, _ in got] == [i for i, _ in full] == wanted.tolist()
    assert [read_frame_code(f)[0] for _, f in got] == wanted.tolist()
    for (_, a), (_, b) in zip(got, full):
        np.testing.assert_array_equal(a, b)
    gop = CASES[name][2]
    assert len(info.restart_ticks) == len(range(0, 75, gop)), info.restart_ticks  # every key frame is clean here


@pytest.mark.parametrize("name", list(CASES))
def test_gop_tails_are_never_sent(videos, name):
    """Only packets up to each GOP's last needed one (plus the decoder's delay) reach the decoder: with a 12-frame GOP
    sampled every 10th frame, 26 of the 75 frames lie after their GOP's last sample (the decoder's reorder delay
    claims a few of them); all-intra video sends just the sampled frames."""
    import av

    info = probe(videos[name])
    wanted = _wanted(info)
    with av.open(videos[name]) as container:
        stream = container.streams.video[0]
        counted = _Counted(stream)
        frames = list(_run_frames(container.demux(stream), counted, info, wanted, None, True, _sampled))
    assert [i for i, _ in frames] == wanted.tolist()
    if name == "h264_all_intra":
        assert counted.sent == len(wanted)
    else:
        assert counted.sent <= info.num_packets - 15, (counted.sent, info.num_packets)
