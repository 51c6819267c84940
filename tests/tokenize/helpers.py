"""Helpers shared by the tokenize tests: a tiny corpus, a fast job config, and readers that use only pyarrow."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.config import load_config
from pipeline.entrypoints import run_command
from pipeline.decode.synth import write_synthetic_video
from pipeline.tokenize.config import TokenizeJobConfig
from pipeline.tokenize.schema import PLAN_SCHEMA

# (seconds, fps): 6.5 s -> 19 samples at 3 FPS -> 1 window of 17; 12 s -> 36 samples -> 2 windows; 18 s -> 3 windows
CLIPS = [(6.5, 24.0), (12.0, 25.0), (18.0, 30.0)]
FAST = ["decode.size=32", "tokenizer.batch_size=4", "shards.shard_rows=2", "tokenizer.num_gpus=0",
        "decode_task.inputs_per_task=1", "shards.status_every_inputs=1", "decode.timeout_s=60"]


def tokenize_in_process(capsys, *args: str) -> subprocess.CompletedProcess:
    """`python jobs/tokenize_corpus.py ARGS`, run in this process (a Ray already up here is joined, not started):
    its exit code and console output, as `subprocess.run` gives them. A job that must start its own Ray, be killed or
    be submitted runs in a subprocess instead."""
    capsys.readouterr()
    code = run_command("tokenize_corpus", list(args))
    out = capsys.readouterr()
    return subprocess.CompletedProcess(["tokenize_corpus", *args], code, out.out, out.err)


def make_corpus(folder: Path, clips=CLIPS, size=(64, 48)) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i, (sec, fps) in enumerate(clips):
        p = folder / f"c{i}.mp4"
        write_synthetic_video(p, num_frames=round(sec * fps), fps=fps, size=size, gop=24)
        out.append(p)
    return out


def expected_windows(clips=CLIPS, num_frames=17) -> int:
    import math

    return sum((math.floor(sec * 3.0 - 1e-9) + 1) // num_frames for sec, _ in clips)


def plan_table(paths, skip: dict | None = None) -> pa.Table:
    """A plan (PLAN_SCHEMA) of local `paths` with their sizes; `skip`: {index: windows already committed}."""
    skip = skip or {}
    return pa.Table.from_pylist([{"source": str(p), "source_size": os.path.getsize(p), "skip_windows": skip.get(i, []),
                                  "prev_windows": len(skip.get(i, []))} for i, p in enumerate(paths)],
                                schema=PLAN_SCHEMA)


def job_config(input: str, output: str, *extra: str) -> TokenizeJobConfig:
    return load_config(TokenizeJobConfig, None, [f"input={input}", f"output={output}", *FAST, *extra])


def read_folder(fs, folder: str) -> pa.Table | None:
    """All committed Parquet files of `folder` with plain pyarrow (what an outside reader does)."""
    try:
        files = sorted(f for f in fs.ls(folder, detail=False) if f.endswith(".parquet"))
    except FileNotFoundError:
        return None
    if not files:
        return None
    tables = []
    for f in files:
        with fs.open(f, "rb") as fh:
            tables.append(pq.read_table(fh))
    return pa.concat_tables(tables)


def token_rows(table: pa.Table) -> dict:
    """{clip_id: (source, window_index, tokens list)} — order-free comparison of two outputs."""
    d = table.select(["clip_id", "source", "window_index", "tokens"]).to_pydict()
    return {c: (s, w, tuple(t)) for c, s, w, t in zip(d["clip_id"], d["source"], d["window_index"], d["tokens"])}
