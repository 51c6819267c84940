"""Each stage of the tokenize chain on plain Arrow tables, without a cluster: decode -> tokenizer -> writer."""

from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

import pipeline.decode.sample as sample
from pipeline.decode import DecodeConfig
from pipeline.decode.index import VideoIndex, identity_of, indexed_info
from pipeline.decode.sample import probe_source
from pipeline.decode.synth import read_frame_number
from pipeline.storage import OutputLayout
from pipeline.tokenize.commit import status_shard_name
from pipeline.tokenize.schema import (
    PLAN_SCHEMA, WINDOW_SCHEMA, WRITTEN_SCHEMA, encoded_schema, frames_array, token_schema,
)
from pipeline.tokenize.stages import DecodeInputs, TokenizeClips, WriteTokenShard
from tests.decode.test_index import _same
from tests.tokenize.helpers import job_config, make_corpus
from vidtok import VidTok
from vidtok.video import to_model_input

PRESET = "vidtok_fsq_causal_488_32768_tiny"
DECODE = DecodeConfig(fps=3.0, size=32, num_frames=17, stride=17, timeout_s=60)


def _plan(sources, skip=None) -> pa.Table:
    skip = skip or [[] for _ in sources]
    return pa.Table.from_pylist([{"source": s, "source_size": None, "source_etag": None, "source_mtime": None,
                                  "skip_windows": k, "prev_windows": len(k)} for s, k in zip(sources, skip)],
                                schema=PLAN_SCHEMA)


def _stack(tables) -> pa.Table:
    return pa.concat_tables(list(tables)) if tables else WINDOW_SCHEMA.empty_table()


def test_stages_decode_windows_and_commit_failures_itself(tmp_path):
    """Good inputs become WINDOW rows (frames by the timestamp rule, skipped windows left out); a broken input
    sends nothing on and commits its own status row, once, named by its source."""
    good = [str(p) for p in make_corpus(tmp_path / "in", clips=[(12.0, 25.0), (6.5, 24.0)])]
    bad = tmp_path / "in" / "broken.mp4"
    bad.write_bytes(b"not a video at all" * 10)
    layout = OutputLayout(str(tmp_path / "out"))
    out = _stack(list(DecodeInputs(DECODE, layout, run_id="r1")(_plan([good[0], str(bad), good[1]], [[1], [], []]))))
    assert out.schema.equals(WINDOW_SCHEMA)
    assert [(s, w) for s, w in zip(out.column("source").to_pylist(), out.column("window_index").to_pylist())] == \
        [(good[0], 0), (good[1], 0)]  # window 1 of the first clip was committed before: skipped
    assert out.column("num_windows").to_pylist() == [2, 1] and out.column("prev_windows").to_pylist() == [1, 0]
    assert out.column("source_size").to_pylist()[0] > 0  # filled from the store when the plan has none
    frames = frames_array(out)
    assert frames.shape == (2, 17, 32, 32, 3) and frames.dtype == np.uint8
    want = np.asarray(out.column("frame_indices").to_pylist()[0])
    assert [read_frame_number(f) for f in frames[0]] == list(want % 4096)
    status = layout.list("status")
    assert [p.rsplit("/", 1)[1] for p in status] == [status_shard_name([str(bad)], "r1").split("/")[1]]
    row = pq.read_table(status[0]).to_pylist()[0]
    assert row["source"] == str(bad) and row["status"] == "not_a_video" and row["num_windows"] == 0
    assert (row["final"], row["attempts"], row["run_id"]) == (True, 1, "r1")  # permanent: one try, final


def test_stages_tokenizer_then_writer_match_the_model(tmp_path):
    """TokenizeClips gives the model's own FSQ ids for the frames; WriteTokenShard commits one shard with the
    token schema and returns WRITTEN rows naming it."""
    src = [str(p) for p in make_corpus(tmp_path / "in", clips=[(12.0, 25.0)])]
    layout = OutputLayout(str(tmp_path / "out"))
    windows = _stack(list(DecodeInputs(DECODE, layout)(_plan(src))))
    enc = TokenizeClips(PRESET, None, "random-init-seed-0", 0, "auto", "float16")(windows)
    assert enc.schema.equals(encoded_schema(False)) and "frames" not in enc.column_names
    torch.manual_seed(0)
    model = VidTok.from_config(PRESET).eval()
    with torch.inference_mode():
        ids = model.encode(to_model_input(frames_array(windows).copy())).indices.numpy()
    got = np.stack([np.asarray(t).reshape(enc.column("token_shape")[0].as_py()) for t in enc.column("tokens").to_pylist()])
    np.testing.assert_array_equal(got, ids)
    written = WriteTokenShard(layout, tokens_binary=False)(enc)
    assert written.schema.equals(WRITTEN_SCHEMA) and written.num_rows == 2
    shards = layout.list("tokens")
    assert len(shards) == 1 and set(written.column("shard").to_pylist()) == {"tokens/" + shards[0].rsplit("/", 1)[1]}
    table = pq.read_table(shards[0])
    assert table.schema.equals(token_schema(False), check_metadata=False) and table.num_rows == 2
    assert WriteTokenShard(layout, tokens_binary=False)(enc).equals(written) and layout.list("tokens") == shards


def test_stages_tokenizer_compile_mode_is_checked_before_work(tmp_path):
    """`tokenizer.compile` must name a torch.compile mode; a typo fails at once with the valid ones (no Ray)."""
    import pytest

    from pipeline.config import ConfigError
    from pipeline.tokenize.run import run_tokenize
    from tests.tokenize.helpers import job_config

    make_corpus(tmp_path / "in", clips=[(6.5, 24.0)])
    with pytest.raises(ConfigError, match="tokenizer.compile='turbo'.*reduce-overhead"):
        run_tokenize(job_config(str(tmp_path / "in"), str(tmp_path / "out"), "tokenizer.compile=turbo"))
    assert not (tmp_path / "out" / "tokens").exists()


def test_stages_decode_keeps_the_video_index_and_reads_it_again(tmp_path, monkeypatch):
    """Each input the stage probes gets its keyed row in `<output>/_index` (the `ProbeInfo` a probe gives); a broken
    input gets none; training pointed at that index reads the row, and an input tried before (windows committed) is
    decoded from its row, both without probing again, to the same windows."""
    good = [str(p) for p in make_corpus(tmp_path / "in", clips=[(12.0, 25.0), (6.5, 24.0)])]
    bad = tmp_path / "in" / "broken.mp4"
    bad.write_bytes(b"not a video at all" * 10)
    layout = OutputLayout(str(tmp_path / "out"))
    inproc = dataclasses.replace(DECODE, isolate=False)  # in this process, so the probes can be counted
    first = _stack(list(DecodeInputs(inproc, layout)(_plan([good[0], str(bad), good[1]]))))
    index = VideoIndex(layout)
    for s in good:
        assert _same(probe_source(s, DECODE), index.find(identity_of(s))) == [], s
    assert index.find(identity_of(str(bad))) is None

    probes = []
    monkeypatch.setattr(sample, "probe", lambda *a, **k: probes.append(a) or pytest.fail("probed again"))
    monkeypatch.setattr(sample, "probe_source", lambda *a, **k: pytest.fail("probed again"))
    # training pointed at this output's index (`index=<output>/_index`) finds the row: no probe
    training_view = indexed_info(VideoIndex.at(str(tmp_path / "out" / "_index")), good[1], DECODE)
    assert _same(index.find(identity_of(good[1])), training_view) == []
    again = _stack(list(DecodeInputs(inproc, layout)(_plan([good[0]], [[1]]))))
    assert probes == [] and again.column("window_index").to_pylist() == [0]
    assert frames_array(again).tobytes() == frames_array(first)[:1].tobytes()



def test_stages_decode_index_key_names_another_folder(tmp_path):
    """`index=` (the job's key, handed to the stage) puts the keyed rows in that folder instead of `<output>/_index`;
    a file given as the folder is refused, naming the key."""
    src = str(make_corpus(tmp_path / "in", clips=[(6.5, 24.0)])[0])
    layout = OutputLayout(str(tmp_path / "out"))
    shared = str(tmp_path / "shared_index")
    assert _stack(list(DecodeInputs(DECODE, layout, index=shared)(_plan([src])))).num_rows == 1
    assert VideoIndex.at(shared).find(identity_of(src)) is not None
    assert VideoIndex(layout).find(identity_of(src)) is None
    with pytest.raises(ValueError, match="index="):
        job_config(str(tmp_path / "in"), str(tmp_path / "o2"), f"index={src}")
