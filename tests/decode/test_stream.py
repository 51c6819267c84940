"""The window stream: identical windows to cutting all samples at once, the total known before the first window,
bounded run-ahead of the decode child, a limit on progress (not on length), and remote files never held whole."""

from __future__ import annotations

import dataclasses
import glob
import os
import subprocess
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from pipeline.decode import DecodeConfig, decode_windows, iter_windows, sample_frames
from pipeline.decode import status as st
from pipeline.decode.isolate import CallOutcome, IsolatedRunner
from pipeline.decode.synth import read_frame_number, write_synthetic_video
from pipeline.decode.windows import RandomWindows, cut_windows, plan_windows
from tests.decode.media import media  # noqa: F401  (session fixture)


def _reference(path: str, cfg: DecodeConfig, backend: str):
    """Windows as the pre-stream code cut them: every sample decoded, then `cut_windows`."""
    s = sample_frames(path, cfg.fps, cfg.size, backend=backend)
    plan = plan_windows(len(s.indices), cfg.frames_per_window, cfg.window_stride, cfg.tail)
    return cut_windows(s.frames, s.timestamps, s.indices, plan), len(plan.spans)


def _assert_same_windows(got, want):
    assert [w.index for w in got] == [w.index for w in want]
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a.indices, b.indices)
        np.testing.assert_array_equal(a.timestamps, b.timestamps)
        assert a.padded == b.padded and a.frames.shape == b.frames.shape
        diff = np.abs(a.frames.astype(int) - b.frames.astype(int))
        assert diff.max() == 0, f"window {a.index}: max {diff.max()} mean {diff.mean():.4f}"


@pytest.mark.parametrize("name", ["h264_gop250_bf_mp4_30", "h264_vfr_mkv", "mpeg2_ps_25", "h264_avi_bf_30"])
@pytest.mark.parametrize("backend", ["decord", "pyav"])
@pytest.mark.parametrize("shape", [(3, None, "skip"), (4, 2, "pad"), (5, 3, "overlap"), (2, 5, "skip")])
def test_stream_windows_equal_cut_of_all_samples(media, name, backend, shape):
    """Streamed windows equal those cut from all samples (frames, timestamps, indices), for every tail policy."""
    m = media[name]
    num_frames, stride, tail = shape
    cfg = DecodeConfig(size=32, num_frames=num_frames, stride=stride, tail=tail, backend=backend)
    want, total = _reference(str(m.path), cfg, backend)
    stream = iter_windows(str(m.path), cfg)
    got = list(stream)
    assert stream.result.status == st.OK and stream.result.num_windows_total == total
    _assert_same_windows(got, want)


def test_stream_total_known_at_first_window(media):
    """When the first window arrives, the result already carries the input's window count and facts."""
    m = media["h264_mp4_60"]
    stream = iter_windows(str(m.path), DecodeConfig(size=32, num_frames=2))
    seen = [(w.index, stream.result.num_windows_total, stream.result.backend) for w in stream]
    assert seen == [(0, 3, "pyav"), (1, 3, "pyav"), (2, 3, "pyav")]


def test_stream_skip_and_choose_decode_only_those(media):
    """`choose` picks windows by index; `skip_windows` still wins; the chosen ones equal the full cut's."""
    m = media["h264_gop30_bf_mkv_25"]
    cfg = DecodeConfig(size=32, num_frames=2, stride=1, backend="pyav")
    full = decode_windows(str(m.path), cfg)
    res = decode_windows(str(m.path), cfg, skip_windows=frozenset({5}), choose=RandomWindows((1, 2), 4))
    picked = sorted(set(RandomWindows((1, 2), 4)(full.num_windows_total)) - {5})
    assert [w.index for w in res.windows] == picked
    _assert_same_windows(res.windows, [full.windows[i] for i in picked])


def _counting(path: str, n: int):
    for i in range(n):
        Path(path).write_text(str(i + 1))  # items produced so far, seen by the parent
        yield i


def test_stream_child_runs_at_most_credit_ahead(tmp_path):
    """The child is suspended once it is `credit` items ahead of the consumer (backpressure, not a full pipe)."""
    runner, counter = IsolatedRunner(), tmp_path / "produced"
    try:
        items = runner.stream(_counting, str(counter), 10_000, timeout_s=30, credit=2)
        for taken in range(1, 6):
            assert next(items) == taken - 1
            time.sleep(0.3)  # room for an unbounded child to run ahead: it must not
            produced = int(counter.read_text())
            assert produced <= taken + 2 + 1, f"child produced {produced} with {taken} taken, credit 2"
        items.close()  # abandoned mid-stream: the child is replaced, the runner still works
        assert runner.call(int, "7", timeout_s=30).value == 7
    finally:
        runner.close()


def _blobs(n: int, nbytes: int):
    for i in range(n):
        yield bytes(nbytes)


@pytest.mark.timeout(120)
def test_stream_many_large_items_all_arrive():
    """Thousands of items larger than the pipe's buffer, taken as fast as they come, all arrive in order, with no
    deadlock between credit messages and items."""
    runner = IsolatedRunner()
    try:
        out = list(runner.stream(_blobs, 3000, 70_000, timeout_s=30))
        assert len(out) == 3001 and out[-1].kind == "ok" and all(len(b) == 70_000 for b in out[:-1])
    finally:
        runner.close()


def _paced(n: int, gap_s: float):
    for i in range(n):
        time.sleep(gap_s)
        yield i


def test_stream_limit_is_on_progress_not_length():
    """A stream longer than the limit in total but never silent for that long finishes; a silent one is cut off."""
    runner = IsolatedRunner()
    try:
        out = list(runner.stream(_paced, 8, 0.4, timeout_s=2.0))  # 3.2 s in all, no gap over 0.4 s
        assert out[:-1] == list(range(8)) and out[-1].kind == "ok"
        out = list(runner.stream(_paced, 2, 5.0, timeout_s=2.0))
        assert out == [CallOutcome("timeout", message=out[-1].message)] and "no progress" in out[-1].message
    finally:
        runner.close()


def test_stream_max_wall_cap_gives_timeout(media):
    """Past `decode.max_wall_s` of decode time the child stops the file itself, with status timeout."""
    m = media["h264_gop250_bf_mp4_30"]
    res = decode_windows(str(m.path), DecodeConfig(size=32, num_frames=2, max_wall_s=1e-6))
    assert res.status == st.TIMEOUT and "max_wall_s" in res.message and res.windows == []
    assert DecodeConfig(timeout_s=10).wall_limit_s(3600) == 10 + 4 * 3600


def test_stream_decord_size_bug_falls_back_to_pyav(tmp_path):
    """48x40 H.264 (decord: 'The size must exactly match') decodes via PyAV with a note, not as `corrupt`."""
    path = tmp_path / "tiny_48x40.mp4"
    write_synthetic_video(path, 30, 10, size=(48, 40))
    res = decode_windows(str(path), DecodeConfig(num_frames=3, backend="decord"))
    assert res.status == st.OK, res.message
    assert res.backend == "pyav" and any("decord failed" in n for n in res.notes), res.notes
    assert res.windows[0].frames.shape == (3, 40, 48, 3)
    assert decode_windows(str(path), DecodeConfig(num_frames=3)).windows[0].indices.tolist() == \
        res.windows[0].indices.tolist()
    s = sample_frames(str(path), backend="decord")
    assert s.backend == "pyav" and any("decord failed" in n for n in s.notes), s.notes


def test_stream_cuda_request_without_gpu_falls_back(media):
    """decode.device=cuda without CUDA or torchcodec: the CPU path's windows and a note that says why."""
    from pipeline.decode.gpu import unavailable

    why = unavailable()
    if why is None:
        pytest.skip("CUDA decoding is available here: the fallback does not apply")
    m = media["h264_mp4_60"]
    cpu = decode_windows(str(m.path), DecodeConfig(size=32, num_frames=2))
    gpu = decode_windows(str(m.path), DecodeConfig(size=32, num_frames=2, device="cuda"))
    assert gpu.status == st.OK and gpu.backend == cpu.backend
    assert any("decode.device=cuda" in n and "on the CPU" in n and why in n for n in gpu.notes), gpu.notes
    _assert_same_windows(gpu.windows, cpu.windows)
    with pytest.raises(ValueError, match="decode.device"):
        DecodeConfig(device="tpu")


@pytest.fixture(scope="module")
def big_clip(tmp_path_factory) -> Path:
    """A ~13 MB clip (lossless noise), larger than the read budget the tests set."""
    path = tmp_path_factory.mktemp("big") / "noise.mp4"
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-f", "lavfi", "-i",
                    "testsrc2=size=320x240:rate=30,noise=alls=60:allf=t", "-t", "3", "-c:v", "libx264",
                    "-preset", "ultrafast", "-crf", "0", "-g", "30", str(path)], check=True)
    return path


def _peak_python_bytes(fn) -> int:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_stream_remote_file_is_read_by_ranges(s3_server, big_clip):
    """A remote object larger than the read budget decodes without ever being held whole (peak Python memory, which
    holds every byte fetched from the store, stays under half the file; reading it whole, the check fails)."""
    size = big_clip.stat().st_size
    bucket = s3_server.make_bucket()
    s3_server.filesystem().put_file(str(big_clip), f"{bucket}/big.mp4")
    url, opts = f"s3://{bucket}/big.mp4", s3_server.storage_options
    cfg = DecodeConfig(size=32, num_frames=4, backend="pyav", isolate=False, read_block_bytes=1 << 20)
    local, first = decode_windows(str(big_clip), cfg), decode_windows(url, cfg, storage_options=opts)
    assert first.status == st.OK, first.message  # also loads botocore's service models, outside the measurement
    _assert_same_windows(first.windows, local.windows)
    peak = _peak_python_bytes(lambda: decode_windows(url, cfg, storage_options=opts))
    assert peak < size / 2, f"peak {peak / 1e6:.1f} MB of Python memory for a {size / 1e6:.1f} MB object"
    whole = _peak_python_bytes(lambda: s3_server.filesystem().cat_file(f"{bucket}/big.mp4"))
    assert whole >= size, f"the check cannot fail: reading whole peaked at {whole / 1e6:.1f} MB"


def test_stream_remote_decord_spills_to_a_deleted_temp_file(s3_server, big_clip):
    """decord reads a remote object above `spill_bytes` from a local temp copy, removed after the decode."""
    bucket = s3_server.make_bucket()
    s3_server.filesystem().put_file(str(big_clip), f"{bucket}/big.mp4")
    pattern = os.path.join(tempfile.gettempdir(), "vidtok-spill-*")
    before = set(glob.glob(pattern))
    cfg = DecodeConfig(size=32, num_frames=4, backend="decord", isolate=False, spill_bytes=1 << 20)
    res = decode_windows(f"s3://{bucket}/big.mp4", cfg, storage_options=s3_server.storage_options)
    local = decode_windows(str(big_clip), cfg)
    assert res.status == st.OK and res.backend == "decord", (res.message, res.notes)
    _assert_same_windows(res.windows, local.windows)
    assert set(glob.glob(pattern)) == before


def test_stream_untimed_avi_holds_a_window_not_the_video(tmp_path):
    """AVI (no presentation times: the sample count is known only after decoding) streams its windows with the
    sampled frames on local disk (backends.FrameSpill): peak Python memory while taking windows one by one stays
    well under what every sample in memory takes (with the samples held, the check fails), and the windows equal
    the in-memory path's (`sample_frames`, cut all at once)."""
    from pipeline.decode.backends import FrameSpill

    path = tmp_path / "long.avi"
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc2=size=160x96:rate=30",
                    "-t", "40", "-c:v", "mpeg4", "-q:v", "5", str(path)], check=True)
    cfg = DecodeConfig(size=96, num_frames=4, backend="pyav", isolate=False)
    all_samples = 40 * 3 * 96 * 96 * 3  # bytes of every sample at output size: 3.3 MB
    got = []

    def take():
        for w in iter_windows(str(path), cfg):
            got.append((w.index, w.indices.copy(), int(w.frames.sum(dtype=np.int64))))  # keep a digest only

    take()  # imports (PyAV, Pillow) outside the measurement
    got.clear()
    peak = _peak_python_bytes(take)
    assert len(got) == 30 and peak < all_samples / 3, (len(got), peak, all_samples)
    s = sample_frames(str(path), fps=3.0, size=96, backend="pyav")
    plan = plan_windows(len(s.indices), 4, 4, "skip")
    want = [(w.index, w.indices, int(w.frames.sum(dtype=np.int64)))
            for w in cut_windows(s.frames, s.timestamps, s.indices, plan)]
    assert [(i, ix.tolist(), d) for i, ix, d in got] == [(i, ix.tolist(), d) for i, ix, d in want]

    spill = FrameSpill()
    frames = np.random.default_rng(0).integers(0, 255, (5, 8, 6, 3), dtype=np.uint8)
    for f in frames:
        spill.append(f)
    np.testing.assert_array_equal(spill.take(np.array([4, 0, 0, 2])), frames[[4, 0, 0, 2]])
    with pytest.raises(st.DecodeError, match="frame size changes"):
        spill.append(frames[0, :4])
    spill.close()

    class _DiskFull:
        def write(self, data):
            raise OSError(28, "No space left on device")

    full = FrameSpill()
    full._file.close()
    full._file = _DiskFull()
    with pytest.raises(st.DecodeError, match="No space left") as err:  # the node's problem: transient, not final
        full.append(frames[0])
    assert err.value.reason == st.IO_ERROR
