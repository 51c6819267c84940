"""Token/status Parquet schemas: plain Arrow types any reader understands, stable clip ids, exact token round trips."""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.tokenize.schema import STATUS_SCHEMA, clip_id, decode_tokens, status_table, token_schema, token_table


def _rows(n: int, tokens: np.ndarray, dtype: str) -> dict:
    return {
        "source": np.array([f"s3://b/v{i % 2}.mp4" for i in range(n)], dtype=object),
        "source_size": np.arange(n) + 100, "source_etag": np.array(["e"] * n, dtype=object),
        "source_mtime": np.full(n, np.nan), "source_fps": np.full(n, 25.0), "source_duration_s": np.full(n, 7.0),
        "window_index": np.arange(n), "num_windows": np.full(n, n),
        "frame_timestamps": np.tile(np.arange(17) / 3.0, (n, 1)), "frame_indices": np.tile(np.arange(17) * 8, (n, 1)),
        "sample_fps": np.full(n, 3.0), "num_frames": np.full(n, 17), "height": np.full(n, 64), "width": np.full(n, 64),
        "decode_backend": np.array(["decord"] * n, dtype=object), "tokenizer": np.array(["p"] * n, dtype=object),
        "checkpoint_sha256": np.array(["random-init-seed-0"] * n, dtype=object),
        "token_dtype": np.array([dtype] * n, dtype=object),
        "token_shape": np.tile(np.array(tokens.shape[1:]), (n, 1)), "tokens": tokens,
    }


def _roundtrip(table: pa.Table) -> pa.Table:
    buf = io.BytesIO()
    pq.write_table(table, buf)
    buf.seek(0)
    return pq.read_table(buf)


def test_clip_id_stable_and_distinct():
    """The same (source, window) gives the same id; other sources or windows give other ids."""
    assert clip_id("s3://b/a.mp4", 3) == clip_id("s3://b/a.mp4", 3)
    assert clip_id("s3://b/a.mp4", 3).endswith("-000003")
    assert len({clip_id("s3://b/a.mp4", 3), clip_id("s3://b/a.mp4", 4), clip_id("s3://b/b.mp4", 3)}) == 3


def test_token_table_fsq_roundtrip_through_parquet():
    """FSQ int32 ids survive Parquet as list<int32> and reshape back with token_shape, read by pandas."""
    rng = np.random.default_rng(0)
    tok = rng.integers(0, 32768, size=(3, 5, 4, 4), dtype=np.int32)
    t = _roundtrip(token_table(_rows(3, tok, "int32"), tokens_binary=False))
    assert t.schema.equals(token_schema(False), check_metadata=False)
    df = t.to_pandas()
    for i in range(3):
        np.testing.assert_array_equal(decode_tokens(df.tokens[i], df.token_shape[i], df.token_dtype[i]), tok[i])
    assert df.clip_id[1] == clip_id("s3://b/v1.mp4", 1)
    assert np.isnan(df.source_mtime[0]) and df.frame_indices[2][1] == 8


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_token_table_kl_latents_roundtrip(dtype):
    """KL latents are stored as raw half-float bytes and decode back exactly (bf16 as its bit pattern)."""
    import torch

    lat = torch.randn(2, 4, 5, 8, 8)
    tdt = torch.float16 if dtype == "float16" else torch.bfloat16
    arr = lat.to(tdt).view(torch.int16).numpy().view(np.float16 if dtype == "float16" else np.uint16)
    t = _roundtrip(token_table(_rows(2, arr, dtype), tokens_binary=True))
    row = t.slice(1, 1).to_pylist()[0]
    got = decode_tokens(row["tokens"], row["token_shape"], row["token_dtype"])
    want = lat[1].to(tdt).float().numpy()
    assert got.shape == (4, 5, 8, 8)
    np.testing.assert_array_equal(got.astype(np.float32), want)


def test_status_table_schema_and_nulls():
    """Status rows keep reason and message; missing optional fields become nulls."""
    t = _roundtrip(status_table([{"source": "/a.mp4", "status": "corrupt", "message": "bad", "num_windows": 0},
                                 {"source": "/b.mp4", "status": "ok", "message": "", "num_windows": 4,
                                  "source_size": 10},
                                 {"source": "/c.mp4", "status": "io_error", "final": False, "attempts": 6}], "r7"))
    assert t.schema.equals(STATUS_SCHEMA, check_metadata=False)
    assert t.column("status").to_pylist() == ["corrupt", "ok", "io_error"]
    assert t.column("source_size").to_pylist() == [None, 10, None]
    assert t.column("final").to_pylist() == [True, True, False] and t.column("attempts").to_pylist() == [None, None, 6]
    assert set(t.column("run_id").to_pylist()) == {"r7"} and len(set(t.column("committed_at").to_pylist())) == 1
