"""Token shards -> WebDataset tar shards, for trainers that read that format (webdataset loaders, Megatron-Energon).

One sample per window, in the tar as two members that share the window's key (WebDataset groups members by the
name up to the first dot):

    <clip_id>.tokens.npy   the tokens as a NumPy .npy array of `token_shape` (FSQ: int32 ids (t, h, w); KL float16
                           latents (c, t, h, w); bfloat16 latents widened exactly to float32: .npy has no bfloat16)
    <clip_id>.json         every other column of the token row (source, window_index, frame_timestamps,
                           frame_indices, tokenizer, checkpoint_sha256, token_dtype, token_shape, ...)

Both decode out of the box: `wds.WebDataset(urls).decode()` yields `{"__key__": clip_id, "tokens.npy": ndarray,
"json": dict}`. For Energon, run `energon prepare <output>` on the folder once (it writes its own `.nv-meta`).

Streaming and idempotent: one tar per token shard, named after it (`tokens/part-<hash>.parquet` -> `part-<hash>.tar`),
built from that one shard (bounded memory: one shard per worker) and published atomically with
`pipeline.storage.write_bytes`. Token shards are immutable and named by the windows they hold, so a tar that exists
is complete and is skipped: a re-run neither duplicates nor loses samples, and after a resumed tokenize run only the
new shards are exported. `index.json` (rewritten at the end) lists every tar with its sample count; the numbers come
from the token shards' Parquet footers. Local folders and object stores alike. Pure: no Ray.
"""

from __future__ import annotations

import io
import json
import logging
import posixpath
import tarfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import pyarrow.parquet as pq

from pipeline.config import StorageConfig
from pipeline.job_record import OutputClaim
from pipeline.storage import OutputLayout, join
from pipeline.tokenize.schema import decode_tokens

log = logging.getLogger(__name__)

BATCH_ROWS = 256  # rows read from a token shard at a time


@dataclass
class WebDatasetExportConfig:
    """`jobs/export_webdataset.py` settings."""

    tokens: str = "out/tokens_demo"  # the tokenize job's output (folder or prefix holding tokens/)
    output: Optional[str] = None  # where the .tar shards go (folder or prefix); null = <tokens>/webdataset
    workers: int = 4  # token shards exported at once (threads; memory: one shard each)
    storage: StorageConfig = field(default_factory=StorageConfig)

    def __post_init__(self):
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, found {self.workers}")


def tar_name(token_shard: str) -> str:
    """`.../tokens/part-<hash>.parquet` -> `part-<hash>.tar`."""
    return posixpath.basename(token_shard).rsplit(".", 1)[0] + ".tar"


def _member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o444, 0  # mtime 0: the same shard gives the same bytes
    tar.addfile(info, io.BytesIO(data))


def sample_members(row: dict) -> dict[str, bytes]:
    """`{member suffix: bytes}` of one token row: `tokens.npy` and `json` (module docstring)."""
    arr = decode_tokens(row["tokens"], row["token_shape"], row["token_dtype"])
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(arr), allow_pickle=False)
    meta = {k: v for k, v in row.items() if k != "tokens"}
    return {"tokens.npy": buf.getvalue(), "json": json.dumps(meta, sort_keys=True).encode()}


def shard_to_tar(layout: OutputLayout, token_shard: str) -> tuple[bytes, int]:
    """(tar bytes, samples) for one committed token shard (a path on `layout.fs`)."""
    out = io.BytesIO()
    n = 0
    with layout.fs.open(token_shard, "rb") as fh, tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for batch in pq.ParquetFile(fh).iter_batches(batch_size=BATCH_ROWS):
            for row in batch.to_pylist():
                for suffix, data in sample_members(row).items():
                    _member(tar, f"{row['clip_id']}.{suffix}", data)
                n += 1
    return out.getvalue(), n


def export_webdataset(cfg: WebDatasetExportConfig) -> dict:
    """Export every token shard of `cfg.tokens` that has no tar yet; returns counts (and writes `index.json`)."""
    opts = cfg.storage.storage_options()
    src = OutputLayout(cfg.tokens, opts)
    shards = src.list("tokens")
    if not shards:
        raise FileNotFoundError(f"no token shards under {cfg.tokens}/tokens: run jobs/tokenize_corpus.py first")
    if not src.exists("_SUCCESS"):
        log.warning("%s has no _SUCCESS: the tokenize run is not finished; exporting the shards committed so far "
                    "(re-run the export afterwards: it adds only the new ones)", cfg.tokens)
    out_url = cfg.output or join(cfg.tokens, "webdataset")
    dst = OutputLayout(out_url, opts)
    # the folder is this export's alone (never a user's folder); one token output per WebDataset folder
    claim = OutputClaim(dst, "export-webdataset", {}, src.url_of(), data=("",), legacy="index.json").check()
    claim.record()
    have = {posixpath.basename(p) for p in dst.list("", suffix=".tar")}
    todo = [s for s in shards if tar_name(s) not in have]

    def export_one(shard: str) -> int:
        data, n = shard_to_tar(src, shard)
        dst.write_bytes(tar_name(shard), data)
        log.info("wrote %s (%d samples)", dst.url_of(tar_name(shard)), n)
        return n

    with ThreadPoolExecutor(max_workers=cfg.workers) as pool:
        written = list(pool.map(export_one, todo))
    index = {"format": "webdataset", "members": ["tokens.npy", "json"], "source": src.url_of(),
             "shards": [{"name": tar_name(s), "samples": _num_rows(src, s)} for s in shards]}
    index["samples"] = sum(s["samples"] for s in index["shards"])
    dst.write_bytes("index.json", (json.dumps(index, indent=2) + "\n").encode())
    return {"output": dst.url_of(), "tars_written": len(todo), "tars_skipped": len(shards) - len(todo),
            "samples_written": sum(written), "samples_total": index["samples"]}


def _num_rows(layout: OutputLayout, path: str) -> int:
    with layout.fs.open(path, "rb") as fh:
        return pq.ParquetFile(fh).metadata.num_rows
