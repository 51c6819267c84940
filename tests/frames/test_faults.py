"""The frames cache over a flaky store (tests/faults.py in front of the moto server): an outage shorter than retry.*
is absorbed inside the run (the same cache as without faults); a longer one, of the inputs or of the output, leaves
its videos for the next run (no index row, exit 3) and the re-run completes the cache with nothing twice."""

from __future__ import annotations

import json
import logging
import os

import numpy as np
import pytest

from pipeline.config import load_config
from pipeline.decode import DecodeConfig, sample_frames
from pipeline.frames.build import cache_videos
from pipeline.frames.config import CacheFramesJobConfig, FramesConfig
from pipeline.frames.read import FramesCache
from pipeline.frames.store import load_cache_state
from pipeline.storage import OutputLayout
from pipeline.tokenize.config import RetryConfig
from tests.faults import FaultProxy, Outage, proxy_options

FRAMES = FramesConfig(size=32, frames_per_row=8, shard_mb=1)


@pytest.fixture(scope="module")
def s3videos(s3_server, videos):
    """The three test clips under s3://<bucket>/videos/ (with their listed sizes) and the frames they hold."""
    fs = s3_server.filesystem()
    bucket = s3_server.make_bucket("frames")
    for v in videos:
        fs.put(v, f"{bucket}/videos/{os.path.basename(v)}")
    srcs = [f"s3://{bucket}/videos/{os.path.basename(v)}" for v in videos]
    want = {s: sample_frames(v, fps=3.0, size=32).frames for s, v in zip(srcs, videos)}
    return {"bucket": bucket, "inputs": [{"source": s, "source_size": os.path.getsize(v)}
                                         for s, v in zip(srcs, videos)], "want": want}


def _assert_cache_is(url: str, s3_server, want: dict) -> None:
    """Every video once (no duplicate row, no orphan shard), every frame equal to the decoded source's."""
    layout = OutputLayout(url, s3_server.storage_options)
    st = load_cache_state(layout)
    assert st.ok == len(want) and st.duplicates == 0 and not st.failures, st
    cache = FramesCache(url, s3_server.storage_options)
    for s, frames in want.items():
        e = cache.entry(s)
        got = cache.frames(s, 0, e.num_frames)
        assert e.num_frames == len(frames) and np.array_equal(got, frames), s


def test_faults_cache_videos_retries_inside_then_leaves_for_next_run(s3_server, s3videos):
    """No Ray: the inputs down 2 s (retried: every video cached, a read tried more than once); the inputs down
    longer than retry.* (io_error after 2 tries, nothing committed); the output down longer than retry.* (the
    group left); then each re-run through a healthy store completes exactly once."""
    b = s3videos["bucket"]
    fast = RetryConfig(attempts=30, base_s=0.3, max_s=1.0, deadline_s=90)
    # one client try per request: the outage is ridden out by retry.*, not by the client's own retries
    with FaultProxy(s3_server.endpoint_url, outages=[Outage(after=1, seconds=2, paths="/videos/")]) as proxy:
        opts = proxy_options(proxy.endpoint_url, client_tries=1)
        res = cache_videos(s3videos["inputs"], OutputLayout(f"s3://{b}/short", opts, fast), DecodeConfig(), FRAMES,
                           opts, fast)
        assert proxy.stats["refused"] > 0
    # some video was read again inside the run (which one met the outage depends on timing)
    assert [r["status"] for r in res] == ["ok"] * 3 and all(r["committed"] for r in res)
    assert max(r["tries"] for r in res) > 1
    _assert_cache_is(f"s3://{b}/short", s3_server, s3videos["want"])

    short = RetryConfig(attempts=2, base_s=0.1, max_s=0.2, deadline_s=5)
    for name, outage in (("inputs", Outage(after=1, seconds=600, paths="/videos/")),
                         ("output", Outage(after=1, seconds=600, paths=f"/{b}/out-output"))):
        url = f"s3://{b}/out-{name}"
        with FaultProxy(s3_server.endpoint_url, outages=[outage]) as proxy:
            opts = proxy_options(proxy.endpoint_url, client_tries=1)
            res = cache_videos(s3videos["inputs"], OutputLayout(url, opts, short), DecodeConfig(), FRAMES, opts, short)
        assert all(r["status"] == "io_error" and not r["committed"] for r in res), res
        if name == "inputs":
            assert all(r["tries"] == 2 for r in res)
        assert load_cache_state(OutputLayout(url, s3_server.storage_options)).done == set()
        again = cache_videos(s3videos["inputs"], OutputLayout(url, s3_server.storage_options), DecodeConfig(),
                             FRAMES, s3_server.storage_options)
        assert all(r["committed"] and r["status"] == "ok" for r in again)
        _assert_cache_is(url, s3_server, s3videos["want"])


def _job(b: str, out: str, endpoint: str, *extra: str) -> CacheFramesJobConfig:
    return load_config(CacheFramesJobConfig, None, [
        f"input=s3://{b}/videos", f"output=s3://{b}/{out}", f"storage.endpoint_url={endpoint}", "storage.key=testing",
        "storage.secret=testing", "frames.size=32", "frames.frames_per_row=8", "frames.shard_mb=1",
        "videos_per_task=1", "progress_every_s=0.5", *extra])


@pytest.mark.slow
def test_faults_cache_job_absorbs_short_outage_exits_3_on_long_one(s3_server, s3videos, ray_local, caplog):
    """The job: a 4 s outage of the inputs is retried inside the run (exit 0, the fault-free cache, progress lines
    logged); one longer than retry.* exits 3 with the videos left, and the re-run completes them, nothing twice."""
    from pipeline.entrypoints import cache_frames_main
    from pipeline.frames.run import run_cache_frames

    b = s3videos["bucket"]
    fast = ["retry.attempts=30", "retry.base_s=0.3", "retry.max_s=1", "retry.deadline_s=90"]
    with caplog.at_level(logging.INFO, logger="pipeline.tokenize.progress"):
        with FaultProxy(s3_server.endpoint_url, outages=[Outage(after=1, seconds=4, paths="/videos/")]) as proxy:
            s = run_cache_frames(_job(b, "job-short", proxy.endpoint_url, *fast))
            assert proxy.stats["refused"] > 0
    assert s["complete"] and s["left_for_next_run"] == 0 and s["status_this_run"] == {"ok": 3}
    assert s["index"]["parts"] == 3 and s["index"]["generation"] == 1
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("progress: videos")]
    assert lines and lines[-1].startswith("progress: videos 3/3 (100.0%), frames 69 "), lines
    _assert_cache_is(f"s3://{b}/job-short", s3_server, s3videos["want"])

    short = ["retry.attempts=2", "retry.base_s=0.1", "retry.max_s=0.2", "retry.deadline_s=5"]
    with FaultProxy(s3_server.endpoint_url, outages=[Outage(after=2, seconds=600, paths="/videos/")]) as proxy:
        code = cache_frames_main(_job(b, "job-long", proxy.endpoint_url, *short))
    fs = s3_server.filesystem()
    first = json.loads(fs.cat(f"{b}/job-long/summary.json"))
    assert code == 3 and first["left_for_next_run"] >= 1 and not first["complete"]
    assert first["videos_cached"] == 3 - first["left_for_next_run"]
    code = cache_frames_main(_job(b, "job-long", s3_server.endpoint_url, *short))
    second = json.loads(fs.cat(f"{b}/job-long/summary.json"))
    assert code == 0 and second["decoded_this_run"] == first["left_for_next_run"] and second["complete"]
    assert second["duplicate_index_rows"] == 0 and second["orphan_shards"] == 0
    _assert_cache_is(f"s3://{b}/job-long", s3_server, s3videos["want"])
