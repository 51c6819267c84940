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


def test_listing_s3_parallel_folders_equal_one_stream(s3_server, s3_bucket):
    """Listing the first-level folders in parallel gives the same objects as one stream: root objects first, then
    each folder in name order, each in S3's key order."""
    fs = s3_server.filesystem()
    names = ["top.mp4", "a/1.mp4", "a/2.mp4", "a/b/3.mp4", "c/4.mp4", "d/5.mkv", "d/6.txt", "e/"]
    for n in names:
        fs.pipe(f"{s3_bucket}/v/{n}", b"" if n.endswith("/") else b"v")
    one = _all(iter_inputs(f"s3://{s3_bucket}/v", extensions=EXTS, storage_options=s3_server.storage_options,
                           threads=1)).column("source").to_pylist()
    par = _all(iter_inputs(f"s3://{s3_bucket}/v", extensions=EXTS, storage_options=s3_server.storage_options,
                           threads=3)).column("source").to_pylist()
    want = [f"s3://{s3_bucket}/v/{n}" for n in ["top.mp4", "a/1.mp4", "a/2.mp4", "a/b/3.mp4", "c/4.mp4", "d/5.mkv"]]
    assert par == want and sorted(one) == sorted(want)
    single = _all(iter_inputs(f"s3://{s3_bucket}/v/c/4.mp4", extensions=EXTS, storage_options=s3_server.storage_options))
    assert single.column("source").to_pylist() == [f"s3://{s3_bucket}/v/c/4.mp4"]
    with pytest.raises(FileNotFoundError, match="neither a file nor a folder"):
        _all(iter_inputs(f"s3://{s3_bucket}/nothing", extensions=EXTS, storage_options=s3_server.storage_options))


def test_listing_manifest_glob_and_s3_inventory(s3_server, s3_bucket):
    """A glob of S3 Inventory Parquet files is read file by file: bucket + key -> s3:// URL, size, ETag, mtime."""
    import datetime

    fs = s3_server.filesystem()
    when = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
    for i in range(2):
        t = pa.table({"bucket": ["media"] * 2, "key": [f"v/{i}a.mp4", f"v/{i}b.mp4"], "size": [10 + i, 20 + i],
                      "e_tag": ["e1", "e2"], "last_modified_date": pa.array([when, when], pa.timestamp("ms", "UTC"))})
        with fs.open(f"{s3_bucket}/inv/data/part-{i}.parquet", "wb") as f:
            pq.write_table(t, f)
    fs.pipe(f"{s3_bucket}/inv/data/manifest.json", b"{}")
    t = _all(iter_inputs(f"s3://{s3_bucket}/inv/data/*.parquet", extensions=EXTS,
                         storage_options=s3_server.storage_options))
    assert t.column("source").to_pylist() == ["s3://media/v/0a.mp4", "s3://media/v/0b.mp4", "s3://media/v/1a.mp4",
                                              "s3://media/v/1b.mp4"]
    assert t.column("source_size").to_pylist() == [10, 20, 11, 21] and t.column("source_etag").to_pylist()[0] == "e1"
    assert t.column("source_mtime").to_pylist()[0] == when.timestamp()
