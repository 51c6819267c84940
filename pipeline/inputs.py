"""Inputs of every job (tokenize, train, evaluate), streamed in chunks: a URL prefix listed recursively, or a manifest.

* Prefix (`s3://bucket/videos`, `gs://...`, `/data/videos`): every object below it whose name ends with a video
  extension. S3 is listed page by page (1000 keys per request, lexicographic, as S3 returns them) so a prefix with
  millions of objects never sits whole in the driver's memory; other filesystems are walked one directory at a time,
  sorted, so the order (and thus the plan) is deterministic.
* Manifest (`.csv`, `.parquet`, `.jsonl`): a `path` column (configurable) of URLs or paths; relative paths are joined
  to `data_dir` (default: the manifest's folder). VidTok's own `.csv` meta files name the column `videos` and are
  accepted as they are. Optional `size` / `etag` / `mtime` columns are carried through. Read in chunks too.

Chunks are pyarrow Tables with INPUT_SCHEMA; the tokenize planner streams them against its resume state with Python
set lookups (`pipeline/tokenize/commit.py`), the training and evaluation jobs take the URLs (`list_urls`). Pure: no Ray.
"""

from __future__ import annotations

import logging
import os
import posixpath
from typing import Iterator, Sequence

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from pipeline.storage import full_url, is_remote, url_to_fs

log = logging.getLogger(__name__)

INPUT_SCHEMA = pa.schema([
    pa.field("source", pa.string(), nullable=False),
    pa.field("source_size", pa.int64()),
    pa.field("source_etag", pa.string()),
    pa.field("source_mtime", pa.float64()),
])
MANIFEST_SUFFIXES = (".csv", ".parquet", ".pq", ".jsonl", ".ndjson")
CHUNK_ROWS = 8192


def is_manifest(url: str) -> bool:
    return url.lower().rsplit("?", 1)[0].endswith(MANIFEST_SUFFIXES)


def iter_inputs(url: str, *, extensions: Sequence[str], storage_options: dict | None = None,
                column: str = "path", data_dir: str | None = None, chunk_rows: int = CHUNK_ROWS) -> Iterator[pa.Table]:
    """Chunks (pyarrow Tables, INPUT_SCHEMA) of the inputs named by `url`: a manifest file or a prefix to list."""
    if is_manifest(url):
        yield from iter_manifest(url, column=column, data_dir=data_dir, storage_options=storage_options,
                                 chunk_rows=chunk_rows)
    else:
        yield from iter_prefix(url, extensions=extensions, storage_options=storage_options, chunk_rows=chunk_rows)


def list_urls(url: str, *, extensions: Sequence[str], storage_options: dict | None = None, column: str = "path",
              data_dir: str | None = None) -> list[str]:
    """Every input URL named by `url`, in listing order (training and evaluation hold their list in memory)."""
    return [u for t in iter_inputs(url, extensions=extensions, storage_options=storage_options, column=column,
                                   data_dir=data_dir) for u in t.column("source").to_pylist()]


# ------------------------------------------------------------------------------------------------------- prefixes
def iter_prefix(url: str, *, extensions: Sequence[str], storage_options: dict | None = None,
                chunk_rows: int = CHUNK_ROWS) -> Iterator[pa.Table]:
    """List `url` recursively, keep names ending in `extensions` (case-insensitive), yield INPUT_SCHEMA chunks."""
    fs, root = url_to_fs(url, storage_options)
    exts = tuple(e.lower() for e in extensions)
    if fs.isfile(root):
        info = fs.info(root)
        yield _table([source_row(fs, info)])
        return
    if not fs.isdir(root):
        raise FileNotFoundError(f"input {url!r} is neither a file nor a folder/prefix with objects: check the URL "
                                "(and storage.endpoint_url / credentials for object storage)")
    entries = _iter_s3(fs, root) if _is_s3(fs) else _iter_walk(fs, root)
    buf: list[dict] = []
    for info in entries:
        if info["name"].lower().endswith(exts):
            buf.append(source_row(fs, info))
            if len(buf) >= chunk_rows:
                yield _table(buf)
                buf = []
    if buf:
        yield _table(buf)


def _is_s3(fs) -> bool:
    protocols = (fs.protocol,) if isinstance(fs.protocol, str) else tuple(fs.protocol)
    return "s3" in protocols and hasattr(fs, "_iterdir")


def _iter_s3(fs, root: str) -> Iterator[dict]:
    """Flat listing of everything below `root`, page by page (s3fs's `find` would collect it all first)."""
    from fsspec.asyn import sync

    bucket, _, prefix = root.partition("/")
    prefix = prefix.rstrip("/") + "/" if prefix else ""
    agen = fs._iterdir(bucket, delimiter="", prefix=prefix)
    try:
        while True:
            try:
                info = sync(fs.loop, agen.__anext__)
            except StopAsyncIteration:
                return
            if info.get("type") == "file":
                yield info
    finally:
        sync(fs.loop, agen.aclose)


def _iter_walk(fs, root: str) -> Iterator[dict]:
    """Depth-first walk, one directory in memory at a time, names sorted so every run sees the same order."""
    stack = [root]
    while stack:
        d = stack.pop()
        try:
            entries = fs.ls(d, detail=True)
        except (FileNotFoundError, PermissionError) as e:
            log.warning("cannot list %s (%s); skipped", d, e)
            continue
        subdirs = []
        for info in sorted(entries, key=lambda i: i["name"]):
            if info.get("type") == "directory":
                if info["name"].rstrip("/") != d.rstrip("/"):
                    subdirs.append(info["name"])
            else:
                yield info
        stack.extend(reversed(subdirs))


def source_row(fs, info: dict) -> dict:
    """An INPUT_SCHEMA row from an fsspec `info` dict (size, ETag and modification time as each store names them)."""
    etag = info.get("ETag") or info.get("etag") or info.get("md5Hash")
    mtime = info.get("mtime") or info.get("LastModified") or info.get("last_modified") or info.get("updated")
    if hasattr(mtime, "timestamp"):
        mtime = mtime.timestamp()
    elif isinstance(mtime, str):
        mtime = None  # unparsed provider-specific format; the etag identifies the version there
    return {"source": full_url(fs, info["name"]), "source_size": info.get("size"),
            "source_etag": etag.strip('"') if isinstance(etag, str) else None,
            "source_mtime": float(mtime) if mtime is not None else None}


def _table(rows: list[dict]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=INPUT_SCHEMA)


# ------------------------------------------------------------------------------------------------------ manifests
def iter_manifest(url: str, *, column: str = "path", data_dir: str | None = None, storage_options: dict | None = None,
                  chunk_rows: int = CHUNK_ROWS) -> Iterator[pa.Table]:
    """Stream a CSV / Parquet / JSONL manifest in chunks; resolve relative paths against `data_dir`."""
    fs, path = url_to_fs(url, storage_options)
    if data_dir is None:
        data_dir = full_url(fs, posixpath.dirname(path))
    low = path.lower()
    with fs.open(path, "rb") as f:
        if low.endswith((".parquet", ".pq")):
            batches = (pa.Table.from_batches([b]) for b in pq.ParquetFile(f).iter_batches(batch_size=chunk_rows))
        elif low.endswith(".csv"):
            reader = pacsv.open_csv(f, read_options=pacsv.ReadOptions(block_size=1 << 22),
                                    convert_options=pacsv.ConvertOptions(strings_can_be_null=True))
            batches = (pa.Table.from_batches([b]) for b in reader)
        else:
            batches = (pa.Table.from_pandas(df, preserve_index=False)
                       for df in pd.read_json(f, lines=True, chunksize=chunk_rows, dtype=False))
        for t in batches:
            yield _manifest_chunk(t, column, data_dir, url)


def _manifest_chunk(t: pa.Table, column: str, data_dir: str, url: str) -> pa.Table:
    names = t.column_names
    col = column if column in names else ("videos" if column == "path" and "videos" in names else None)
    if col is None:
        raise ValueError(f"manifest {url} has no column {column!r} (columns: {names}); set manifest_column=<name>")
    paths = [_resolve(str(p), data_dir) for p in t.column(col).to_pylist() if p is not None and str(p).strip()]
    out = {"source": pa.array(paths, pa.string())}
    valid = [p is not None and str(p).strip() != "" for p in t.column(col).to_pylist()]
    for name, typ, alias in (("source_size", pa.int64(), "size"), ("source_etag", pa.string(), "etag"),
                             ("source_mtime", pa.float64(), "mtime")):
        src = name if name in names else (alias if alias in names else None)
        if src is None:
            out[name] = pa.nulls(len(paths), typ)
        else:
            vals = [v for v, ok in zip(t.column(src).to_pylist(), valid) if ok]
            out[name] = pa.array([None if v is None else v for v in vals]).cast(typ)
    return pa.table(out, schema=INPUT_SCHEMA)


def stat_source(url: str, storage_options: dict | None = None) -> dict:
    """The INPUT_SCHEMA row of one URL, asked from the store (for manifests that carry no size / ETag)."""
    fs, path = url_to_fs(url, storage_options)
    row = source_row(fs, fs.info(path))
    row["source"] = url  # keep the name as the manifest spells it: it is the input's identity
    return row


def _resolve(p: str, data_dir: str) -> str:
    p = p.strip()
    if is_remote(p) or p.startswith("/"):
        return p
    if is_remote(data_dir):
        return data_dir.rstrip("/") + "/" + p
    return os.path.normpath(os.path.join(os.path.abspath(data_dir), p))
