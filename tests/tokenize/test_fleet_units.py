"""A fleet's faults without a multi-node cluster: a GPU out of memory (injected into the real model's encode on the
CPU), the broken-environment rule, a bad corpus that must still run to the end, the tail of the progress line."""

from __future__ import annotations

import shutil
import time

import fsspec
import numpy as np
import pyarrow as pa
import pytest
import torch

from pipeline.decode.status import CORRUPT, DECODER_CRASHED, NOT_A_VIDEO, UNSUPPORTED_CODEC
from pipeline.storage import OutputLayout
from pipeline.tokenize.machine import MachineBroken, MachineCheck, find_cause
from pipeline.tokenize.oom import AdaptiveBatches
from pipeline.tokenize.progress import TAIL_SHOWN, Counts, InFlight, RunProgress, Snapshot
from pipeline.tokenize.run import run_tokenize
from pipeline.tokenize.status import StatusTracker
from pipeline.tokenize.schema import windows_from_frames
from pipeline.tokenize.stages import TokenizeClips, WriteTokenShard
from tests.decode.media import build_broken
from tests.tokenize.helpers import job_config, make_corpus, read_folder

PRESET = "vidtok_fsq_causal_488_32768_tiny"


# ----------------------------------------------------------------------------------------------- out of GPU memory
def _windows() -> pa.Table:
    """Two inputs of 17x32x32 windows (a: 4, b: 3); b's window 1 is all white (the one the tests make too large)."""
    rng = np.random.default_rng(0)
    a = windows_from_frames(rng.integers(0, 250, (4, 17, 32, 32, 3), dtype=np.uint8), source="a.mp4")
    fb = rng.integers(0, 250, (3, 17, 32, 32, 3), dtype=np.uint8)
    fb[1] = 255
    return pa.concat_tables([a, windows_from_frames(fb, source="b.mp4")])


def _stage(limit: int | None = None, white_fails: bool = False) -> tuple[TokenizeClips, list[int]]:
    """The real tokenizer; its model's encode raises torch.OutOfMemoryError for batches over `limit` windows, and
    for any batch holding the white window when `white_fails` (as CUDA would). Returns the stage and the batch sizes
    tried."""
    stage = TokenizeClips(PRESET, None, "random-init-seed-0", 0, "fp32", "float16", batch_size=8)
    real, tried = stage.model.encode, []

    def encode(x, *a, **k):
        tried.append(x.shape[0])
        if (limit is not None and x.shape[0] > limit) or (white_fails and bool((x.amin(dim=(1, 2, 3, 4)) > 0.99).any())):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (injected)")
        return real(x, *a, **k)

    stage.model.encode = encode
    return stage, tried


def test_fleet_oom_splits_the_batch_and_remembers_what_fitted():
    """An OOM above 2 windows: the batch is split down to chunks of 2, the tokens equal the undisturbed run's, no
    window is dropped, the next batch starts at the size that fitted, and the limit grows back after calm batches."""
    windows = _windows()
    want = TokenizeClips(PRESET, None, "random-init-seed-0", 0, "fp32", "float16")(windows)
    stage, tried = _stage(limit=2)
    got = stage(windows)
    assert got.equals(want), "tokens differ from the undisturbed run"
    assert tried[:4] == [7, 4, 2, 2]  # 7 and 4 do not fit, 2 does: the rest of the batch goes in 2s
    assert stage.batches.limit == 2 and stage.batches.ooms == 2
    tried.clear()
    assert stage(windows).equals(want) and max(tried) == 2 and stage.batches.ooms == 2  # no new OOM: remembered
    stage.batches.grow_after = 1
    stage(windows)  # calm batch: the limit grows by a quarter (at least one window)
    assert stage.batches.limit == 3
    assert stage(windows).equals(want) and stage.batches.limit == 2  # 3 does not fit: halved again, nothing lost


def test_fleet_oom_single_window_becomes_too_large_status_row(tmp_path):
    """A window that does not fit even alone: its row carries `too_large` with the frame size, the writer commits
    the others, and the driver settles that input as a final too_large failure (a.mp4 stays ok)."""
    windows = _windows()
    stage, _ = _stage(white_fails=True)
    enc = stage(windows)
    errors = enc.column("error").to_pylist()
    assert enc.num_rows == 7 and sum(e is not None for e in errors) == 1
    bad = errors.index(next(e for e in errors if e))
    assert enc.column("source")[bad].as_py() == "b.mp4" and enc.column("window_index")[bad].as_py() == 1
    assert errors[bad].startswith("too_large: ") and "17 frames of 32x32 pixels" in errors[bad]
    layout = OutputLayout(str(tmp_path / "out"))
    written = WriteTokenShard(layout, tokens_binary=False)(enc)
    tokens = read_folder(fsspec.filesystem("file"), str(tmp_path / "out/tokens"))
    assert tokens.num_rows == 6 and written.column("shard").null_count == 1
    tracker = StatusTracker(layout, "r1", every_inputs=100, every_s=1e9)
    tracker.consume(written)
    tracker.close()
    rows = {r["source"]: r for r in tracker.buffer}
    assert rows["a.mp4"]["status"] == "ok" and rows["a.mp4"]["num_windows"] == 4
    assert rows["b.mp4"]["status"] == "too_large" and rows["b.mp4"]["final"] and rows["b.mp4"]["num_windows"] == 2
    assert "32x32" in rows["b.mp4"]["message"] and tracker.windows == 6 and not tracker.inflight
    assert tracker.reasons == {"ok": 1, "too_large": 1}


def test_fleet_oom_governor_rules():
    """Pure rules: non-OOM errors propagate; one row that never fits comes back as None; the limit grows only after
    `grow_after` calm batches and never past the configured size."""
    b = AdaptiveBatches(4, lambda e: isinstance(e, MemoryError), grow_after=2)
    with pytest.raises(ValueError):
        b.run(3, lambda s, e: (_ for _ in ()).throw(ValueError("a bug")))
    out = b.run(4, lambda s, e: (_ for _ in ()).throw(MemoryError()) if s <= 1 < e or s == 1 else (s, e))
    assert [r for r in out if r[2] is None] == [(1, 2, None)] and [r[:2] for r in out] == [(0, 1), (1, 2), (2, 3), (3, 4)]
    assert b.limit == 1
    for _ in range(2):
        b.run(2, lambda s, e: (s, e))
    assert b.limit == 2
    for _ in range(20):
        b.run(2, lambda s, e: (s, e))
    assert b.limit == 4


# ------------------------------------------------------------------------------------------- broken environment
def test_fleet_machine_rule_burst_only_at_a_process_start():
    """Every one of the first N inputs failing the same machine-pointing way trips; a success, another reason or a
    file's failure first makes the process healthy for good; 0 turns the rule off."""
    codec = {"source": "x", "status": UNSUPPORTED_CODEC, "message": "no decoder for video codec 'h264' in mov,mp4"}
    crash = {"source": "y", "status": CORRUPT, "message": f"{DECODER_CRASHED}: decode process died (signal 11)"}
    check = MachineCheck(3)
    assert [check.see(codec), check.see(codec), check.see(codec)] == [False, False, True]
    assert [r["final"] for r in check.pending_rows("node-1")] == [False] * 3
    assert "machine suspected (node-1)" in check.pending_rows("node-1")[0]["message"]
    crashes = MachineCheck(2)
    assert [crashes.see(crash), crashes.see(crash)] == [False, True]
    for first in ({"status": "ok"}, {"status": NOT_A_VIDEO, "message": ""}, crash):
        check = MachineCheck(3)
        check.see(first) if first is not crash else (check.see(codec), check.see(first))
        assert not any(check.see(codec) for _ in range(10)) and check.healthy
    assert not any(MachineCheck(0).see(codec) for _ in range(10))
    e = MachineBroken("host (10.0.0.2, Ray node abc)", UNSUPPORTED_CODEC, "no decoder", ["s1", "s2"])
    wrapped = RuntimeError("ray data")
    wrapped.__cause__ = e
    assert find_cause(wrapped, MachineBroken) is e and "10.0.0.2" in str(e) and "machine_burst=0" in str(e)


def _unsupported(folder, n: int) -> None:
    src = next(b.path for b in build_broken(folder / "broken") if b.reason == UNSUPPORTED_CODEC)
    (folder / "in").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        shutil.copy(src, folder / "in" / f"u{i}.avi")


def _newest(folder) -> dict:
    st = read_folder(fsspec.filesystem("file"), str(folder)).to_pandas()
    return st.sort_values("committed_at").groupby("source").tail(1).set_index("source")[["status", "final"]] \
        .to_dict("index")


def test_fleet_codec_burst_stops_the_run_and_leaves_rows_pending(tmp_path, ray_local):
    """A decode process whose first inputs are all unsupported_codec stops the run (MachineBroken naming the node
    and the reason) and no input is marked failed for good; with the rule off (the files really are unsupported)
    the re-run finishes them as final failures."""
    _unsupported(tmp_path, 6)
    cfg = job_config(str(tmp_path / "in"), str(tmp_path / "out"), "decode_task.machine_burst=3",
                     "decode_task.inputs_per_task=3")
    with pytest.raises(MachineBroken) as err:
        run_tokenize(cfg)
    assert err.value.reason == UNSUPPORTED_CODEC and "Ray node" in err.value.node and len(err.value.sources) == 3
    rows = _newest(tmp_path / "out/status")
    assert rows and not any(r["final"] for r in rows.values()), rows  # pending, or no row: a re-run decodes them
    assert set(err.value.sources) <= set(rows)
    s = run_tokenize(job_config(str(tmp_path / "in"), str(tmp_path / "out"), "decode_task.machine_burst=0"))
    assert s["complete"] and s["failures_this_run"] == {UNSUPPORTED_CODEC: 6}
    assert all(r == {"status": UNSUPPORTED_CODEC, "final": True} for r in _newest(tmp_path / "out/status").values())


def test_fleet_bad_corpus_on_healthy_nodes_runs_to_the_end(tmp_path, ray_local):
    """The broken-input matrix of tests/decode (every kind once) plus good clips, rule on with a small burst: the run
    completes, each broken file with its own final reason, the good ones ok."""
    broken = build_broken(tmp_path / "in")
    make_corpus(tmp_path / "in", clips=[(6.5, 24.0), (12.0, 25.0)])
    s = run_tokenize(job_config(str(tmp_path / "in"), str(tmp_path / "out"), "decode_task.machine_burst=2",
                                "decode_task.inputs_per_task=3"))
    assert s["complete"] and s["inputs_pending"] == 0
    rows = _newest(tmp_path / "out/status")
    listed = {str(b.path): b.reason for b in broken if b.path.exists() and not b.kwargs}
    for path, reason in listed.items():
        assert rows[path] == {"status": reason, "final": True}, (path, rows[path])
    assert sum(r["status"] == "ok" for r in rows.values()) >= 2


# --------------------------------------------------------------------------------------------------------- the tail
def _Tracker(finished: int, inflight: dict, first_seen: dict) -> StatusTracker:
    """The driver's real tracker (nothing is flushed here), with `finished` inputs and these inputs in flight."""
    tracker = StatusTracker(None, "r", every_inputs=10**6, every_s=1e9)
    tracker.finished, tracker.inflight, tracker.first_seen = finished, inflight, first_seen
    return tracker


def test_fleet_tail_names_the_oldest_inputs_in_flight():
    """Outside the tail the line names nothing; in it (left <= 5 % or fewer than the decode slots) it names the
    oldest inputs in flight — decoding now or waiting for their last windows — with seconds and windows so far."""
    tracker = _Tracker(90, {"s3://b/late.mp4": {0, 1}}, {"s3://b/late.mp4": 1000.0})
    prog = RunProgress(None, "r", total_inputs=100, every_s=30, tracker=tracker)
    prog.slots = 4
    assert prog.live_counts().in_flight == ()  # 10 left: more than 5 % and than 4 slots
    tracker.finished = 97
    running = [("s3://b/a.mp4", 1100.0, "10.0.0.7"), ("s3://b/b.mp4", 900.0, "10.0.0.8"),
               ("s3://b/c.mp4", 1150.0, "10.0.0.7"), ("s3://b/d.mp4", 1200.0, "10.0.0.9")]
    tail = prog.in_flight(running, now=1300.0)
    assert [f.source for f in tail] == ["s3://b/b.mp4", "s3://b/late.mp4", "s3://b/a.mp4"][:TAIL_SHOWN]
    assert tail[0] == InFlight("s3://b/b.mp4", 400.0, 0, "10.0.0.8") and tail[1].windows == 2
    line = Snapshot(Counts(97, 10, 60.0, {}, tail, "no live node has GPU 1 for the tokenizer"), 100, 60.0).line()
    assert "tail: b.mp4 (400s, 0 windows, node 10.0.0.8), late.mp4 (300s, 2 windows)" in line
    assert line.endswith("WAITING for capacity: no live node has GPU 1 for the tokenizer")


def test_fleet_decode_task_tells_run_nodes_which_input_it_is_on(tmp_path, ray_local, monkeypatch):
    """A decode task's heartbeat puts the input it is on into the real RunNodes actor (what the tail reads), and
    takes it out when the task ends."""
    import pipeline.tokenize.nodes as nodes_module
    import pipeline.tokenize.stages as stages
    from pipeline.decode import DecodeConfig
    from pipeline.tokenize.schema import PLAN_SCHEMA

    monkeypatch.setattr(nodes_module, "HEARTBEAT_S", 0.2)
    src = [str(p) for p in make_corpus(tmp_path / "in", clips=[(18.0, 30.0), (6.5, 24.0)])]
    plan = pa.Table.from_pylist([{"source": s, "skip_windows": [], "prev_windows": 0} for s in src], schema=PLAN_SCHEMA)
    nodes = ray_local.remote(stages.RunNodes).options(num_cpus=0).remote()
    task = stages.DecodeInputs(DecodeConfig(fps=3.0, size=32, num_frames=17, stride=17, timeout_s=60),
                               OutputLayout(str(tmp_path / "out")), nodes)(plan)
    first = next(task)  # the first input's windows: the task now waits on its consumer, still on that input
    deadline = time.time() + 30
    while not (running := ray_local.get(nodes.running.remote())) and time.time() < deadline:
        time.sleep(0.2)
    assert [r[0] for r in running] == [src[0]] and "Ray node" in running[0][2], running
    assert first.column("source")[0].as_py() == src[0] and len(list(task)) == 1
    assert ray_local.get(nodes.running.remote()) == []
    ray_local.kill(nodes)
