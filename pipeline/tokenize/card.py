"""The dataset card: `README.md` beside `summary.json`, written at the end of every tokenize run that did work.

A reader who finds the output without this repository learns from it what the tokens are (preset, weights, sampling,
window geometry, token dtype and shape), how to turn ids back into video (`jobs/reconstruct.py`), what the run
counted (inputs, windows, failures by reason), the exact schema of both tables, and how to read them with pandas,
pyarrow, DuckDB and Hugging Face `datasets`.

* The schema tables are generated from `pipeline/tokenize/schema.py` (`token_schema`, `STATUS_SCHEMA`: names, Arrow
  types, nullability) and the `# comment` beside each `pa.field` there, so the card cannot drift from the files.
* The snippets are the tested part: `tests/tokenize/test_ops.py` extracts every ```python block of a generated card,
  points `OUT` at a copy of a real small output and runs each one. Keep them runnable as written; each prints
  `windows: <n>`.
* The YAML front matter declares the two tables as Hugging Face `configs`, so an output uploaded to the Hub as a
  dataset repository loads with `load_dataset("<user>/<repo>")` (tokens) or `..., "status")`.
"""

from __future__ import annotations

import inspect
import re
import time

import pyarrow as pa

from pipeline.storage import OutputLayout, is_remote
from pipeline.tokenize import schema as schema_module
from pipeline.tokenize.schema import STATUS_SCHEMA, token_schema

_FIELD_COMMENT = re.compile(r'pa\.field\("(\w+)".*?#\s*(.+)$')


def column_docs() -> dict[str, str]:
    """`{column: comment}` from the `# ...` beside each `pa.field("name", ...)` in schema.py (first one wins)."""
    docs: dict[str, str] = {}
    for line in inspect.getsource(schema_module).splitlines():
        m = _FIELD_COMMENT.search(line)
        if m and m.group(1) not in docs:
            docs[m.group(1)] = m.group(2).strip()
    return docs


def schema_table(schema: pa.Schema) -> str:
    """A Markdown table of `schema`: column, Arrow type, nullable, meaning."""
    docs = column_docs()
    rows = ["| column | type | nullable | meaning |", "|---|---|---|---|"]
    for f in schema:
        typ = str(f.type).replace("item: ", "")
        rows.append(f"| `{f.name}` | `{typ}` | {'yes' if f.nullable else 'no'} | {docs.get(f.name, '').replace('|', '/')} |")
    return "\n".join(rows)


def _decode_line(token_dtype: str) -> str:
    """The numpy expression that turns one `tokens` cell (`row`) into an array of `row.token_shape`."""
    if token_dtype == "int32":
        return 'arr = np.asarray(row["tokens"], np.int32).reshape(row["token_shape"])  # FSQ codebook ids'
    if token_dtype == "float16":
        return 'arr = np.frombuffer(row["tokens"], "<f2").reshape(row["token_shape"])  # KL latent means, float16'
    return ('arr = (np.frombuffer(row["tokens"], "<u2").astype(np.uint32) << 16).view(np.float32)'
            '.reshape(row["token_shape"])  # bfloat16 bits widened to float32')


def snippets(url: str, token_dtype: str) -> dict[str, str]:
    """The reading examples of the card, one runnable program each (`OUT` = the output URL)."""
    out = f"OUT = {url!r}"
    remote = is_remote(url)
    duck_setup = ('duckdb.sql("INSTALL httpfs; LOAD httpfs; CREATE SECRET (TYPE s3, PROVIDER credential_chain)")\n'
                  if remote else "")
    hf_setup = ("storage_options = {}  # s3fs options; {}: the AWS environment (e.g. AWS_ENDPOINT_URL, AWS_PROFILE)\n"
                if remote else "")
    hf_opts = ", storage_options=storage_options" if remote else ""
    return {
        "pandas": f"""import numpy as np
import pandas as pd

{out}
df = pd.read_parquet(f"{{OUT}}/tokens")  # one row per window
row = df.iloc[0]
{_decode_line(token_dtype)}
print(row["clip_id"], row["source"], arr.shape, arr.dtype)
print("windows:", len(df))
""",
        "pyarrow": f"""import pyarrow.compute as pc
import pyarrow.dataset as ds

{out}
tokens = ds.dataset(f"{{OUT}}/tokens", format="parquet")
status = ds.dataset(f"{{OUT}}/status", format="parquet").to_table(columns=["source", "status"])
print(pc.value_counts(status.column("status")).to_pylist())  # ok and failure reasons
table = tokens.to_table(columns=["clip_id", "source", "window_index", "token_shape", "tokens"])
print("windows:", table.num_rows)
""",
        "DuckDB": f"""import duckdb

{out}
{duck_setup}print(duckdb.sql(f"SELECT status, count(*) AS inputs FROM read_parquet('{{OUT}}/status/*.parquet') GROUP BY status"))
per_source = duckdb.sql(f"SELECT source, count(*) AS windows FROM read_parquet('{{OUT}}/tokens/*.parquet') GROUP BY source")
print(per_source)
print("windows:", duckdb.sql("SELECT sum(windows) FROM per_source").fetchall()[0][0])
""",
        "Hugging Face datasets": f"""import numpy as np
from datasets import load_dataset

{out}
{hf_setup}tokens = load_dataset("parquet", data_files=f"{{OUT}}/tokens/*.parquet", split="train"{hf_opts})
row = tokens[0]
{_decode_line(token_dtype)}
print(tokens.features["token_shape"], arr.shape)
print("windows:", tokens.num_rows)
""",
    }


def render_card(url: str, summary: dict, fps: float, token_dtype: str, stride: int | None = None,
                tail: str = "skip") -> str:
    """The card's Markdown for an output at `url` with its run `summary` (summary.json) and the decode settings
    that are not in the summary (`fps`, window `stride` in samples (None: = num_frames), `tail` policy)."""
    s = summary
    partial_text = _partial_text(s)
    crop_text = _crop_text(s)
    stride = stride or s["num_frames"]
    windows_text = ("consecutive, non-overlapping" if stride == s["num_frames"] else
                    f"a new window every {stride} samples") + f"; the samples after the last full window: `tail={tail}`"
    frames_text = f"{s['num_frames']} ({windows_text})"
    if s.get("whole_clip"):
        frames_text = "whole clips (pieces of at most `decode.max_frames` samples; `num_frames` per row)"
    size = s.get("size")
    size_text = f"{size[0]}×{size[1]}" if isinstance(size, (list, tuple)) else f"{size}×{size}"
    if s.get("buckets"):  # decode.buckets: each input went to the size nearest its aspect ratio
        size_text = (", ".join(f"{h}×{w}" for h, w in s["buckets"]) + " (each input in the bucket nearest its display "
                     "aspect ratio, column `bucket`)")
    shape = tuple(s["token_shape"])
    axes = "(t, h, w)" if s["regularizer"] == "fsq" else "(c, t, h, w)"
    shape_text = f"`{list(shape)}` = {axes}"
    if s.get("buckets") or s.get("whole_clip"):
        shape_text = f"per row in `token_shape`, {axes}; at most `{list(shape)}`"
    weights = (f"`{s['checkpoint_sha256']}` — **RANDOM WEIGHTS**: these tokens only demonstrate the pipeline"
               if s.get("random_weights") else f"sha256 `{s['checkpoint_sha256']}`")
    fails = s.get("failures_total") or {}
    fail_rows = "\n".join(f"| `{k}` | {v} |" for k, v in sorted(fails.items())) or "| (none) | 0 |"
    done = s["inputs_done_before"] + s["inputs_this_run"]
    ok = done - sum(fails.values())
    ckpt_arg = "" if s.get("random_weights") else " checkpoint=/path/to/the/checkpoint/with/this/sha256.ckpt"
    blocks = "\n\n".join(f"### {name}\n\n```python\n{code}```" for name, code in snippets(url, token_dtype).items())
    return f"""---
pretty_name: VidTok tokens ({s['tokenizer']})
tags: [video, tokenizer, vidtok, video-tokens]
configs:
- config_name: tokens
  data_files: "tokens/*.parquet"
  default: true
- config_name: status
  data_files: "status/*.parquet"
---

# VidTok tokens: `{url}`

Video tokens made by the vidtok-pipeline tokenize job (a re-implementation of Microsoft's VidTok;
`jobs/tokenize_corpus.py`) from `{s['input']}`: one Parquet row per {'clip piece' if s.get('whole_clip') else 'window'}. Last run
`{s['run_id']}`, card written {time.strftime('%Y-%m-%d %H:%M:%S %Z')}. Plain Parquet: any reader works without this
project's code.
{partial_text}
## What the tokens are

| | |
|---|---|
| tokenizer (VidTok preset) | `{s['tokenizer']}` ({'FSQ: discrete codebook ids' if s['regularizer'] == 'fsq' else 'KL: continuous latents'}) |
| weights | {weights} |
| sampling | {fps:g} frames per second by presentation timestamps (`t_k = t_0 + k / {fps:g}`, the frame on screen at `t_k`) |
| frame size | {size_text} (short side resized, bilinear + antialias, centre crop) |
| centre crop | {crop_text} |
| frames per window | {frames_text} |
| token dtype | `{token_dtype}` |
| token shape | {shape_text}, C order, flattened in the `tokens` column |

Back to video (input | reconstruction side by side as mp4, plus a PNG grid), from a checkout of vidtok-pipeline:

```bash
python jobs/reconstruct.py tokens={url} num_clips=2{ckpt_arg}
```

In Python, `vidtok.VidTok.from_pretrained("{s['tokenizer']}", "<checkpoint>.ckpt")` then
`model.decode_indices(torch.from_numpy(ids)[None].long())` (FSQ) or `model.decode(latents[None])` (KL) gives
`(1, 3, T, H, W)` float video in [-1, 1].

## Counts

| | |
|---|---|
| inputs listed | {s['inputs_listed']} |
| inputs finished (all runs) | {done} ({ok} ok, {done - ok} failed) |
| windows | {s['windows_total']} |
| windows found twice (must be 0) | {s['duplicate_windows_found']} |
| last run | {s['inputs_this_run']} inputs, {s['windows_this_run']} windows in {s['wall_time_s']:.0f} s ({s['windows_per_s']} windows/s, {s['video_seconds_per_s']} video-s/s) |

Failed inputs by reason (one row each in `status/`, `message` says why):

| reason | inputs |
|---|---|
{fail_rows}

## Files

```
tokens/part-*.parquet     one row per window (schema below)
status/status-*.parquet   one row per input: ok or the failure reason
summary.json              the counts above and more, resolved_config.yaml: the full job config
_SUCCESS                  present when every listed input has a status row
_stats/<run_id>.txt       Ray Data execution statistics of each run
```

## Schema

### `tokens/*.parquet`

{schema_table(token_schema(token_dtype != 'int32'))}

### `status/*.parquet`

{schema_table(STATUS_SCHEMA)}

## Reading it

{blocks}
"""


def _crop_text(s: dict) -> str:
    c = s.get("crop_this_run") or {}
    if not c.get("inputs_cropped"):
        return "no input of the last run had another aspect ratio than the window: nothing dropped"
    return (f"{c['inputs_cropped']} inputs of the last run had another aspect ratio than the window: the crop dropped "
            f"{100 * c['mean_dropped']:.1f} % of their pixels on average (at most {100 * c['max_dropped']:.1f} %; per "
            "input: `crop_dropped` in `status/`). `decode.buckets=[[256,256],[256,448],[448,256]]` keeps more of "
            "each frame")


def _partial_text(s: dict) -> str:
    if not s.get("partial"):
        return ""
    return (f"\n**Partial: {s['partial']}.** This output holds only the inputs a `limit=` run took; the others have "
            "no status row yet and `_SUCCESS` is absent. Run the same command without `limit=` to complete it.\n")


def write_card(layout: OutputLayout, summary: dict, cfg) -> str:
    """Write `README.md` (the card) under `layout` for a run of `cfg` (TokenizeJobConfig); returns its path."""
    token_dtype = "int32" if summary["regularizer"] == "fsq" else cfg.tokenizer.latent_dtype
    card = render_card(layout.url_of(), summary, cfg.decode.fps, token_dtype, cfg.decode.stride, cfg.decode.tail)
    return layout.write_bytes("README.md", card.encode())
