"""Commit and resume state: atomic publishes, deterministic names, and a plan that skips exactly what is committed."""

from __future__ import annotations

import os
from collections import Counter

import numpy as np
import pyarrow as pa
import pytest

from pipeline.storage import OutputLayout
from pipeline.tokenize.commit import load_resume_state, token_shard_name, write_plan
from pipeline.inputs import INPUT_SCHEMA
from pipeline.tokenize.schema import status_table


def _tokens(pairs, totals):
    return pa.table({"source": [s for s, _ in pairs], "window_index": pa.array([w for _, w in pairs], pa.int32()),
                     "num_windows": pa.array([totals[s] for s, _ in pairs], pa.int32())})


def _inputs(names):
    return pa.Table.from_pylist([{"source": n, "source_size": 1} for n in names], schema=INPUT_SCHEMA)


def test_shard_name_depends_on_keys_not_order():
    """A retried writer with the same rows in another order commits the same name; other rows, another name."""
    a = token_shard_name([("x", 1), ("y", 0)])
    assert a == token_shard_name([("y", 0), ("x", 1)]) and a != token_shard_name([("x", 1)])
    assert a.startswith("tokens/part-") and a.endswith(".parquet")


def test_local_commit_is_atomic_rename(tmp_path):
    """Local commits go through a temp file + rename and leave no temp file behind; listing shows committed files."""
    lay = OutputLayout(str(tmp_path / "out"))
    lay.write_table("tokens/part-a.parquet", pa.table({"a": [1]}))
    assert lay.list("tokens") == [str(tmp_path / "out/tokens/part-a.parquet")]
    assert os.listdir(tmp_path / "out/tokens") == ["part-a.parquet"]


def _fixture_state(lay):
    lay.write_table("status/status-1.parquet", status_table([{"source": "done", "status": "ok", "num_windows": 2},
                                                             {"source": "bad", "status": "corrupt", "message": "m"}],
                                                            "r0"))
    totals = {"done": 2, "half": 3, "full": 2}
    lay.write_table("tokens/part-1.parquet", _tokens([("done", 0), ("done", 1), ("half", 0)], totals))
    lay.write_table("tokens/part-2.parquet", _tokens([("half", 2), ("full", 0), ("full", 1)], totals))


@pytest.mark.parametrize("where", ["local", "s3"])
def test_resume_plan_skips_committed_work(where, tmp_path, request):
    """Done inputs are skipped, half-done ones carry their committed windows, fully committed ones need no decode."""
    if where == "s3":
        s3 = request.getfixturevalue("s3_server")
        lay = OutputLayout(f"s3://{s3.make_bucket()}/out", s3.storage_options)
    else:
        lay = OutputLayout(str(tmp_path / "out"))
    _fixture_state(lay)
    st = load_resume_state(lay)
    assert st.done == {"done", "bad"} and st.failures == {"corrupt": 1} and st.duplicate_windows == 0
    assert st.partial == {"half": ([0, 2], 3), "full": ([0, 1], 2)}
    plan = write_plan(lay, [_inputs(["bad", "new", "half"]), _inputs(["full", "new", "done"])], st, run_id="r1")
    rows = pa.concat_tables([lay_read(lay, f) for f in plan.files]).to_pylist()
    assert [(r["source"], r["skip_windows"], r["prev_windows"]) for r in rows] == [("new", [], 0), ("half", [0, 2], 2)]
    assert [r["source"] for r in plan.complete_without_decode] == ["full"]
    assert (plan.pending, plan.skipped_done, plan.duplicates_in_input, plan.total_inputs) == (2, 2, 1, 6)


def lay_read(lay, path):
    import pyarrow.parquet as pq

    with lay.fs.open(path, "rb") as f:
        return pq.read_table(f)


def test_resume_state_reports_duplicates(tmp_path):
    """A key committed in two shards is counted (never silently dropped)."""
    lay = OutputLayout(str(tmp_path))
    lay.write_table("tokens/part-1.parquet", _tokens([("a", 0)], {"a": 2}))
    lay.write_table("tokens/part-2.parquet", _tokens([("a", 0)], {"a": 2}))
    assert load_resume_state(lay).duplicate_windows == 1


def test_plan_limit(tmp_path):
    """limit=N plans at most N inputs."""
    lay = OutputLayout(str(tmp_path))
    plan = write_plan(lay, [_inputs([f"v{i}" for i in range(10)])], load_resume_state(lay), "r", limit=3)
    assert plan.pending == 3
    assert (plan.pending_bytes, plan.pending_sized) == (3, 3)  # the sizes decode tasks are sized by
    unsized = pa.Table.from_pylist([{"source": "u", "source_size": None}], schema=INPUT_SCHEMA)
    plan = write_plan(lay, [unsized], load_resume_state(lay), "r2")
    assert (plan.pending, plan.pending_bytes, plan.pending_sized) == (1, 0, 0)


def test_resume_state_newest_status_row_wins(tmp_path):
    """A pending row plans its input again; a newer final row (any run) makes it done; retry_permanent replans final
    failures; status shards written before these columns existed count as final."""
    import pyarrow.parquet as pq

    lay = OutputLayout(str(tmp_path))
    lay.write_table("status/status-r1-a.parquet", status_table([
        {"source": "late_ok", "status": "io_error", "final": False, "attempts": 6},
        {"source": "still", "status": "io_error", "final": False, "attempts": 6},
        {"source": "gone", "status": "not_found"}], "r1"))
    lay.write_table("status/status-r2-b.parquet", status_table([
        {"source": "late_ok", "status": "ok", "num_windows": 1},
        {"source": "flaky", "status": "io_error", "final": False}], "r2"))
    old = tmp_path / "status" / "status-legacy.parquet"  # schema version 1: no final / committed_at
    pq.write_table(pa.table({"source": ["legacy"], "status": ["corrupt"]}), old)
    st = load_resume_state(lay)
    assert st.done == {"late_ok", "gone", "legacy"} and st.pending == {"still", "flaky"}
    assert st.failures == {"not_found": 1, "corrupt": 1}
    again = load_resume_state(lay, retry_permanent=True)
    assert again.done == {"late_ok"} and again.failures == {}
    plan = write_plan(lay, [_inputs(["late_ok", "still", "gone", "flaky", "new"])], st, run_id="r3")
    assert sorted(pa.concat_tables([lay_read(lay, f) for f in plan.files]).column("source").to_pylist()) == \
        ["flaky", "new", "still"]


def test_resume_state_order_is_commit_time_not_file_name(tmp_path):
    """A later pending row hides an earlier final one even when its file name sorts first."""
    import time

    lay = OutputLayout(str(tmp_path))
    lay.write_table("status/status-z.parquet", status_table([{"source": "x", "status": "ok"}], "rZ"))
    time.sleep(0.01)
    lay.write_table("status/status-a.parquet", status_table([{"source": "x", "status": "io_error", "final": False}], "rA"))
    assert load_resume_state(lay).pending == {"x"}


def test_tracker_counts_a_retried_tasks_source_once(tmp_path):
    """A Ray task that wrote a pending row and was retried, its input then succeeding: the driver's `ok` and the
    decode stage's older pending row are one input, counted as the newest row (what a rerun's resume state sees);
    a decode-stage row newer than the driver's replaces its `ok` in the counts."""
    import time

    from pipeline.tokenize.commit import read_new_status, status_shard_name
    from pipeline.tokenize.status import StatusTracker

    lay = OutputLayout(str(tmp_path / "out"))
    run = "20261202T000000Z-abcd"
    pending = {"source": "a.mp4", "status": "io_error", "message": "503", "num_windows": 0, "final": False,
               "attempts": 3, "source_duration_s": 10.0}
    lay.write_table(status_shard_name(["a.mp4"], run), status_table([pending], run))  # first try of the task
    time.sleep(0.01)
    tr = StatusTracker(lay, run, every_inputs=100, every_s=1e9)
    for src in ("a.mp4", "b.mp4"):  # the retry succeeded: the writer's rows settle both inputs
        tr.finish({"source": src, "status": "ok", "message": "", "source_duration_s": 10.0, "attempts": 1}, 2)
    tr.maybe_flush(force=True)
    late = {"source": "c.mp4", "status": "corrupt", "message": "bad", "num_windows": 0, "source_duration_s": 1.0}
    lay.write_table(status_shard_name(["c.mp4"], run), status_table([late], run))
    tr.settle(read_new_status(lay, run, skip=tr.written))
    assert (tr.finished, tr.reasons, sum(tr.pending.values())) == (3, {"ok": 2, "corrupt": 1}, 0)
    c = tr.counts()  # the one count: what the summary, the final progress line and the metrics report
    assert (c.inputs, c.windows, c.video_s, c.failures) == (3, 0, 21.0, {"corrupt": 1})
    live = tr.counts({"inputs": 2, "video_s": 4.0, "reasons": {"truncated": 1, "ok": 1}})  # + RunNodes, while running
    assert (live.inputs, live.video_s, live.failures) == (5, 25.0, {"corrupt": 1, "truncated": 1})
    state = load_resume_state(lay)
    assert state.done == {"a.mp4", "b.mp4", "c.mp4"} and not state.pending  # the rerun agrees: nothing to retry

    time.sleep(0.01)  # the other order: the decode stage's pending row for b is the newest
    lay.write_table(status_shard_name(["b.mp4"], run), status_table([{**pending, "source": "b.mp4"}], run))
    tr2 = StatusTracker(lay, run, every_inputs=100, every_s=1e9)
    tr2._settled_hash, tr2._settled_at = tr._settled_hash, tr._settled_at
    tr2.finished, tr2.reasons = 2, Counter({"ok": 2})
    tr2.settle(read_new_status(lay, run, skip=tr.written))
    assert (tr2.finished, tr2.reasons["ok"], tr2.pending["io_error"]) == (3, 1, 1)
    assert load_resume_state(lay).pending == {"b.mp4"}
