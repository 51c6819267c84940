"""pipeline/storage.py: the one URL rule, fresh listings on object stores, atomic writes, local copies."""

from __future__ import annotations

import os

import pytest

from pipeline import storage
from pipeline.retry import RetryPolicy
from pipeline.storage import OutputLayout, is_remote, join, local_copy, read_text, url_to_fs, write_bytes


def test_storage_is_remote_and_join_follow_one_rule(tmp_path):
    """Plain paths and file:// are local (joined as absolute paths); anything else with a scheme is remote."""
    assert not is_remote("out/x") and not is_remote("/a/b") and not is_remote("file:///a/b")
    assert is_remote("s3://b/k") and is_remote("gs://b/k") and is_remote("memory://x")
    assert join("s3://b/p/", "a", "b.txt") == "s3://b/p/a/b.txt"
    assert join("rel", "x") == os.path.join(os.getcwd(), "rel", "x")
    assert join("file:///data", "x") == "/data/x"
    assert url_to_fs("file:///data/x")[1] == "/data/x"


def test_storage_write_bytes_is_atomic_locally(tmp_path, monkeypatch):
    """A write that fails before its rename leaves neither the target nor a temp file; a good one replaces."""
    target = tmp_path / "d" / "f.json"
    write_bytes(str(target), b"old")

    def boom(src, dst):
        raise OSError("disk gone")

    monkeypatch.setattr(storage.os, "replace", boom)
    with pytest.raises(OSError, match="disk gone"):  # an OSError counts as transient: retried once, at once
        write_bytes(str(target), b"new", retry=RetryPolicy(attempts=2, base_s=0))
    monkeypatch.undo()
    assert target.read_bytes() == b"old" and os.listdir(target.parent) == ["f.json"]
    write_bytes(str(target), b"new")
    assert read_text(str(target)) == "new" and os.listdir(target.parent) == ["f.json"]


def test_storage_s3_listing_is_never_stale(s3_server, s3_bucket):
    """An object written after a first listing shows up in the next one (resume depends on it)."""
    opts = s3_server.storage_options
    lay = OutputLayout(f"s3://{s3_bucket}/out", opts)
    lay.write_bytes("tokens/a.parquet", b"1")
    assert [os.path.basename(p) for p in lay.list("tokens")] == ["a.parquet"]
    OutputLayout(f"s3://{s3_bucket}/out", opts).write_bytes("tokens/b.parquet", b"2")  # another writer
    assert [os.path.basename(p) for p in lay.list("tokens")] == ["a.parquet", "b.parquet"]
    assert read_text(f"s3://{s3_bucket}/out/tokens/b.parquet", opts) == "2"
    assert read_text(f"s3://{s3_bucket}/out/missing", opts) is None


def test_storage_local_copy_of_remote_and_local(s3_server, s3_bucket, tmp_path):
    """A remote object becomes a local temp file with its bytes; a local path is returned as it is (absolute)."""
    opts = s3_server.storage_options
    write_bytes(f"s3://{s3_bucket}/ck/w.ckpt", b"weights", opts)
    copy = local_copy(f"s3://{s3_bucket}/ck/w.ckpt", opts)
    assert open(copy, "rb").read() == b"weights" and copy.endswith("w.ckpt")
    (tmp_path / "w.ckpt").write_bytes(b"x")
    assert local_copy(str(tmp_path / "w.ckpt")) == str(tmp_path / "w.ckpt")
    assert storage.sha256_of(copy) == storage.sha256_of(f"s3://{s3_bucket}/ck/w.ckpt", opts)
