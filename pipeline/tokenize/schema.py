"""Every table of the tokenize job, declared once: the outputs (token rows, status rows) and the rows that travel
between the stages of the chain, plus the stable clip id. Pure pyarrow/numpy: no Ray, so each is tested alone.

    plan      PLAN_SCHEMA     driver -> decode         one row per pending input (INPUT_SCHEMA + resume info)
    windows   WINDOW_SCHEMA   decode -> tokenizer      one row per window: lineage + `frames` (raw uint8 bytes) + tries
    encoded   ENCODED_SCHEMA  tokenizer -> writer      the window row with `tokens` instead of `frames` (or `error`)
    tokens    token_schema    the committed shards     ENCODED + `clip_id`, without the resume bookkeeping
    written   WRITTEN_SCHEMA  writer -> driver         one small row per committed window (no pixels, no tokens)
    status    STATUS_SCHEMA   the committed status     one row per finished input

Stages exchange Arrow tables built against these schemas, so there is one missing-value convention everywhere: an
Arrow null (None in Python). A failed input never becomes a row of the chain: the decode stage commits its status
row itself (`pipeline/tokenize/stages.py`).

Everything is plain Arrow types (strings, ints, floats, lists, binary) so pandas, pyarrow, DuckDB or Spark read the
shards without project code or Ray's tensor extension types. Token layout (C order, shape in `token_shape`):
  * FSQ: `tokens` list<int32> of codebook ids, token_shape = (t, h, w)           token_dtype = "int32"
  * KL:  `tokens` binary, raw little-endian float16/bfloat16 bytes, token_shape = (c, t, h, w), token_dtype says which
The schema is documented for users in docs/tokenize.md (keep both in sync).
"""

from __future__ import annotations

import hashlib
import time
from typing import Sequence

import numpy as np
import pyarrow as pa

from pipeline.decode.windows import Window
from pipeline.inputs import INPUT_SCHEMA

SCHEMA_VERSION = "2"  # 2: status rows carry final / attempts / run_id / committed_at

# Columns that identify a window; resume reads only these from committed shards.
KEY_COLUMNS = ("source", "window_index", "num_windows")

_SOURCE_FIELDS = [
    pa.field("source", pa.string(), nullable=False),  # URL as listed (s3://b/k.mp4, /abs/path.mp4)
    pa.field("source_size", pa.int64()),  # bytes, from the listing
    pa.field("source_etag", pa.string()),  # object-store ETag (None for local files)
    pa.field("source_mtime", pa.float64()),  # last-modified, seconds since the epoch (None if unknown)
    pa.field("source_fps", pa.float64()),  # nominal/average fps of the source (informational)
    pa.field("source_duration_s", pa.float64()),  # duration of the source's video stream, s
]


PLAN_SCHEMA = pa.schema(list(INPUT_SCHEMA) + [
    pa.field("skip_windows", pa.list_(pa.int32())),  # windows of this input already committed by an earlier run
    pa.field("prev_windows", pa.int32()),  # how many (len(skip_windows))
])

_WINDOW_FIELDS = [
    pa.field("window_index", pa.int32(), nullable=False),  # 0-based window number within the source
    pa.field("num_windows", pa.int32(), nullable=False),  # windows the source yields in total
    pa.field("frame_timestamps", pa.list_(pa.float64())),  # (num_frames,) presentation times, s
    pa.field("frame_indices", pa.list_(pa.int64())),  # (num_frames,) source frame indices
    pa.field("sample_fps", pa.float64()),  # the sampling rate (decode.fps, 3.0)
    pa.field("num_frames", pa.int32()),  # frames per window as tokenized (17 causal, 16 non-causal)
    pa.field("height", pa.int32()),  # pixels of the tokenized frames
    pa.field("width", pa.int32()),  # pixels of the tokenized frames
    pa.field("decode_backend", pa.string()),  # decord | pyav
    pa.field("bucket", pa.string()),  # "<h>x<w>" of the decode.buckets entry the input went to (null without buckets)
    pa.field("crop_dropped", pa.float64()),  # share of the source's displayed pixels the centre crop dropped (0: same aspect; decode.buckets keeps more)
]
_TOKEN_FIELDS = [
    pa.field("tokenizer", pa.string()),  # VidTok preset name
    pa.field("checkpoint_sha256", pa.string()),  # sha256 of the weights file, or "random-init-seed-<n>"
    pa.field("token_dtype", pa.string()),  # int32 | float16 | bfloat16
    pa.field("token_shape", pa.list_(pa.int32())),  # FSQ (t, h, w); KL (c, t, h, w)
]
_PREV = pa.field("prev_windows", pa.int32())  # resume bookkeeping: windows of the source committed before this run
_TRIES = pa.field("attempts", pa.int32())  # decode tries this run took for the source (retries of transient failures)
# tokenizer -> writer -> driver: null, or why the window could not be encoded (`too_large: ...`, a window that does not
# fit in GPU memory even alone); such a row has no tokens, is never committed, and the driver settles its input by it
_ERROR = pa.field("error", pa.string())

WINDOW_SCHEMA = pa.schema(_SOURCE_FIELDS + _WINDOW_FIELDS + [
    _PREV, _TRIES, pa.field("frames", pa.binary()),  # (num_frames, height, width, 3) uint8, C order
])


def tokens_type(tokens_binary: bool) -> pa.DataType:
    return pa.binary() if tokens_binary else pa.list_(pa.int32())


def encoded_schema(tokens_binary: bool) -> pa.Schema:
    """Tokenizer -> writer rows: the window row with its tokens instead of its frames."""
    return pa.schema(_SOURCE_FIELDS + _WINDOW_FIELDS + [_PREV, _TRIES] + _TOKEN_FIELDS
                     + [pa.field("tokens", tokens_type(tokens_binary)), _ERROR])


def token_schema(tokens_binary: bool) -> pa.Schema:
    """The token table; `tokens_binary` for KL latents (raw float16/bfloat16 bytes), else FSQ int32 id lists."""
    return pa.schema(
        [pa.field("clip_id", pa.string(), nullable=False)]  # stable id: 16 hex of sha1(source) + '-' + window index
        + _SOURCE_FIELDS + _WINDOW_FIELDS + _TOKEN_FIELDS
        + [pa.field("tokens", tokens_type(tokens_binary))],  # FSQ: int32 ids, C order; KL: raw little-endian halves
        metadata={"vidtok_pipeline.schema_version": SCHEMA_VERSION, "vidtok_pipeline.table": "tokens"},
    )


WRITTEN_SCHEMA = pa.schema(_SOURCE_FIELDS + [
    pa.field("decode_backend", pa.string()), pa.field("window_index", pa.int32()), pa.field("num_windows", pa.int32()),
    pa.field("crop_dropped", pa.float64()),
    _PREV, _TRIES, pa.field("shard", pa.string()),  # the token shard that holds the window (null with `error`)
    _ERROR,
])


STATUS_SCHEMA = pa.schema(
    _SOURCE_FIELDS[:4]
    + [
        pa.field("status", pa.string(), nullable=False),  # ok | not_a_video | corrupt | truncated | ... (pipeline.decode)
        pa.field("message", pa.string()),  # human-readable reason ('' when ok)
        pa.field("num_windows", pa.int32()),  # windows committed for this input (all runs together)
        pa.field("source_fps", pa.float64()),
        pa.field("source_duration_s", pa.float64()),
        pa.field("decode_backend", pa.string()),
        pa.field("crop_dropped", pa.float64()),  # share of the source's pixels the centre crop dropped (null: no windows)
        # False only for a transient failure still failing at the end of a run (status io_error): the input is
        # pending, the run is not complete, the next run retries it. Readers keep the newest row per source.
        pa.field("final", pa.bool_(), nullable=False),
        pa.field("attempts", pa.int32()),  # decode tries in the run that wrote the row (null: none, from committed keys)
        pa.field("run_id", pa.string()),  # the run that wrote the row (sortable: UTC start time + random suffix)
        pa.field("committed_at", pa.float64()),  # when the row was committed, seconds since the epoch: newest wins
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


def frames_column(frames: np.ndarray) -> pa.Array:
    """`frames` (N, T, H, W, 3) uint8 -> a binary column, one window's bytes per row, without a per-row copy."""
    n = frames.shape[0]
    flat = np.ascontiguousarray(frames).reshape(n, -1)
    offsets = np.arange(n + 1, dtype=np.int64) * flat.shape[1]
    if offsets[-1] >= 2**31:
        raise ValueError(f"{n} windows of {flat.shape[1]} bytes exceed one Arrow binary array (2 GiB): emit fewer")
    return pa.BinaryArray.from_buffers(pa.binary(), n, [None, pa.py_buffer(offsets.astype(np.int32)),
                                                        pa.py_buffer(flat.reshape(-1))])


def frames_array(table: pa.Table) -> np.ndarray:
    """The `frames` of a WINDOW_SCHEMA table as one (N, T, H, W, 3) uint8 array (all rows of one shape)."""
    shapes = {(t, h, w) for t, h, w in zip(*(table.column(c).to_pylist() for c in ("num_frames", "height", "width")))}
    if len(shapes) != 1:
        raise ValueError(f"a tokenizer batch needs windows of one shape, found {sorted(shapes)}")
    t, h, w = shapes.pop()
    col = table.column("frames").combine_chunks()
    offsets = np.frombuffer(col.buffers()[1], np.int32)[col.offset:col.offset + len(col) + 1]
    data = np.frombuffer(col.buffers()[2], np.uint8)[offsets[0]:offsets[-1]]
    return data.reshape(len(col), t, h, w, 3)


def window_table(base: dict, windows, frames: np.ndarray) -> pa.Table:
    """WINDOW_SCHEMA rows for some windows of one input: `base` holds the per-input values (source fields,
    num_windows, prev_windows, sample_fps, decode_backend); `windows` the `pipeline.decode.Window`s; `frames` their
    stacked pixels (N, T, H, W, 3) uint8."""
    n = len(windows)
    _, t, h, w, _ = frames.shape
    cols = {f.name: [base.get(f.name)] * n for f in WINDOW_SCHEMA if f.name in base}
    cols.update(window_index=[int(x.index) for x in windows], num_frames=[t] * n, height=[h] * n, width=[w] * n,
                frame_timestamps=_list_array([x.timestamps for x in windows], pa.float64()),
                frame_indices=_list_array([x.indices for x in windows], pa.int64()), frames=frames_column(frames))
    return pa.Table.from_pydict({f.name: cols[f.name] for f in WINDOW_SCHEMA}, schema=WINDOW_SCHEMA)


def windows_from_frames(frames: np.ndarray, source: str = "synthetic", fps: float = 3.0) -> pa.Table:
    """WINDOW rows for raw frames `(N, T, H, W, 3)` uint8 (benchmarks and the GPU script time the tokenizer stage on
    these without decoding); window i gets index i and consecutive sample indices."""
    n, t = frames.shape[:2]
    windows = [Window(i, frames[i], np.arange(t) / fps, np.arange(i * t, (i + 1) * t)) for i in range(n)]
    base = {"source": source, "num_windows": n, "prev_windows": 0, "sample_fps": fps, "decode_backend": None,
            "bucket": None, "crop_dropped": 0.0, "attempts": 1,
            "source_size": None, "source_etag": None, "source_mtime": None, "source_fps": None,
            "source_duration_s": None}
    return window_table(base, windows, frames)


def encoded_table(windows: pa.Table, tokens: np.ndarray, token_dtype: str, tokenizer: str, sha: str) -> pa.Table:
    """ENCODED rows: `windows` (WINDOW_SCHEMA) without `frames`, plus `tokens` (N, *token_shape) of `token_dtype`."""
    n = windows.num_rows
    out = windows.drop_columns(["frames"])
    extra = {"tokenizer": pa.array([tokenizer] * n, pa.string()), "checkpoint_sha256": pa.array([sha] * n, pa.string()),
             "token_dtype": pa.array([token_dtype] * n, pa.string()),
             "token_shape": _list_array([np.asarray(tokens.shape[1:], np.int32)] * n, pa.int32()),
             "tokens": tokens_column(tokens, token_dtype), "error": pa.nulls(n, pa.string())}
    for name, arr in extra.items():
        out = out.append_column(name, arr)
    return out.cast(encoded_schema(token_dtype != "int32"))


def failed_table(windows: pa.Table, error: str, token_dtype: str, tokenizer: str, sha: str) -> pa.Table:
    """ENCODED rows for `windows` (WINDOW_SCHEMA) that could not be encoded: no tokens, `error` = `<reason>: why`."""
    n = windows.num_rows
    binary = token_dtype != "int32"
    out = windows.drop_columns(["frames"])
    extra = {"tokenizer": pa.array([tokenizer] * n, pa.string()), "checkpoint_sha256": pa.array([sha] * n, pa.string()),
             "token_dtype": pa.array([token_dtype] * n, pa.string()), "token_shape": pa.nulls(n, pa.list_(pa.int32())),
             "tokens": pa.nulls(n, tokens_type(binary)), "error": pa.array([error] * n, pa.string())}
    for name, arr in extra.items():
        out = out.append_column(name, arr)
    return out.cast(encoded_schema(binary))


def token_table(rows, tokens_binary: bool) -> pa.Table:
    """The committed token shard from ENCODED rows: a `pa.Table`, or a dict of columns (numpy arrays / lists) whose
    `tokens` is an (N, *shape) array. `clip_id` is computed here, never trusted from upstream."""
    if not isinstance(rows, pa.Table):
        rows = _encoded_from_columns(rows, tokens_binary)
    ids = pa.array([clip_id(s, w) for s, w in zip(rows.column("source").to_pylist(),
                                                  rows.column("window_index").to_pylist())], pa.string())
    schema = token_schema(tokens_binary)
    cols = {"clip_id": ids, **{name: rows.column(name) for name in schema.names if name != "clip_id"}}
    return pa.Table.from_pydict(cols, schema=schema)


def written_table(encoded: pa.Table, shard: str | None) -> pa.Table:
    """WRITTEN rows of one committed shard (what the writer tells the driver); rows with an `error` keep it and get
    no shard."""
    cols = {f.name: encoded.column(f.name) for f in WRITTEN_SCHEMA if f.name != "shard"}
    failed = encoded.column("error").is_valid().to_pylist()
    cols["shard"] = pa.array([None if bad else shard for bad in failed], pa.string())
    return pa.Table.from_pydict(cols, schema=WRITTEN_SCHEMA)


def _encoded_from_columns(rows: dict, tokens_binary: bool) -> pa.Table:
    schema = encoded_schema(tokens_binary)
    n = len(rows["source"])
    dtype = str(rows["token_dtype"][0]) if n else ("float16" if tokens_binary else "int32")
    cols = {}
    for f in schema:
        if f.name == "tokens":
            cols[f.name] = tokens_column(np.asarray(rows["tokens"]), dtype)
        elif pa.types.is_list(f.type):
            cols[f.name] = _list_array(list(rows[f.name]), f.type.value_type)
        elif f.name in rows:
            cols[f.name] = pa.array([_none_if_nan(v) for v in rows[f.name]], f.type)
        else:
            cols[f.name] = pa.nulls(n, f.type)
    return pa.Table.from_pydict(cols, schema=schema)


def _none_if_nan(v):
    v = v.item() if hasattr(v, "item") else v
    return None if isinstance(v, float) and v != v else v


def status_table(rows: Sequence[dict], run_id: str) -> pa.Table:
    """A status shard from dicts with the STATUS_SCHEMA fields, stamped with `run_id` and the commit time (missing
    optional fields are null; a row without `final` is final)."""
    now = time.time()
    stamp = {"run_id": run_id, "committed_at": now}
    return pa.Table.from_pylist([{**{f.name: r.get(f.name) for f in STATUS_SCHEMA}, "final": r.get("final") is not False,
                                  **stamp} for r in rows], schema=STATUS_SCHEMA)
