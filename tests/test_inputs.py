"""Input listing: prefixes (local, s3 through a real S3 server) and manifests (CSV, Parquet, JSONL, VidTok meta)."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.inputs import iter_inputs

EXTS = [".mp4", ".mkv"]


def _all(chunks) -> pa.Table:
    return pa.concat_tables(list(chunks))


def test_listing_local_prefix_recursive_filtered_sorted(tmp_path):
    """Nested folders are listed recursively, only video extensions kept, in a deterministic order, in chunks."""
    for rel in ["b/2.mp4", "b/1.MKV", "a.mp4", "notes.txt", "c/d/e.mp4", "c/x.jpg"]:
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x" * 7)
    chunks = list(iter_inputs(str(tmp_path), extensions=EXTS, chunk_rows=2))
    assert [c.num_rows for c in chunks] == [2, 2]
    t = _all(chunks)
    names = [s[len(str(tmp_path)) + 1:] for s in t.column("source").to_pylist()]
    assert names == ["a.mp4", "b/1.MKV", "b/2.mp4", "c/d/e.mp4"]
    assert set(t.column("source_size").to_pylist()) == {7}
    assert all(m and m > 0 for m in t.column("source_mtime").to_pylist())


def test_listing_s3_prefix_streams_pages(s3_server, s3_bucket):
    """An s3:// prefix with more than one listing page is listed completely, with size and ETag, nothing outside."""
    fs = s3_server.filesystem()
    for i in range(1005):  # > 1000: crosses a list_objects_v2 page
        fs.pipe(f"{s3_bucket}/vids/{i:05d}.mp4", b"v")
    fs.pipe(f"{s3_bucket}/vids/readme.txt", b"t")
    fs.pipe(f"{s3_bucket}/vids2/outside.mp4", b"o")
    t = _all(iter_inputs(f"s3://{s3_bucket}/vids", extensions=EXTS, storage_options=s3_server.storage_options,
                         chunk_rows=500))
    src = t.column("source").to_pylist()
    assert len(src) == 1005 and src[0] == f"s3://{s3_bucket}/vids/00000.mp4" and src == sorted(src)
    assert all(e for e in t.column("source_etag").to_pylist()) and set(t.column("source_size").to_pylist()) == {1}


def test_listing_manifests_csv_parquet_jsonl(tmp_path):
    """All manifest formats give the same inputs; relative paths resolve against data_dir or the manifest folder."""
    paths = ["/abs/a.mp4", "rel/b.mp4", "s3://bkt/c.mp4"]
    (tmp_path / "m.csv").write_text("path,size\n" + "\n".join(f"{p},{i}" for i, p in enumerate(paths)) + "\n")
    pq.write_table(pa.table({"path": paths}), tmp_path / "m.parquet")
    (tmp_path / "m.jsonl").write_text("\n".join(json.dumps({"path": p}) for p in paths) + "\n")
    want = ["/abs/a.mp4", str(tmp_path / "rel/b.mp4"), "s3://bkt/c.mp4"]
    for name in ["m.csv", "m.parquet", "m.jsonl"]:
        t = _all(iter_inputs(str(tmp_path / name), extensions=EXTS))
        assert t.column("source").to_pylist() == want, name
    assert _all(iter_inputs(str(tmp_path / "m.csv"), extensions=EXTS)).column("source_size").to_pylist() == [0, 1, 2]
    t = _all(iter_inputs(str(tmp_path / "m.csv"), extensions=EXTS, data_dir="s3://bkt/root"))
    assert t.column("source").to_pylist()[1] == "s3://bkt/root/rel/b.mp4"


def test_listing_vidtok_meta_csv_videos_column(tmp_path):
    """VidTok's meta CSV (a `videos` column, relative to the data dir) is accepted as it is."""
    (tmp_path / "meta.csv").write_text("videos,caption\nclips/x.mp4,a cat\nclips/y.mp4,a dog\n")
    t = _all(iter_inputs(str(tmp_path / "meta.csv"), extensions=EXTS, data_dir="/data"))
    assert t.column("source").to_pylist() == ["/data/clips/x.mp4", "/data/clips/y.mp4"]


def test_listing_errors_name_the_fix(tmp_path):
    """A manifest without the path column and a missing prefix fail with messages that say what to do."""
    (tmp_path / "m.csv").write_text("file\nx.mp4\n")
    with pytest.raises(ValueError, match="manifest_column"):
        _all(iter_inputs(str(tmp_path / "m.csv"), extensions=EXTS))
    with pytest.raises(FileNotFoundError, match="neither a file nor a folder"):
        _all(iter_inputs(str(tmp_path / "nope"), extensions=EXTS))
