"""The cache index folded into hash buckets (`pipeline/frames/index.py`): every video's row exactly once for a reader
before, during (a consolidation killed at its commit or after it) and after consolidation; buckets grow with the
index; a reader opened on an older generation still finds every row; the resume scan agrees."""

from __future__ import annotations

import os

import pytest

from pipeline.frames import index as ix
from pipeline.frames.index import IndexView, bucket_of, consolidate, read_manifest
from pipeline.frames.store import load_cache_state, write_index
from pipeline.storage import OutputLayout


def _rows(ids, status="ok"):
    return [{"source": f"s3://b/v/{i:05d}.mp4", "status": status, "num_frames": i % 7 + 1, "size": 32,
             "format": "zstd", "frames_per_row": 8, "timestamps": [0.0], "indices": [0],
             "shards": [f"shards/part-{i}.parquet"], "rows": [0]} for i in ids]


def _commit(layout, ids, per_part=3):
    ids = list(ids)
    for k in range(0, len(ids), per_part):
        write_index(layout, _rows(ids[k:k + per_part]))


def _seen(layout) -> list[str]:
    """Every source a full scan of the index gives (duplicates kept)."""
    return [s for t in IndexView(layout).scan(["source"]) for s in t.column("source").to_pylist()]


def _check(layout, ids):
    want = sorted(f"s3://b/v/{i:05d}.mp4" for i in ids)
    assert sorted(_seen(layout)) == want  # each once
    view = IndexView(layout, max_buckets=2)
    for i in ids:
        r = view.lookup(f"s3://b/v/{i:05d}.mp4")
        assert r is not None and r["num_frames"] == i % 7 + 1, i
    assert view.lookup("s3://b/v/missing.mp4") is None and len(view._buckets) <= 2
    st = load_cache_state(layout)
    assert st.done == set(want) and st.duplicates == 0


def _parts(root) -> list[str]:
    return [n for n in os.listdir(os.path.join(root, "index")) if n.startswith("index-")]


def test_index_consolidates_grows_and_stays_exactly_once(tmp_path):
    """40 videos in parts -> buckets of ~8 rows (8 buckets), parts deleted; 8 more (same bucket count: only the
    touched buckets rewritten); 60 more (grown: rehashed into 16); retired files deleted one generation later."""
    root = str(tmp_path / "c")
    layout = OutputLayout(root)
    _commit(layout, range(40))
    _check(layout, range(40))
    out = consolidate(layout, rows_per_bucket=8)
    assert out["buckets"] == 8 and out["parts"] == 14 and out["videos"] == 40 and not _parts(root)
    m1 = read_manifest(layout)
    assert m1["covers"] == [] and len(m1["files"]) == 8
    _check(layout, range(40))
    rows = layout.read_table(layout.path(m1["files"][3]), ["source"]).column("source").to_pylist()
    assert rows == sorted(rows) and all(bucket_of(s, 8) == 3 for s in rows)

    _commit(layout, range(40, 43))  # one part: at most 3 buckets touched
    _check(layout, range(43))
    out = consolidate(layout, rows_per_bucket=8)
    m2 = read_manifest(layout)
    assert out["buckets"] == 8 and out["buckets_written"] <= 3 and m2["videos"] == 43
    assert sum(a != b for a, b in zip(m1["files"], m2["files"])) == out["buckets_written"]
    _check(layout, range(43))

    _commit(layout, range(43, 103))
    out = consolidate(layout, rows_per_bucket=8)
    m3 = read_manifest(layout)
    assert out["buckets"] == 16 and m3["videos"] == 103
    _check(layout, range(103))
    files = {f"index/{d}/{n}" for d in os.listdir(os.path.join(root, "index")) if d.startswith("g")
             for n in os.listdir(os.path.join(root, "index", d))}
    assert set(m3["files"]) <= files and not set(m2["retired"]) & files  # gen-1 retirees gone, gen-2's kept
    assert set(m3["retired"]) <= files


def test_index_reader_of_an_older_view_reopens(tmp_path):
    """A reader that listed the parts before a consolidation deleted them finds every row (it reopens)."""
    layout = OutputLayout(str(tmp_path / "c"))
    _commit(layout, range(20))
    view = IndexView(layout)
    consolidate(layout, rows_per_bucket=4)
    assert all(view.lookup(f"s3://b/v/{i:05d}.mp4") for i in range(20))
    assert view.manifest["generation"] == 1


@pytest.mark.parametrize("kill", ["before_commit", "after_commit"])
def test_index_consolidation_killed_at_its_commit(tmp_path, monkeypatch, kill):
    """Killed before the manifest is published (bucket files written, unnamed) or after it (covered parts not yet
    deleted): readers and the resume scan see every video once; the next consolidation completes."""
    root = str(tmp_path / "c")
    layout = OutputLayout(root)
    _commit(layout, range(30))
    consolidate(layout, rows_per_bucket=8)
    _commit(layout, range(30, 50))

    class Killed(BaseException):
        pass

    def die(*a, **k):
        raise Killed()

    if kill == "before_commit":
        real = layout.write_bytes
        monkeypatch.setattr(layout, "write_bytes", lambda rel, data: die() if rel == ix.MANIFEST else real(rel, data))
    else:
        monkeypatch.setattr(ix, "_delete", die)
    with pytest.raises(Killed):
        consolidate(layout, rows_per_bucket=8)
    monkeypatch.undo()
    assert _parts(root)  # the new parts are still there in both cases
    _check(layout, range(50))
    consolidate(layout, rows_per_bucket=8)
    assert not _parts(root)
    _check(layout, range(50))
