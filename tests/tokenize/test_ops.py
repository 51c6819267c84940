"""What an operator sees, against one real small run: Ray Data stats in `_stats/`, the final progress line, the
dataset card (schema generated, every snippet executed as written), the WebDataset export (local and S3) read back
with the `webdataset` package, and the dry run (counts, estimate, nothing written)."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import fsspec
import numpy as np
import pytest

from pipeline.config import load_config
from pipeline.tokenize.card import column_docs
from pipeline.tokenize.config import TokenizeJobConfig
from pipeline.tokenize.dry_run import dry_run
from pipeline.tokenize.schema import STATUS_SCHEMA, decode_tokens, token_schema
from pipeline.tokenize.webdataset import WebDatasetExportConfig, export_webdataset
from tests.tokenize.helpers import CLIPS, FAST, expected_windows, make_corpus, read_folder

LOCAL = fsspec.filesystem("file")
REPO = Path(__file__).resolve().parents[2]
WANT = expected_windows(CLIPS[:2])  # 1 + 2 windows; plus one broken input


class _Lines(logging.Handler):
    def __init__(self):
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(record.getMessage())


@pytest.fixture(scope="module")
def run(tmp_path_factory, ray_local_module):
    """One tokenize run over two clips and a broken file: (input dir, output dir, summary, progress log lines)."""
    from pipeline.tokenize.run import run_tokenize

    base = tmp_path_factory.mktemp("ops")
    make_corpus(base / "in", clips=CLIPS[:2])
    (base / "in" / "broken.mp4").write_bytes(b"not a video" * 100)
    handler = _Lines()
    logging.getLogger("pipeline.tokenize.progress").addHandler(handler)
    logging.getLogger("pipeline.tokenize.progress").setLevel(logging.INFO)
    try:
        summary = run_tokenize(load_config(TokenizeJobConfig, None, [f"input={base / 'in'}", f"output={base / 'out'}",
                                                                    *FAST, "progress_every_s=1"]))
    finally:
        logging.getLogger("pipeline.tokenize.progress").removeHandler(handler)
    return base / "in", base / "out", summary, handler.lines


def _cfg(input, output, *extra) -> TokenizeJobConfig:
    return load_config(TokenizeJobConfig, None, [f"input={input}", f"output={output}", *FAST, *extra])


def _tree(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*")}


def test_ops_run_saves_ray_data_stats_and_logs_a_final_progress_line(run):
    """`_stats/<run_id>.txt` holds Ray Data's stats of the run; the last progress line has the final counts."""
    _, out, summary, lines = run
    stats = (out / "_stats" / f"{summary['run_id']}.txt").read_text()
    assert "DecodeInputs" in stats and "TokenizeClips" in stats, stats[:2000]
    assert lines and lines[-1].startswith(f"progress: inputs 3/3 (100.0%), windows {WANT} (")
    assert lines[-1].endswith("failures 1 (not_a_video 1), ETA 0s"), lines[-1]


def test_ops_card_states_the_tokens_and_the_generated_schema(run):
    """README.md names preset, weights, fps, size, window, dtype and shape, counts failures, and lists every column
    of both tables with its type and the comment from schema.py."""
    _, out, summary, _ = run
    card = (out / "README.md").read_text()
    assert f"`{summary['tokenizer']}`" in card and "random-init-seed-0" in card and "RANDOM WEIGHTS" in card
    assert "| frames per window | 17" in card and "| token dtype | `int32` |" in card and "`[5, 4, 4]`" in card
    assert "| frame size | 32×32" in card and "3 frames per second" in card
    assert "| `not_a_video` | 1 |" in card and f"| windows | {WANT} |" in card
    assert f"python jobs/reconstruct.py tokens={out}" in card
    docs = column_docs()
    for f in list(token_schema(False)) + list(STATUS_SCHEMA):
        assert f"| `{f.name}` | `{str(f.type).replace('item: ', '')}` |" in card, f.name
    assert docs["clip_id"].startswith("stable id") and docs["clip_id"] in card


def _card_snippets(card: str) -> list[tuple[str, str]]:
    """(heading, code) of every ```python block under a `### <reader>` heading of a card."""
    return re.findall(r"^### ([^\n]+)\n\n```python\n(.*?)```", card, re.S | re.M)


def _run_snippet(name: str, code: str, tmp_path: Path, offline: bool = True) -> None:
    """Run one snippet in a fresh interpreter; it must print the output's window count. `offline` keeps `datasets`
    off the Hub (it also refuses s3:// then, so the S3 variant runs without it)."""
    env = dict(os.environ, HF_HOME=str(tmp_path / "hf"), HF_DATASETS_CACHE=str(tmp_path / "hf" / "datasets"))
    if offline:
        env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, f"{name} snippet failed:\n{code}\n{r.stderr[-3000:]}"
    assert f"windows: {WANT}" in r.stdout, f"{name}: {r.stdout[-2000:]}"


def test_ops_card_snippets_run_as_written(run, tmp_path):
    """Every ```python block of the card runs against a moved copy of the output (only `OUT` substituted) and
    reads all windows: pandas, pyarrow, DuckDB and Hugging Face datasets."""
    _, out, _, _ = run
    moved = tmp_path / "moved"
    shutil.copytree(out, moved)
    blocks = _card_snippets((moved / "README.md").read_text())
    assert [name for name, _ in blocks] == ["pandas", "pyarrow", "DuckDB", "Hugging Face datasets"]
    for name, code in blocks:
        assert f"OUT = {str(out)!r}" in code, name
        _run_snippet(name, code.replace(f"OUT = {str(out)!r}", f"OUT = {str(moved)!r}"), tmp_path)


def test_ops_card_snippets_for_an_s3_output_run_as_written(run, s3_server, tmp_path):
    """The card of an s3:// output reads it as written with pandas, pyarrow and datasets (the AWS environment points
    at the test server; DuckDB's variant needs its httpfs extension, a download, so it is not run here)."""
    from pipeline.tokenize.card import render_card

    _, out, summary, _ = run
    fs = s3_server.filesystem()
    bucket = s3_server.make_bucket()
    for p in list((out / "tokens").glob("*.parquet")) + list((out / "status").glob("*.parquet")):
        fs.put(str(p), f"{bucket}/out/{p.parent.name}/{p.name}")
    blocks = dict(_card_snippets(render_card(f"s3://{bucket}/out", summary, 3.0, "int32")))
    assert "INSTALL httpfs" in blocks["DuckDB"]
    for name in ("pandas", "pyarrow", "Hugging Face datasets"):
        _run_snippet(name, blocks[name], tmp_path, offline=False)


def _read_wds(urls: list[str]) -> list[dict]:
    import webdataset as wds

    return list(wds.WebDataset(urls, shardshuffle=False, empty_check=False).decode())


def _check_samples(samples: list[dict], tokens_table) -> None:
    rows = {r["clip_id"]: r for r in tokens_table.to_pylist()}
    keys = [s["__key__"] for s in samples]
    assert len(keys) == len(set(keys)) == len(rows) and set(keys) == set(rows)
    for s in samples:
        row = rows[s["__key__"]]
        want = decode_tokens(row["tokens"], row["token_shape"], row["token_dtype"])
        assert s["tokens.npy"].dtype == want.dtype and s["tokens.npy"].shape == want.shape
        np.testing.assert_array_equal(s["tokens.npy"], want)
        assert s["json"]["source"] == row["source"] and s["json"]["frame_indices"] == row["frame_indices"]
        assert "tokens" not in s["json"]


def test_ops_webdataset_export_reads_back_every_window_once(run, tmp_path):
    """Every window is one WebDataset sample with equal tokens; a re-run writes nothing; a lost tar is redone
    alone; no sample is ever duplicated."""
    _, out, _, _ = run
    dst = tmp_path / "wds"
    cfg = WebDatasetExportConfig(tokens=str(out), output=str(dst))
    first = export_webdataset(cfg)
    tars = sorted(dst.glob("*.tar"))
    assert first["tars_written"] == len(tars) == len(list((out / "tokens").glob("*.parquet")))
    assert first["samples_written"] == first["samples_total"] == WANT
    tokens = read_folder(LOCAL, str(out / "tokens"))
    _check_samples(_read_wds([str(t) for t in tars]), tokens)
    index = json.loads((dst / "index.json").read_text())
    assert sorted(s["name"] for s in index["shards"]) == [t.name for t in tars] and index["samples"] == WANT

    before = _tree(dst)
    again = export_webdataset(cfg)
    assert (again["tars_written"], again["tars_skipped"], again["samples_written"]) == (0, len(tars), 0)
    assert {k: v for k, v in _tree(dst).items() if k.endswith(".tar")} == \
        {k: v for k, v in before.items() if k.endswith(".tar")}
    tars[0].unlink()
    redo = export_webdataset(cfg)
    assert redo["tars_written"] == 1 and sorted(dst.glob("*.tar")) == tars
    _check_samples(_read_wds([str(t) for t in tars]), tokens)


def test_ops_webdataset_export_on_s3(run, s3_server, tmp_path):
    """Token shards on s3:// -> tars on s3:// through a real S3 server; read back; a re-run skips every tar."""
    _, out, _, _ = run
    fs = s3_server.filesystem()
    bucket = s3_server.make_bucket()
    for p in (out / "tokens").glob("*.parquet"):
        fs.put(str(p), f"{bucket}/tok/tokens/{p.name}")
    cfg = load_config(WebDatasetExportConfig, None, [f"tokens=s3://{bucket}/tok", f"storage.endpoint_url={s3_server.endpoint_url}",
                                           f"storage.key={s3_server.key}", f"storage.secret={s3_server.secret}"])
    first = export_webdataset(cfg)
    names = sorted(f for f in fs.ls(f"{bucket}/tok/webdataset") if f.endswith(".tar"))
    assert first["tars_written"] == len(names) > 0 and first["output"] == f"s3://{bucket}/tok/webdataset"
    local = []
    for n in names:
        fs.get(n, str(tmp_path / Path(n).name))
        local.append(str(tmp_path / Path(n).name))
    _check_samples(_read_wds(local), read_folder(LOCAL, str(out / "tokens")))
    assert export_webdataset(cfg)["tars_written"] == 0


def test_ops_dry_run_counts_the_finished_output_and_touches_nothing(run):
    """On a finished output: nothing to do, inputs done and failed before by reason; no file created or changed."""
    input_dir, out, _, _ = run
    before = _tree(out)
    r = dry_run(_cfg(input_dir, out, "dry_run=true"))
    assert (r.inputs_listed, r.inputs_to_do, r.inputs_done_before) == (3, 0, 3)
    assert r.failed_before == {"not_a_video": 1} and r.windows_committed == WANT and r.settings_differ == {}
    assert "failed before:    not_a_video 1" in r.text() and "nothing to decode" in r.text()
    assert _tree(out) == before


def test_ops_dry_run_estimates_a_fresh_output_without_creating_it(run, tmp_path):
    """Probing all inputs gives the windows the run made and the broken file as an expected failure; probing one
    of three says it is an extrapolated estimate; the output folder is never created."""
    input_dir, _, summary, _ = run
    fresh = tmp_path / "fresh"
    r = dry_run(_cfg(input_dir, fresh, "dry_run=true"))
    assert (r.inputs_to_do, r.inputs_to_decode, r.probed) == (3, 3, 3)
    assert round(r.expected_windows) == summary["windows_this_run"] == WANT
    assert r.expected_failures == {"not_a_video": 1.0}
    assert abs(r.expected_video_hours * 3600 - sum(s for s, _ in CLIPS[:2])) < 0.5
    assert r.estimate_basis.startswith("probed all 3")
    one = dry_run(_cfg(input_dir, fresh, "dry_run=true", "dry_run_probe=1"))
    assert one.probed == 1 and one.estimate_basis.startswith("ESTIMATE from probing 1 of 3 inputs to decode")
    assert "by bytes" in one.estimate_basis  # a folder listing gives every size
    assert not fresh.exists()


@pytest.mark.slow
def test_ops_dry_run_job_exits_0_without_starting_ray(run, tmp_path):
    """`python jobs/tokenize_corpus.py dry_run=true` prints the report, exits 0, starts no Ray, writes no output."""
    input_dir, _, _, _ = run
    r = subprocess.run([sys.executable, str(REPO / "jobs/tokenize_corpus.py"), f"input={input_dir}",
                        f"output={tmp_path / 'o'}", "dry_run=true", *FAST], cwd=tmp_path, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "dry run: nothing decoded" in r.stdout and "expected windows: 3" in r.stdout
    assert "Ray" not in r.stderr.replace("RayConfig", "") and not (tmp_path / "o").exists(), r.stderr[-3000:]


def test_ops_card_describes_buckets_and_whole_clips(run):
    """With decode.buckets the card lists the bucket sizes and says the shape is per row; whole-clip outputs say
    rows are clip pieces (the summary carries both settings)."""
    from pipeline.tokenize.card import render_card

    _, _, summary, _ = run
    card = render_card("/o", {**summary, "buckets": [[32, 48], [48, 32]], "token_shape": [5, 4, 6]}, 3.0, "int32")
    assert "| frame size | 32×48, 48×32 (each input in the bucket nearest its display aspect ratio" in card
    assert "| token shape | per row in `token_shape`, (t, h, w); at most `[5, 4, 6]`" in card
    whole = render_card("/o", {**summary, "whole_clip": True}, 3.0, "int32")
    assert "one Parquet row per clip piece" in whole and "| frames per window | whole clips" in whole
