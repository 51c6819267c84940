"""Long inputs split across decode tasks (pipeline/tokenize/segments.py): one task per segment, the same windows and
tokens as the whole-input decode, one status row per input that is `ok` only when every segment is in, a failing
segment leaving its input pending. kill -9 in the middle of a segmented input: tests/tokenize/test_e2e.py."""

from __future__ import annotations

import dataclasses
import os

import fsspec
import pyarrow as pa
import pytest

from pipeline.decode import DecodeConfig
from pipeline.storage import OutputLayout
from pipeline.tokenize.commit import load_resume_state, read_new_status
from pipeline.tokenize.config import RetryConfig
from pipeline.tokenize.run import StatusTracker, run_tokenize
from pipeline.tokenize.schema import PLAN_SCHEMA
from pipeline.tokenize.segments import TASK_COLUMN, SplitLong, task_inputs
from pipeline.tokenize.stages import DecodeInputs
from tests.tokenize.helpers import expected_windows, job_config, make_corpus, plan_table, read_folder, token_rows

LOCAL = fsspec.filesystem("file")
SEG = "decode.segment_s=0.1"  # the tiny test clips (11-35 KB, 6.5-18 s) are cut into one window per segment
DECODE = DecodeConfig(fps=3.0, size=32, num_frames=17, stride=17, timeout_s=60, segment_s=0.1)



def test_split_long_one_task_per_segment_short_inputs_together(tmp_path):
    """Each segment is its own task row, first; the inputs that stay whole share one; committed windows are cut
    to their segment and a segment with nothing left is not emitted."""
    c0, c1, c2 = make_corpus(tmp_path / "in")  # 1, 2 and 3 windows
    tasks = SplitLong(DECODE)(plan_table([c0, c1, c2], skip={2: [0, 2]}))
    rows = tasks.column(TASK_COLUMN).to_pylist()
    got = [[(os.path.basename(r["source"]), r["segment_first"], r["segment_stop"], r["skip_windows"],
             r["prev_windows"]) for r in task] for task in rows]
    assert got == [[("c1.mp4", 0, 1, [], 0)], [("c1.mp4", 1, 2, [], 0)], [("c2.mp4", 1, 2, [], 2)],
                   [("c0.mp4", None, None, [], 0)]]
    flat = task_inputs(tasks)
    assert flat.num_rows == 4 and set(PLAN_SCHEMA.names) <= set(flat.column_names)
    plan = plan_table([c0])
    assert task_inputs(plan) is plan
    unsized = plan_table([c2]).set_column(1, "source_size", pa.array([None], pa.int64()))  # a manifest without sizes
    rows = SplitLong(DECODE)(unsized).column(TASK_COLUMN).to_pylist()
    assert [(r[0]["segment_first"], r[0]["source_size"]) for r in rows] == [(w, os.path.getsize(c2)) for w in range(3)]
    whole = SplitLong(DecodeConfig(size=32, num_frames=17, segment_s=None))(plan_table([c0, c1, c2]))
    assert [len(t) for t in whole.column(TASK_COLUMN).to_pylist()] == [3]


def test_decode_segment_sends_its_windows_and_no_ok_row(tmp_path):
    """A segment row decodes only its windows (indices and total of the whole input) and commits no status row:
    the driver's `ok` row stands for all segments."""
    _, _, c2 = make_corpus(tmp_path / "in")
    layout = OutputLayout(str(tmp_path / "out"))
    tasks = SplitLong(DECODE)(plan_table([c2]))
    stage = DecodeInputs(DECODE, layout, run_id="r1")
    for task in range(tasks.num_rows):
        out = pa.concat_tables(list(stage(tasks.slice(task, 1))))
        assert out.column("window_index").to_pylist() == [task] and out.column("num_windows").to_pylist() == [3]
    assert not layout.list("status")


def test_split_keeps_the_probe_in_the_video_index_and_segments_read_it(tmp_path, monkeypatch):
    """The split probes a long input's header once and writes its row to the job's video index; the segment tasks
    and a second split read that row instead of probing, and cut and decode the same windows."""
    import pipeline.decode.sample as sample
    import pipeline.decode.segments as segments
    from pipeline.decode.index import VideoIndex, identity_of

    _, _, c2 = make_corpus(tmp_path / "in")
    layout = OutputLayout(str(tmp_path / "out"))
    inproc = dataclasses.replace(DECODE, isolate=False)  # in this process, so the probes can be counted
    index = VideoIndex(layout)
    first = SplitLong(inproc, index=index)(plan_table([c2]))
    assert index.find(identity_of(str(c2))) is not None and first.num_rows == 3
    monkeypatch.setattr(segments, "probe", lambda *a, **k: pytest.fail("probed again"))
    monkeypatch.setattr(sample, "probe", lambda *a, **k: pytest.fail("probed again"))
    assert SplitLong(inproc, index=index)(plan_table([c2])).equals(first)
    stage = DecodeInputs(inproc, layout, run_id="r1")
    got = [pa.concat_tables(list(stage(first.slice(t, 1)))).column("window_index").to_pylist() for t in range(3)]
    assert got == [[0], [1], [2]]


def test_failing_segment_leaves_the_input_pending(tmp_path):
    """One segment in, the next failing (transiently, to the end): the input gets a pending row, never `ok`, and
    the next run plans it again."""
    _, c1, _ = make_corpus(tmp_path / "in")
    layout = OutputLayout(str(tmp_path / "out"))
    first, second = (t.slice(i, 1) for t in [SplitLong(DECODE)(plan_table([c1]))] for i in range(2))
    retry = RetryConfig(transient=["not_found"], attempts=2, base_s=0.05, max_s=0.1, deadline_s=10)
    stage = DecodeInputs(DECODE, layout, retry=retry, run_id="r1")
    tracker = StatusTracker(layout, "r1", every_inputs=1, every_s=60)
    for table in stage(first):
        tracker.consume(table)
    assert tracker.finished == 0 and len(tracker.inflight[str(c1)]) == 1
    os.rename(c1, str(c1) + ".away")  # the store loses the object for the rest of the run
    assert list(stage(second)) == []
    tracker.maybe_flush(force=True)
    tracker.settle(read_new_status(layout, "r1", skip=tracker.written))
    assert dict(tracker.pending) == {"not_found": 1} and "ok" not in tracker.reasons and not tracker.inflight
    state = load_resume_state(layout)
    assert state.pending == {str(c1)} and not state.done


def test_tokenize_segmented_equals_whole_input_decode(ray_local, tmp_path):
    """The job with every long clip cut into one-window segments writes the same clip_ids and token bytes, and one
    `ok` status row per input with its full window count."""
    make_corpus(tmp_path / "in")
    outs = {}
    for name, seg in (("whole", "decode.segment_s=null"), ("split", SEG)):
        s = run_tokenize(job_config(str(tmp_path / "in"), str(tmp_path / name), seg, "decode_task.inputs_per_task=3"))
        assert s["complete"] and s["windows_this_run"] == expected_windows() and s["inputs_ok_this_run"] == 3
        outs[name] = (read_folder(LOCAL, str(tmp_path / name / "tokens")),
                      read_folder(LOCAL, str(tmp_path / name / "status")))
    (tw, sw), (ts, ss) = outs["whole"], outs["split"]
    assert token_rows(ts) == token_rows(tw)
    lineage = lambda t: {r["clip_id"]: (r["frame_timestamps"], r["frame_indices"], r["num_windows"])  # noqa
                         for r in t.select(["clip_id", "frame_timestamps", "frame_indices", "num_windows"]).to_pylist()}
    assert lineage(ts) == lineage(tw)
    status = lambda t: sorted((r["source"], r["status"], r["num_windows"], r["final"]) for r in t.to_pylist())  # noqa
    assert status(ss) == status(sw) and ss.num_rows == 3
    stats = "".join(p.read_text() for p in (tmp_path / "split" / "_stats").glob("*.txt"))  # Ray Data's own
    assert "SplitLong" in stats and "SplitLong" not in "".join(  # the split ran (its cut: the unit test above)
        p.read_text() for p in (tmp_path / "whole" / "_stats").glob("*.txt"))
