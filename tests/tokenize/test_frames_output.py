"""The tokenize job's frames side output (`frames.output=`): one decode gives the token windows and the frames cache;
the windows are those of the plain decode, bit for bit; the cache holds every sample once; an input's last window
waits for its frames commit, so an input is never `ok` without its frames; a commit that fails after `retry.*`
leaves the inputs pending and the re-run completes both, nothing twice (pipeline/tokenize/stages.py: _FramesSide).
The job with the side output, killed -9 and re-run: tests/tokenize/test_e2e.py."""

from __future__ import annotations

import os

import pyarrow as pa
import pytest

from pipeline.config import ConfigError
from pipeline.decode import DecodeConfig
from pipeline.frames.store import load_cache_state
from pipeline.storage import OutputLayout
from pipeline.tokenize.config import FramesOutputConfig, RetryConfig
from pipeline.tokenize.schema import WINDOW_SCHEMA, frames_array
from pipeline.tokenize.stages import DecodeInputs
from tests.frames.test_cache import _check_all_frames
from tests.tokenize.helpers import job_config, make_corpus, plan_table

DECODE = DecodeConfig(fps=3.0, size=32, num_frames=17, stride=17, timeout_s=60)
CLIPS = [(6.5, 24.0), (12.0, 25.0), (18.0, 30.0), (3.0, 24.0)]  # 1, 2, 3 windows and one too short (9 samples)


def _frames(url: str) -> FramesOutputConfig:
    return FramesOutputConfig(size=32, frames_per_row=8, shard_mb=1, output=url)


def _windows(tables) -> dict:
    """(source, window) -> (frames bytes, timestamps, indices, num_windows) of WINDOW_SCHEMA tables."""
    t = pa.concat_tables(list(tables)) if tables else WINDOW_SCHEMA.empty_table()
    if not t.num_rows:
        return {}
    frames = frames_array(t)
    cols = [t.column(c).to_pylist() for c in ("source", "window_index", "frame_timestamps", "frame_indices",
                                              "num_windows")]
    return {(s, w): (frames[i].tobytes(), ts, ix, n) for i, (s, w, ts, ix, n) in enumerate(zip(*cols))}


def test_frames_side_output_same_windows_every_sample_cached_last_window_after_commit(tmp_path):
    """No Ray: the stage with `frames.output` sends the plain stage's windows; the cache holds every 3 FPS sample
    of every input (the too-short one too: its status row says `too_short`); each input's last window is sent only
    once its frames index row is committed."""
    paths = [str(p) for p in make_corpus(tmp_path / "in", clips=CLIPS)]
    plain = _windows(DecodeInputs(DECODE, OutputLayout(str(tmp_path / "plain")), run_id="r0")(plan_table(paths)))
    cache = str(tmp_path / "frames")
    out = OutputLayout(str(tmp_path / "out"))
    stage = DecodeInputs(DECODE, out, run_id="r1", frames=_frames(cache))
    tables, committed_when_sent = [], {}
    for t in stage(plan_table(paths)):
        tables.append(t)
        done = load_cache_state(OutputLayout(cache)).done
        for s, w, n in zip(*(t.column(c).to_pylist() for c in ("source", "window_index", "num_windows"))):
            if w == n - 1:
                committed_when_sent[s] = s in done
    got = _windows(tables)
    assert got.keys() == plain.keys() and len(got) == 6
    assert all(got[k] == plain[k] for k in plain)
    assert committed_when_sent == {p: True for p in paths[:3]}
    _check_all_frames(cache, paths)
    status = out.read_table(out.list("status")[0]).to_pylist()
    assert [(os.path.basename(r["source"]), r["status"], r["final"]) for r in status] == [("c3.mp4", "too_short", True)]


def test_frames_cached_inputs_decode_their_windows_alone(tmp_path):
    """An input the plan marks `frames_cached` (an earlier run committed its frames) is decoded for its windows
    only: same windows, no second frames row."""
    paths = [str(p) for p in make_corpus(tmp_path / "in", clips=CLIPS[:2])]
    cache = str(tmp_path / "frames")
    plan = plan_table(paths).append_column("frames_cached", pa.array([False, True]))
    got = _windows(DecodeInputs(DECODE, OutputLayout(str(tmp_path / "out")), run_id="r1", frames=_frames(cache))(plan))
    plain = _windows(DecodeInputs(DECODE, OutputLayout(str(tmp_path / "plain")), run_id="r0")(plan_table(paths)))
    assert got == plain
    assert load_cache_state(OutputLayout(cache)).done == {paths[0]}


def test_frames_commit_outage_leaves_inputs_pending_rerun_completes(s3_server, tmp_path):
    """The frames store down longer than `retry.*` at the commit: no held window is sent, each input gets a pending
    io_error row counting the windows that were sent; the re-run (skipping those) sends the rest, and the windows
    and the cache are the fault-free ones, nothing twice."""
    from tests.faults import FaultProxy, Outage, proxy_options

    paths = [str(p) for p in make_corpus(tmp_path / "in", clips=CLIPS[:3])]
    plain = _windows(DecodeInputs(DECODE, OutputLayout(str(tmp_path / "plain")), run_id="r0")(plan_table(paths)))
    b = s3_server.make_bucket("side")
    url = f"s3://{b}/frames"
    short = RetryConfig(attempts=2, base_s=0.1, max_s=0.2, deadline_s=5)
    out = OutputLayout(str(tmp_path / "out"), retry=short)
    with FaultProxy(s3_server.endpoint_url, outages=[Outage(after=0, seconds=600, paths=f"/{b}/frames")]) as proxy:
        opts = proxy_options(proxy.endpoint_url, client_tries=1)
        out.storage_options = opts
        first = _windows(DecodeInputs(DECODE, out, retry=short, run_id="r1", frames=_frames(url))(plan_table(paths)))
    assert sorted(w for _, w in first) == [0, 0, 1]  # every input's last window held back, none sent
    rows = {os.path.basename(r["source"]): (r["status"], r["final"], r["num_windows"])
            for r in out.read_table(out.list("status")[0]).to_pylist()}
    assert rows == {"c0.mp4": ("io_error", False, 0), "c1.mp4": ("io_error", False, 1),
                    "c2.mp4": ("io_error", False, 2)}
    assert load_cache_state(OutputLayout(url, s3_server.storage_options)).done == set()
    skip = {i: [w for (s, w) in first if s == p] for i, p in enumerate(paths)}
    healthy = OutputLayout(str(tmp_path / "out"))
    second = _windows(DecodeInputs(DECODE, healthy, run_id="r2", frames=_frames(url))(plan_table(paths, skip)))
    assert not first.keys() & second.keys() and {**first, **second} == plain
    state = load_cache_state(OutputLayout(url, s3_server.storage_options))
    assert state.done == set(paths) and state.duplicates == 0


def test_frames_output_settings_checked_naming_the_keys(tmp_path):
    """The cached frames must be the windows' frames: another decode.size, buckets or whole clips are refused, as is
    the token output as the cache's folder."""
    from pipeline.tokenize.setup import RunSetup

    ok = job_config(str(tmp_path), str(tmp_path / "out"), f"frames.output={tmp_path / 'f'}", "frames.size=32")
    assert RunSetup.of(ok).decode.size == 32
    for extra, words in ((["frames.size=64"], r"decode.size is \[32, 32\]"),
                         (["frames.size=32", "decode.buckets=[[32,64]]"], "decode.buckets is set")):
        cfg = job_config(str(tmp_path), str(tmp_path / "out"), f"frames.output={tmp_path / 'f'}", *extra)
        with pytest.raises(ConfigError, match=f"frames.output.*{words}"):
            RunSetup.of(cfg)
    with pytest.raises(Exception, match="frames.output=.*is the token output"):
        job_config(str(tmp_path), str(tmp_path / "out"), f"frames.output={tmp_path / 'out'}")


@pytest.mark.parametrize("indexed", [True, False])
def test_frames_side_output_of_a_segmented_input(tmp_path, indexed):
    """A long input cut into segments (one window each here), its segment tasks run in any order: the windows of
    the plain decode, and the video's frames cache row appears once the last segment is in — every sample, once.
    A segment decodes its rows from the input's video index row (written by the split), or, without one, from the
    video's start (`indexed=False`)."""
    import shutil

    from pipeline.decode.index import VideoIndex
    from pipeline.tokenize.segments import SplitLong

    paths = [str(p) for p in make_corpus(tmp_path / "in", clips=[(18.0, 30.0), (13.0, 25.0)])]  # 54, 39 samples
    seg = DecodeConfig(fps=3.0, size=32, num_frames=17, stride=17, timeout_s=60, segment_s=0.1)
    plain = _windows(DecodeInputs(DECODE, OutputLayout(str(tmp_path / "plain")), run_id="r0")(plan_table(paths)))
    out, cache = OutputLayout(str(tmp_path / "out")), str(tmp_path / "frames")
    tasks = SplitLong(seg, index=VideoIndex(out))(plan_table(paths))
    assert tasks.num_rows == 5  # 3 + 2 segments
    if not indexed:
        shutil.rmtree(tmp_path / "out" / "_index")
    stage = DecodeInputs(seg, out, run_id="r1", frames=_frames(cache))
    got, seen = {}, []
    for t in (4, 0, 2, 3, 1):  # segments of both inputs, out of order
        got.update(_windows(stage(tasks.slice(t, 1))))
        seen.append(sorted(load_cache_state(OutputLayout(cache)).done))
    assert got == plain
    assert seen[:3] == [[], [], []] and seen[3] == [paths[1]] and seen[4] == sorted(paths)
    state = load_cache_state(OutputLayout(cache))
    assert state.duplicates == 0 and state.orphan_shards == 0
    _check_all_frames(cache, paths)


def test_frames_output_warns_of_inputs_tokenized_without_their_frames(tmp_path, caplog):
    """Inputs that earlier runs tokenized without `frames.output` are not decoded again for their frames: the run
    says how many, and which job fills them in."""
    from pipeline.tokenize.run import _FramesOutput

    paths = [str(p) for p in make_corpus(tmp_path / "in", clips=CLIPS[:2])]
    cache = str(tmp_path / "frames")
    cfg = job_config(str(tmp_path / "in"), str(tmp_path / "out"), f"frames.output={cache}", "frames.size=32",
                     "frames.frames_per_row=8", "frames.shard_mb=1")
    _FramesOutput(cfg, 3.0, str(tmp_path / "in"), {}).claim.record(None)  # as a run's driver does
    list(DecodeInputs(DECODE, OutputLayout(str(tmp_path / "out")), run_id="r1", frames=_frames(cache))(
        plan_table(paths[:1])))
    side = _FramesOutput(cfg, 3.0, str(tmp_path / "in"), {})
    assert side.done == {paths[0]}
    side.check_earlier(set(paths), str(tmp_path / "in"))
    assert side.without == 1 and "1 inputs were tokenized by earlier runs without their frames" in caplog.text
    assert "jobs/cache_frames.py" in caplog.text and side.close()["tokenized_before_without_frames"] == 1
