"""The stored video index: a row gives back the probe's `ProbeInfo` exactly, and only for the same object."""

from __future__ import annotations

import dataclasses

import numpy as np

from pipeline.decode.index import VideoIndex, record_of
from pipeline.decode.probe import probe
from pipeline.storage import OutputLayout
from tests.decode.media import CASES, media  # noqa: F401  (session fixture)


def _same(a, b) -> list[str]:
    out = []
    for f in dataclasses.fields(a):
        x, y = getattr(a, f.name), getattr(b, f.name)
        ok = np.array_equal(x, y) if isinstance(x, np.ndarray) else (x == y or (x != x and y != y))
        if not ok or isinstance(x, np.ndarray) != isinstance(y, np.ndarray):
            out.append(f"{f.name}: probe {x!r} index {y!r}")
    return out


def test_index_rows_round_trip_the_matrix(media, tmp_path):  # noqa: F811
    """Every decode-matrix case, written to `_index/` and looked up, is the probe's `ProbeInfo` field by field."""
    idx = VideoIndex(OutputLayout(str(tmp_path / "out")))
    infos, ids = {}, []
    for name, m in media.items():
        if m.skipped:
            continue
        infos[str(m.path)] = probe(str(m.path))
        ids.append({"source": str(m.path), "source_size": m.path.stat().st_size, "source_etag": None,
                    "source_mtime": m.path.stat().st_mtime})
    for i in ids:
        idx.keep(i, infos[i["source"]])
    got = idx.lookup(ids)
    assert sorted(got) == sorted(infos)
    for src, info in infos.items():
        assert not _same(info, got[src]), (src, _same(info, got[src]))


def test_index_lookup_misses_changed_objects_and_newest_wins(media, tmp_path):  # noqa: F811
    """A row counts only for the same size / etag / mtime; a newer row of the same source replaces the older."""
    m = media["h264_mp4_24"]
    info = probe(str(m.path))
    ident = {"source": "s3://b/v.mp4", "source_size": 100, "source_etag": "e1", "source_mtime": 5.0}
    idx = VideoIndex(OutputLayout(str(tmp_path / "out")))
    assert idx.lookup([ident]) == {}  # no index yet
    idx.keep(ident, info)
    assert idx.lookup([ident])["s3://b/v.mp4"].num_packets == info.num_packets
    for change in ({"source_size": 101}, {"source_etag": "e2"}, {"source_mtime": 6.0}):
        assert idx.lookup([{**ident, **change}]) == {}, change
    assert "s3://b/v.mp4" in idx.lookup([{**ident, "source_etag": None, "source_mtime": None}])  # listing lacks them
    newer = dataclasses.replace(info, num_packets=info.num_packets + 1)
    idx.keep(ident, newer)
    assert idx.lookup([ident])["s3://b/v.mp4"].num_packets == info.num_packets + 1
    assert idx.lookup([{"source": "s3://b/other.mp4", "source_size": 1}]) == {}


def test_index_keyed_rows_find_keep_and_change(media, tmp_path):  # noqa: F811
    """A keyed row (one file per source, read without listing) is found for the same object only; keeping a new
    version replaces it; a batch `lookup` reads the same rows."""
    m = media["h264_rot90_mp4"]
    info = probe(str(m.path))
    ident = {"source": "s3://b/v.mp4", "source_size": 100, "source_etag": "e1", "source_mtime": 5.0}
    idx = VideoIndex.at(str(tmp_path / "idx"))
    assert idx.find(ident) is None
    idx.keep(ident, info)
    assert not _same(info, idx.find(ident)), _same(info, idx.find(ident))
    for change in ({"source_size": 101}, {"source_etag": "e2"}, {"source_mtime": 6.0}):
        assert idx.find({**ident, **change}) is None, change
    assert idx.find({"source": "s3://b/other.mp4", "source_size": 100}) is None
    newer = {**ident, "source_etag": "e2", "source_size": 200}
    idx.keep(newer, dataclasses.replace(info, num_packets=info.num_packets + 1))
    assert idx.find(ident) is None and idx.find(newer).num_packets == info.num_packets + 1
    assert idx.lookup([newer])["s3://b/v.mp4"].num_packets == info.num_packets + 1
    assert idx.lookup([ident]) == {}


def test_index_rows_of_older_versions_still_read(media, tmp_path):  # noqa: F811
    """A row written before the packet table existed reads back with an empty table (windows then decode through
    the container)."""
    import pyarrow as pa

    from pipeline.decode import packets
    from pipeline.decode.index import SCHEMA

    info = probe(str(media["h264_mp4_24"].path))
    ident = {"source": "x.mp4", "source_size": 1}
    old = pa.Table.from_pylist([record_of(ident, info)], schema=SCHEMA)
    old = old.drop_columns(["extradata", "pkt_pts", "pkt_pos", "pkt_size", "pkt_key"])
    layout = OutputLayout(str(tmp_path / "out"))
    idx = VideoIndex(layout)
    layout.write_table(idx._keyed("x.mp4"), old)
    got = idx.lookup([ident])["x.mp4"]
    assert got.num_packets == info.num_packets and len(got.pkt_pos) == 0 and not packets.usable(got)
    assert packets.usable(info)
