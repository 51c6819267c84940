"""Frames cache build: every sample stored once, bit-identical; a re-run writes nothing; a run killed between its
shard and index commits is completed by the re-run with no duplicate and no missing frame (store.py protocol)."""

from __future__ import annotations

import os

import numpy as np
import pytest

from pipeline.decode import DecodeConfig, sample_frames
from pipeline.frames.build import cache_decode_config, cache_videos
from pipeline.frames.config import CacheFramesJobConfig, FramesConfig
from pipeline.frames.read import FramesCache
from pipeline.frames.store import load_cache_state, write_shard
from pipeline.storage import OutputLayout

FRAMES = FramesConfig(size=32, frames_per_row=8, shard_mb=1)


def _files(root) -> dict[str, float]:
    out = {}
    for d, _, names in os.walk(root):
        for n in names:
            if not n.endswith((".json", ".yaml")):
                p = os.path.join(d, n)
                out[p] = os.stat(p).st_mtime_ns
    return out


def _check_all_frames(url: str, videos: list[str]) -> None:
    cache = FramesCache(url)
    for v in videos:
        want = sample_frames(v, fps=3.0, size=32).frames
        e = cache.entry(v)
        got = cache.frames(v, 0, e.num_frames)
        assert e.num_frames == len(want) and np.array_equal(got, want), \
            f"{v}: {e.num_frames} vs {len(want)} frames, max diff {np.abs(got.astype(int) - want[:len(got)]).max()}"


def test_cache_build_stores_every_sample_bit_identical(videos, tmp_path):
    """cache_videos (no Ray) stores each video's 3 FPS samples, rows of 8 over several shards; index names them."""
    layout = OutputLayout(str(tmp_path / "c"))
    small = FramesConfig(size=32, frames_per_row=8, shard_mb=1)
    res = cache_videos([{"source": v, "source_size": os.path.getsize(v)} for v in videos], layout, DecodeConfig(),
                       small)
    assert [r["status"] for r in res] == ["ok"] * 3 and all(r["committed"] for r in res)
    st = load_cache_state(layout)
    assert st.ok == 3 and st.frames == 24 + 36 + 9 and st.orphan_shards == 0 and st.duplicates == 0
    _check_all_frames(str(tmp_path / "c"), videos)
    t = layout.read_table(layout.list("index")[0], ["source", "source_size", "timestamps"]).to_pylist()
    assert {r["source"]: r["source_size"] for r in t} == {v: os.path.getsize(v) for v in videos}
    assert all(len(r["timestamps"]) in (24, 36, 9) for r in t)


def test_cache_keeps_and_reads_the_video_index(videos, tmp_path, monkeypatch):
    """Each video the cache probes and decodes gets its video index row (the probe's result); a second cache over
    the same videos (another output, `index=` the first's) decodes from those rows without probing, to the same
    frames."""
    import pipeline.decode.sample as sample
    from pipeline.decode.index import VideoIndex, identity_of
    from pipeline.decode.sample import probe_source
    from tests.decode.test_index import _same

    inputs = [{"source": v, "source_size": os.path.getsize(v)} for v in videos]
    inproc = DecodeConfig(isolate=False)  # in this process, so the probes can be counted
    first = OutputLayout(str(tmp_path / "a"))
    index = VideoIndex(first)
    assert [r["status"] for r in cache_videos(inputs, first, inproc, FRAMES, index=index)] == ["ok"] * 3
    for v in videos:
        assert _same(probe_source(v, inproc), index.find(identity_of(v))) == [], v
    monkeypatch.setattr(sample, "probe", lambda *a, **k: pytest.fail("probed again"))
    assert [r["status"] for r in cache_videos(inputs, OutputLayout(str(tmp_path / "b")), inproc, FRAMES,
                                              index=index)] == ["ok"] * 3
    monkeypatch.undo()  # the check below decodes from the sources
    _check_all_frames(str(tmp_path / "b"), videos)


def test_cache_broken_input_is_a_final_index_row(tmp_path, videos):
    """A file that is not a video gets an index row with its reason; the good one is cached."""
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video at all" * 100)
    layout = OutputLayout(str(tmp_path / "c"))
    res = cache_videos([{"source": str(bad)}, {"source": videos[2]}], layout, DecodeConfig(), FRAMES)
    assert res[0]["status"] != "ok" and res[0]["committed"] and res[1]["status"] == "ok"
    st = load_cache_state(layout)
    assert st.done == {str(bad), videos[2]} and st.ok == 1 and sum(st.failures.values()) == 1


def test_cache_job_resumes_killed_run_exactly_once(videos, tmp_path, ray_local):
    """Video a committed, video b's shard committed without its index (a kill between the two): the job caches
    b and c once, leaves a alone; a second run writes nothing."""
    from pipeline.frames.run import run_cache_frames

    folder = tmp_path / "in"
    folder.mkdir()
    for v in videos:
        os.symlink(v, folder / os.path.basename(v))
    inputs = sorted(str(folder / os.path.basename(v)) for v in videos)
    out = str(tmp_path / "cache")
    layout = OutputLayout(out)
    cfg = CacheFramesJobConfig(input=str(folder), output=out, frames=FRAMES, videos_per_task=2)
    from pipeline.job_record import OutputClaim
    from pipeline.frames.run import identity

    OutputClaim(layout, "frames", identity(cfg), str(folder), data=("index", "shards")).record("x")
    cache_videos([{"source": inputs[0]}], layout, DecodeConfig(), FRAMES)  # a: committed
    piece = sample_frames(inputs[1], fps=3.0, size=32).frames[:8]  # b: a shard, no index row (killed)
    from pipeline.frames.codec import encode_frame

    write_shard(layout, [{"source": inputs[1], "row": 0, "frames": [encode_frame(f, "zstd") for f in piece],
                          "timestamps": [0.0] * 8, "indices": list(range(8))}])
    a_files = _files(out)
    s = run_cache_frames(cfg)
    assert s["already_cached"] == 1 and s["decoded_this_run"] == 2 and s["status_this_run"] == {"ok": 2}
    assert s["videos_cached"] == 3 and s["frames_cached"] == 24 + 36 + 9 and s["duplicate_index_rows"] == 0
    assert all(_files(out)[p] == m for p, m in a_files.items() if "shards" in p)  # a not decoded again
    assert not [p for p in _files(out) if os.path.basename(p).startswith("index-")]  # parts folded into buckets
    _check_all_frames(out, inputs)
    before = _files(out)
    s2 = run_cache_frames(cfg)
    assert s2["nothing_to_do"] and s2["decoded_this_run"] == 0 and _files(out) == before


def test_cache_decode_config_takes_every_sample():
    """The cache's decode settings: whole-clip pieces of frames_per_row at frames.size, buckets off."""
    cfg = cache_decode_config(DecodeConfig(size=128, num_frames=17, buckets=[[256, 448]]), FRAMES)
    assert cfg.size == 32 and cfg.whole_clip and cfg.max_frames == 8 and cfg.buckets is None
    with pytest.raises(ValueError, match="frames.format"):
        FramesConfig(format="png")


def test_segment_rows_partition_the_rows_and_cover_the_windows():
    """For any sample count, window plan and cut into contiguous window ranges: the rows the segments own are every
    frames row once, and the rows a segment decodes hold its owned rows and all its windows' samples."""
    from pipeline.decode.windows import WindowRange, plan_windows
    from pipeline.frames.build import segment_rows

    rng = np.random.default_rng(0)
    for _ in range(300):
        n, fpr = int(rng.integers(17, 400)), int(rng.integers(1, 40))
        plan = plan_windows(n, 17, int(rng.integers(1, 30)), str(rng.choice(["skip", "pad", "overlap"])))
        w = len(plan.spans)
        cuts = sorted(set(rng.integers(1, w, size=int(rng.integers(0, 4))).tolist())) if w > 1 else []
        bounds = [0, *cuts, w]
        owned = []
        for a, b in zip(bounds, bounds[1:]):
            dec, own = segment_rows(n, plan, WindowRange(a, b), fpr)
            owned += list(own)
            assert not own or (dec.start <= own.start and own.stop <= dec.stop)
            lo, hi = plan.spans[a][0], max(stop for _, stop, _ in plan.spans[a:b])
            assert dec.start * fpr <= lo and hi <= dec.stop * fpr
        assert owned == list(range(-(-n // fpr))), (n, fpr, bounds)
