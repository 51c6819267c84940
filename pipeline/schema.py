"""Parquet schemas of the tokenize job's outputs: the token table (one row per window) and the status table (one row
per input), plus the stable clip id. Pure pyarrow/numpy: no Ray, so any reader's view of the data is tested alone.

Everything is plain Arrow types (strings, ints, floats, lists, binary) so pandas, pyarrow, DuckDB or Spark read the
shards without project code or Ray's tensor extension types. Token layout (C order, shape in `token_shape`):
  * FSQ: `tokens` list<int32> of codebook ids, token_shape = (t, h, w)           token_dtype = "int32"
  * KL:  `tokens` binary, raw little-endian float16/bfloat16 bytes, token_shape = (c, t, h, w), token_dtype says which
The schema is documented for users in docs/tokenize.md (keep both in sync).
"""

from __future__ import annotations

import hashlib
from typing import Sequence

import numpy as np
import pyarrow as pa

SCHEMA_VERSION = "1"

# Columns that identify a window; resume reads only these from committed shards.
KEY_COLUMNS = ("source", "window_index", "num_windows")

_SOURCE_FIELDS = [
    pa.field("source", pa.string(), nullable=False),  # URL as listed (s3://b/k.mp4, /abs/path.mp4)
    pa.field("source_size", pa.int64()),  # bytes, from the listing
    pa.field("source_etag", pa.string()),  # object-store ETag (None for local files)
    pa.field("source_mtime", pa.float64()),  # last-modified, seconds since the epoch (None if unknown)
    pa.field("source_fps", pa.float64()),  # nominal/average fps of the source (informational)
    pa.field("source_duration_s", pa.float64()),
]


def token_schema(tokens_binary: bool) -> pa.Schema:
    """The token table; `tokens_binary` for KL latents (raw float16/bfloat16 bytes), else FSQ int32 id lists."""
    return pa.schema(
        [pa.field("clip_id", pa.string(), nullable=False)]
        + _SOURCE_FIELDS
        + [
            pa.field("window_index", pa.int32(), nullable=False),  # 0-based window number within the source
            pa.field("num_windows", pa.int32(), nullable=False),  # windows the source yields in total
            pa.field("frame_timestamps", pa.list_(pa.float64())),  # (num_frames,) presentation times, s
            pa.field("frame_indices", pa.list_(pa.int64())),  # (num_frames,) source frame indices
            pa.field("sample_fps", pa.float64()),
            pa.field("num_frames", pa.int32()),
            pa.field("height", pa.int32()),  # pixels of the tokenized frames
            pa.field("width", pa.int32()),
            pa.field("decode_backend", pa.string()),  # decord | pyav
            pa.field("tokenizer", pa.string()),  # VidTok preset name
            pa.field("checkpoint_sha256", pa.string()),  # sha256 of the weights file, or "random-init-seed-<n>"
            pa.field("token_dtype", pa.string()),  # int32 | float16 | bfloat16
            pa.field("token_shape", pa.list_(pa.int32())),
            pa.field("tokens", pa.binary() if tokens_binary else pa.list_(pa.int32())),
        ],
        metadata={"vidtok_pipeline.schema_version": SCHEMA_VERSION, "vidtok_pipeline.table": "tokens"},
    )


STATUS_SCHEMA = pa.schema(
    _SOURCE_FIELDS[:4]
    + [
        pa.field("status", pa.string(), nullable=False),  # ok | not_a_video | corrupt | truncated | ... (pipeline.decode)
        pa.field("message", pa.string()),  # human-readable reason ('' when ok)
        pa.field("num_windows", pa.int32()),  # windows committed for this input (all runs together)
        pa.field("source_fps", pa.float64()),
        pa.field("source_duration_s", pa.float64()),
        pa.field("decode_backend", pa.string()),
    ],
    metadata={"vidtok_pipeline.schema_version": SCHEMA_VERSION, "vidtok_pipeline.table": "status"},
)


def clip_id(source: str, window_index: int) -> str:
    """Stable id of one window: 16 hex chars of sha1(source) + '-' + the zero-padded window index.

    The same source URL and window give the same id in every run, so ids join across reruns and tokenizers.
    """
    return f"{hashlib.sha1(source.encode()).hexdigest()[:16]}-{int(window_index):06d}"


def _list_array(values: Sequence[np.ndarray], value_type: pa.DataType) -> pa.Array:
    """A list<value_type> column from equal-or-ragged 1-D arrays without a Python loop over elements."""
    flat = [np.asarray(v).reshape(-1) for v in values]
    lengths = np.fromiter((len(v) for v in flat), dtype=np.int32, count=len(flat))
    offsets = np.zeros(len(flat) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    data = np.concatenate(flat) if flat else np.zeros(0)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(data, type=value_type))


def tokens_column(tokens: np.ndarray, token_dtype: str) -> pa.Array:
    """`tokens`: (N, *token_shape) array -> the Arrow column for `token_dtype` (int32 ids or raw half-float bytes).

    bfloat16 arrives as its uint16 bit pattern (numpy has no bfloat16), float16 as float16.
    """
    n = tokens.shape[0]
    if token_dtype == "int32":
        return _list_array(list(tokens.astype(np.int32, copy=False).reshape(n, -1)), pa.int32())
    if token_dtype not in ("float16", "bfloat16"):
        raise ValueError(f"token_dtype must be int32|float16|bfloat16, found {token_dtype!r}")
    flat = np.ascontiguousarray(tokens.reshape(n, -1)).view(np.uint8)
    width = flat.shape[1]
    offsets = np.arange(n + 1, dtype=np.int32) * width
    return pa.BinaryArray.from_buffers(pa.binary(), n, [None, pa.py_buffer(offsets), pa.py_buffer(flat.reshape(-1))])


def decode_tokens(value, token_shape: Sequence[int], token_dtype: str) -> np.ndarray:
    """One `tokens` cell back to an array of `token_shape` (what a reader outside the project does).

    Returns int32 ids, float16, or float32 for bfloat16 (widened: numpy has no bfloat16).
    """
    shape = tuple(int(s) for s in token_shape)
    if token_dtype == "int32":
        return np.asarray(value, dtype=np.int32).reshape(shape)
    if token_dtype == "float16":
        return np.frombuffer(value, dtype="<f2").reshape(shape)
    if token_dtype == "bfloat16":
        bits = np.frombuffer(value, dtype="<u2").astype(np.uint32) << 16
        return bits.view(np.float32).reshape(shape)
    raise ValueError(f"unknown token_dtype {token_dtype!r}")


def token_table(rows: dict, tokens_binary: bool) -> pa.Table:
    """Build a token shard from column arrays (a Ray numpy batch without `frames`).

    rows: dict of equal-length columns; `frame_timestamps`/`frame_indices` (N, num_frames); `tokens` (N, *shape);
    `token_shape` (N, k); scalar columns (N,). `clip_id` is computed here, never trusted from upstream.
    """
    schema = token_schema(tokens_binary)
    n = len(rows["source"])
    sources = [str(s) for s in rows["source"]]
    widx = np.asarray(rows["window_index"], dtype=np.int32)
    dtype = str(rows["token_dtype"][0]) if n else ("float16" if tokens_binary else "int32")
    cols = {
        "clip_id": pa.array([clip_id(s, w) for s, w in zip(sources, widx)], pa.string()),
        "source": pa.array(sources, pa.string()),
        "window_index": pa.array(widx),
        "frame_timestamps": _list_array(list(rows["frame_timestamps"]), pa.float64()),
        "frame_indices": _list_array(list(rows["frame_indices"]), pa.int64()),
        "token_shape": _list_array(list(rows["token_shape"]), pa.int32()),
        "tokens": tokens_column(np.asarray(rows["tokens"]), dtype),
    }
    arrays = []
    for f in schema:
        if f.name in cols:
            arrays.append(cols[f.name])
        else:
            arrays.append(_scalar_column(rows[f.name], f.type))
    return pa.Table.from_arrays(arrays, schema=schema)


def status_table(rows: Sequence[dict]) -> pa.Table:
    """A status shard from a list of dicts with the STATUS_SCHEMA fields (missing optional fields are null)."""
    return pa.Table.from_pylist([{f.name: r.get(f.name) for f in STATUS_SCHEMA} for r in rows], schema=STATUS_SCHEMA)


def _scalar_column(values, typ: pa.DataType) -> pa.Array:
    vals = list(values)
    if pa.types.is_string(typ):
        return pa.array([None if v is None else str(v) for v in vals], typ)
    if pa.types.is_floating(typ):
        out = np.asarray([np.nan if v is None else v for v in vals], dtype=np.float64)
        return pa.array(out, typ, mask=np.isnan(out))
    if pa.types.is_integer(typ):
        out = np.asarray([-1 if v is None else v for v in vals], dtype=np.int64)
        return pa.array(out, typ, mask=out < 0)
    return pa.array(vals, typ)
