"""``decode_windows``: failures are data (one reason class per broken kind), windows follow the tail policy, the
per-file time limit cuts a hanging read off, a crashing decoder does not take the caller down, and s3:// works."""

from __future__ import annotations

import os
import signal
import time

import numpy as np
import pytest

from pipeline.decode import status as st
from pipeline.config import load_config
from pipeline.decode import DecodeConfig, decode_windows, sample_frames
from pipeline.decode.isolate import IsolatedRunner
from pipeline.decode.synth import read_frame_number
from tests.decode.media import broken, media  # noqa: F401  (session fixtures)

BROKEN_KINDS = ["zero_bytes", "random_bytes", "text_file", "audio_only", "truncated_index_front", "truncated_index_end",
                "truncated_mkv", "truncated_webm",
                "unsupported_codec", "corrupt_header", "too_short", "too_many_pixels", "too_long", "missing_file"]


@pytest.mark.parametrize("kind", BROKEN_KINDS)
def test_decode_status_broken_kind_gets_reason(broken, kind):
    """Each broken input yields its reason class and a message, isolated or not, and no windows."""
    b = broken[kind]
    for isolate in (True, False):
        res = decode_windows(str(b.path), DecodeConfig(size=64, isolate=isolate, **b.kwargs))
        assert (res.status, isolate) == (b.reason, isolate), res.message
        assert res.message and res.windows == [] and res.num_windows_total == 0


def test_decode_status_sample_frames_raises_reason(broken):
    """The pure helper raises DecodeError carrying the same reason class."""
    with pytest.raises(st.DecodeError) as e:
        sample_frames(str(broken["truncated_index_end"].path))
    assert e.value.reason == st.TRUNCATED


def test_decode_status_good_file_windows(media):
    """A good clip: windows of num_frames consecutive samples, with the stride, the rule's frames and timestamps."""
    m = media["h264_gop30_bf_mkv_25"]  # 2.5 s at 25 fps -> 8 samples at 3 fps: frames 0, 8, 16, 25, 33, 41, 50, 58
    res = decode_windows(str(m.path), DecodeConfig(size=64, num_frames=3, stride=2))
    assert res.status == st.OK and res.message == ""
    assert res.num_windows_total == 3 and [w.index for w in res.windows] == [0, 1, 2]
    assert [w.indices.tolist() for w in res.windows] == [[0, 8, 16], [16, 25, 33], [33, 41, 50]]
    for w in res.windows:
        assert w.frames.shape == (3, 64, 64, 3) and w.frames.dtype == np.uint8
        assert [read_frame_number(f) for f in w.frames] == w.indices.tolist()
        np.testing.assert_allclose(w.timestamps, w.indices / 25.0, atol=1e-9)
    assert res.backend == "pyav" and res.source_fps == pytest.approx(25.0)  # auto: PyAV (docs/benchmarks.md)
    assert any("dropped" in n for n in res.notes), res.notes  # sample 58 is the tail


@pytest.mark.parametrize("tail,total,last", [("skip", 2, [3, 4, 5]), ("pad", 3, [6, 7, 7]), ("overlap", 3, [5, 6, 7])])
def test_decode_status_tail_policies(media, tail, total, last):
    """The tail after the last full window is dropped, padded with the last frame, or covered by an overlap."""
    m = media["h264_gop250_bf_mp4_30"]  # 2.5 s at 30 fps -> 8 samples
    res = decode_windows(str(m.path), DecodeConfig(size=32, num_frames=3, tail=tail))
    assert res.status == st.OK and res.num_windows_total == total
    assert (res.windows[-1].indices // 10).tolist() == last
    assert res.windows[-1].padded == (1 if tail == "pad" else 0)


def test_decode_status_pad_short_video(broken):
    """tail=pad turns a video shorter than one window into one padded window instead of too_short."""
    res = decode_windows(str(broken["too_short"].path), DecodeConfig(size=32, tail="pad"))
    assert res.status == st.OK and res.num_windows_total == 1
    w = res.windows[0]
    assert w.frames.shape[0] == 17 and w.padded == 14 and w.indices.tolist() == [0, 10, 20] + [20] * 14


def test_decode_status_skip_windows(media):
    """Committed windows are left out of the result but still counted."""
    m = media["h264_mp4_60"]  # 2 s -> 6 samples -> 3 windows of 2
    res = decode_windows(str(m.path), DecodeConfig(size=32, num_frames=2), skip_windows=frozenset({0, 2}))
    assert res.num_windows_total == 3 and [w.index for w in res.windows] == [1]
    assert res.windows[0].indices.tolist() == [40, 60]


def test_decode_status_hanging_read_times_out(tmp_path, media):
    """A read that never returns (a FIFO nobody writes) is cut off at the limit; the next file decodes normally."""
    fifo = tmp_path / "stalled.mp4"
    os.mkfifo(fifo)
    decode_windows(str(media["h264_mp4_24"].path), DecodeConfig(size=32, num_frames=2))  # child already running
    t0 = time.monotonic()
    res = decode_windows(str(fifo), DecodeConfig(timeout_s=2.0))
    elapsed = time.monotonic() - t0
    assert res.status == st.TIMEOUT, res.message
    assert 2.0 <= elapsed < 6.0, f"cut off after {elapsed:.1f}s for a 2s limit"
    again = decode_windows(str(media["h264_mp4_24"].path), DecodeConfig(size=32, num_frames=2))
    assert again.status == st.OK


def _crash():
    os.kill(os.getpid(), signal.SIGSEGV)


def _pid():
    return os.getpid()


def test_decode_status_isolation_survives_crash_and_recycles():
    """A child that dies is reported and replaced; children are recycled after max_tasks calls."""
    runner = IsolatedRunner(max_tasks=2)
    try:
        out = runner.call(_crash, timeout_s=30)
        assert out.kind == "crashed" and "signal 11" in out.message
        pids = [runner.call(_pid, timeout_s=30).value for _ in range(3)]
        assert pids[0] == pids[1] != pids[2], pids
        err = runner.call(int, "not a number", timeout_s=30)
        assert err.kind == "error" and isinstance(err.value, ValueError)
    finally:
        runner.close()


def test_decode_status_s3_source(s3_server, media):
    """s3:// objects decode like the local file; a missing key is `not_found` (permanent), not an exception."""
    m = media["vp9_webm_30"]
    bucket = s3_server.make_bucket()
    fs = s3_server.filesystem()
    fs.put_file(str(m.path), f"{bucket}/clips/a.webm")
    cfg = DecodeConfig(size=64, num_frames=3)
    res = decode_windows(f"s3://{bucket}/clips/a.webm", cfg, storage_options=s3_server.storage_options)
    local = decode_windows(str(m.path), cfg)
    assert res.status == st.OK and res.num_windows_total == local.num_windows_total == 2
    for a, b in zip(res.windows, local.windows):
        np.testing.assert_array_equal(a.frames, b.frames)
    missing = decode_windows(f"s3://{bucket}/clips/nope.mp4", cfg, storage_options=s3_server.storage_options)
    assert missing.status == st.NOT_FOUND and "nope.mp4" in missing.message


def test_decode_status_config_validation(tmp_path):
    """DecodeConfig loads through load_config and rejects bad values naming the field."""
    yaml = tmp_path / "d.yaml"
    yaml.write_text("fps: 3.0\nsize: [128, 224]\nnum_frames: 16\n")
    cfg = load_config(DecodeConfig, yaml, ["tail=pad"])
    assert cfg.size == (128, 224) and cfg.stride is None and cfg.window_stride == 16 and cfg.tail == "pad"
    for bad, field in (({"fps": 0}, "fps"), ({"tail": "wrap"}, "tail"), ({"size": -3}, "size"),
                       ({"backend": "ffmpeg"}, "backend"), ({"num_frames": 0}, "num_frames")):
        with pytest.raises(ValueError, match=f"decode.{field}"):
            DecodeConfig(**bad)
