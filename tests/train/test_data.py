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


def _clip_range(info, decode: DecodeConfig, seed: tuple) -> int:
    """Bytes from the key frame before the drawn window's first sample to the last packet of its samples."""
    from pipeline.decode import packets
    from pipeline.decode.assemble import frame_runs
    from pipeline.decode.resample import select_frames
    from pipeline.decode.windows import RandomWindows
    from pipeline.train.data import window_config

    idx, _ = select_frames(info.pts_ticks, info.end_tick, decode.fps, info.time_base, info.rates)
    plan = window_config(decode, 17).window_plan(len(idx))
    (w,) = RandomWindows(seed, 1)(len(plan.spans))
    ((first, last),) = packets.spans(info, frame_runs(idx, plan, [w], merge_all=False))
    start, end = packets.byte_range(info, first, last)
    return end - start


def test_data_clip_reads_only_its_range_from_the_index(s3_server, tmp_path):
    """A 60-s MP4 on S3 (through the counting proxy): the first clip indexes it (keyed row under `index`), every
    later clip fetches at most 2x the bytes from its window's key frame to its last packet, and the clips are the
    whole-video cut at their starts."""
    from pipeline.decode.index import VideoIndex
    from pipeline.decode.probe import probe
    from tests.faults import FaultProxy, proxy_options

    path = tmp_path / "long.mp4"
    write_synthetic_video(path, 60 * 24, 24, size=(160, 120), gop=48, bframes=2, audio=True)
    bucket = s3_server.make_bucket()
    s3_server.filesystem().put(str(path), f"{bucket}/v/long.mp4")
    src, index, key = f"s3://{bucket}/v/long.mp4", f"s3://{bucket}/idx", f"/{bucket}/v/long.mp4"
    decode = DecodeConfig(size=32)
    info, frames = probe(str(path)), sampled_frames(str(path), decode, None)
    with FaultProxy(s3_server.endpoint_url) as proxy:
        opts = proxy_options(proxy.endpoint_url)
        random_clips(src, decode, 17, 1, (0, 0, 7), opts, index)  # first use: probes, writes the row
        indexed = VideoIndex.at(index, opts).find({"source": src, "source_size": path.stat().st_size})
        assert indexed is not None and indexed.num_packets == 60 * 24
        for item in range(1, 6):
            seed, before = (0, item, 7), proxy.served[key]
            (got,) = random_clips(src, decode, 17, 1, seed, opts, index)
            served, span = proxy.served[key] - before, _clip_range(info, decode, seed)
            want, _ = random_window(frames, 17, np.random.default_rng(list(seed)))
            assert np.array_equal(got, want), f"item {item}: max {np.abs(got.astype(int) - want).max()}"
            print(f"item {item}: served {served} bytes for a range of {span} ({served / span:.2f}x), "
                  f"file {path.stat().st_size}")
            assert 0 < served <= 2 * span, (item, served, span)


def test_data_index_key_rejects_bad_urls(tmp_path):
    """`index=` that cannot be a folder fails at config time, naming the key."""
    from pipeline.config import load_config
    from pipeline.train.config import TrainConfig

    (tmp_path / "f.parquet").write_bytes(b"x")
    for bad in ("nosuch://bucket/_index", str(tmp_path / "f.parquet")):
        with pytest.raises(ValueError, match="index="):
            load_config(TrainConfig, None, [f"index={bad}"])
    assert load_config(TrainConfig, None, [f"index={tmp_path}"]).index == str(tmp_path)


def test_data_decode_items_build_the_index_once_and_reindex_changes(tmp_path):
    """The decode task body with `index`: the first clip of a video writes its keyed row, later clips (another stage
    reading the same index) reuse it unchanged, and a replaced video is probed again and its row replaced."""
    from pipeline.decode.index import VideoIndex, identity_of
    from pipeline.train.data import _decode_items

    path, index = tmp_path / "v.mp4", str(tmp_path / "out" / "_index")
    write_synthetic_video(path, 10 * 24, 24, size=(96, 64), gop=24, bframes=2)
    kw = dict(urls=[str(path)], seed=3, decode=DecodeConfig(size=32), num_frames=9, clips_per_video=2,
              storage_options=None, index=index)
    first = _decode_items({"id": np.array([0])}, **kw)["video"]
    rows = list((tmp_path / "out" / "_index").rglob("*.parquet"))
    assert first.shape == (2, 9, 32, 32, 3) and len(rows) == 1
    stamp = rows[0].stat().st_mtime_ns
    again = _decode_items({"id": np.array([0])}, **{**kw, "decode": DecodeConfig(size=64)})["video"]
    assert again.shape == (2, 9, 64, 64, 3) and rows[0].stat().st_mtime_ns == stamp  # read, not rewritten
    plain = _decode_items({"id": np.array([0])}, **{**kw, "index": ""})["video"]
    assert np.array_equal(first, plain)  # the index changes what is read, not the clips
    write_synthetic_video(path, 12 * 24, 24, size=(96, 64), gop=24, bframes=2)  # the object changes
    _decode_items({"id": np.array([0])}, **kw)
    assert VideoIndex.at(index).find(identity_of(str(path))).num_packets == 12 * 24
