"""The cache index at 10^6 videos: hash buckets, consolidated at the end of each run (pure: no Ray).

A task commits its group's index rows as one small part (`pipeline/frames/store.py`: the commit point), so a run of
10^6 videos at `videos_per_task=8` leaves 125 k parts. Reading all of them in every training process (the first
reader did) costs minutes of listing and reads and the whole index in memory per process. So at the end of a run the
job folds the parts into hash buckets:

  index/index-<sha1>.parquet               parts: one per committed group (written by the tasks)
  index/_index.json                        the manifest: generation, bucket count B, the file of each bucket,
                                           `covers` (parts already folded in), `retired` (files of the last
                                           generation no longer used), videos
  index/g<generation>/bucket-<b>-of-<B>.parquet   every index row whose source hashes to b (`bucket_of`), sorted by
                                           source; ~`ROWS_PER_BUCKET` rows (B a power of two)

Exactly once for readers: a reader (`IndexView.open`) reads the manifest, lists the parts, reads the manifest again
and starts over if its generation changed; its rows are the buckets' plus those of listed parts the manifest does not
cover. `consolidate` writes the new buckets (unseen until the manifest names them), publishes the manifest (one
atomic write: the commit point), then deletes the covered parts and the files the previous generation retired. A
reader thus sees a part or the bucket holding its rows, never both (covered parts are skipped), never neither
(parts are deleted only after the manifest covering them is published, and a reader whose listing may have missed
them saw the generation change). A reader of an older generation still finds its bucket files: they are deleted only
one generation later; if it is slower than that, a missing bucket file makes it reopen the index. Killed at any line,
consolidation leaves either the old manifest (the new bucket files unnamed, overwritten by the next try) or the new
one (parts it covers skipped by readers, deleted by the next consolidation). One cache job at a time per output.

A lookup reads one bucket file (~4096 rows of the key columns); a reader keeps at most `max_buckets` of them, so its
memory is bounded by configuration, not by the number of videos. Figures: `benchmarks/frames_index.py`,
docs/frames_cache.md.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import posixpath
import shutil
import tempfile
from collections import OrderedDict

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.storage import OutputLayout

log = logging.getLogger(__name__)

MANIFEST = "index/_index.json"
ROWS_PER_BUCKET = 4096  # rows per bucket file a consolidation aims at (a lookup reads one file of about this many)
KEY_COLUMNS = ["source", "status", "num_frames", "size", "format", "frames_per_row", "shards", "rows"]
READ_THREADS = 16  # files read at once (an object store answers each in ~10-30 ms: reads overlap)
_SPILL_ROWS = 16384  # rows read into memory before they are split into the buckets' local spill files


def bucket_of(source: str, buckets: int) -> int:
    """The bucket of `source` among `buckets` (stable across processes and runs: sha1, not Python's hash)."""
    return int.from_bytes(hashlib.sha1(source.encode()).digest()[:8], "big") % buckets


def _empty_manifest() -> dict:
    return {"generation": 0, "buckets": 0, "files": [], "covers": [], "retired": [], "videos": 0}


def read_manifest(layout: OutputLayout) -> dict:
    text = layout.read_text(MANIFEST)
    return json.loads(text) if text else _empty_manifest()


class IndexView:
    """The index rows of a cache at one moment: bucket files of one manifest generation + the parts it does not
    cover. `lookup` reads one bucket (LRU of `max_buckets`); `scan` reads every file, a table at a time."""

    def __init__(self, layout: OutputLayout, max_buckets: int = 8):
        self.layout, self.max_buckets = layout, max_buckets
        self._buckets: OrderedDict[int, dict] = OrderedDict()
        self._part_rows: dict[str, dict] | None = None
        self.reload()

    def reload(self) -> None:
        """Manifest, listing, manifest again: a consistent view (module docstring)."""
        for _ in range(10):
            m = read_manifest(self.layout)
            listed = self.layout.list("index")
            if read_manifest(self.layout)["generation"] == m["generation"]:
                break
        else:
            raise RuntimeError(f"the index of {self.layout.url} changed 10 times while being opened")
        covers = set(m["covers"])
        self.manifest = m
        self.parts = [p for p in listed if posixpath.basename(p) not in covers]
        self.covered = [p for p in listed if posixpath.basename(p) in covers]
        self._buckets.clear()
        self._part_rows = None

    @property
    def empty(self) -> bool:
        return not self.parts and not self.manifest["videos"]

    def lookup(self, source: str) -> dict | None:
        """The key columns (`KEY_COLUMNS`) of `source`'s index row, or None."""
        for _ in range(10):
            try:
                return self._lookup(source)
            except FileNotFoundError as e:  # a consolidation since this view was opened deleted the parts it had
                # listed, or (a generation later) its bucket files: open the index again (module docstring)
                log.info("frames index of %s changed (%s): reopening", self.layout.url, e)
                self.reload()
        raise RuntimeError(f"the index of {self.layout.url} changed 10 times during one lookup")

    def _lookup(self, source: str) -> dict | None:
        if self._part_rows is None:  # parts since the last consolidation: few (none in a finished cache)
            rows = {}
            for p in self.parts:
                for r in self.layout.read_table(p, KEY_COLUMNS).to_pylist():
                    rows[r["source"]] = r
            self._part_rows = rows
        if source in self._part_rows:
            return self._part_rows[source]
        n = self.manifest["buckets"]
        if not n:
            return None
        b = bucket_of(source, n)
        rows = self._buckets.get(b)
        if rows is None:
            rows = self._load_bucket(b)
        self._buckets.move_to_end(b)
        return rows.get(source)

    def _load_bucket(self, b: int) -> dict:
        t = self.layout.read_table(self.layout.path(self.manifest["files"][b]), KEY_COLUMNS)
        rows = {r["source"]: r for r in t.to_pylist()}
        self._buckets[b] = rows
        while len(self._buckets) > self.max_buckets:
            self._buckets.popitem(last=False)
        return rows

    def files(self) -> list[str]:
        """Every file holding index rows: the buckets, then the uncovered parts (paths on the layout's fs)."""
        return [self.layout.path(f) for f in self.manifest["files"]] + self.parts

    def scan(self, columns=None):
        """Each file's table (the `columns` it has), in order, `READ_THREADS` read at once."""
        yield from read_many(self.layout, self.files(), columns)


def read_many(layout: OutputLayout, paths: list[str], columns=None):
    """`layout.read_table` of each path, in order, `READ_THREADS` at a time (at most 4x that many held)."""
    from concurrent.futures import ThreadPoolExecutor

    step = 4 * READ_THREADS
    with ThreadPoolExecutor(READ_THREADS) as pool:
        for i in range(0, len(paths), step):
            yield from pool.map(lambda p: layout.read_table(p, columns), paths[i:i + step])


def consolidate(layout: OutputLayout, rows_per_bucket: int = ROWS_PER_BUCKET, spill_dir: str | None = None) -> dict:
    """Fold the uncovered parts into the buckets (module docstring); returns what it did. Memory: one part and one
    bucket at a time plus `_SPILL_ROWS` rows; the new rows wait in local spill files."""
    view = IndexView(layout)
    old = view.manifest
    out = {"parts": len(view.parts), "generation": old["generation"], "buckets": old["buckets"],
           "buckets_written": 0, "videos": old["videos"], "duplicates": 0}
    if not view.parts:
        _delete(layout, view.covered)
        return out
    first = layout.read_table(view.parts[0], ["source"]).num_rows
    estimate = old["videos"] + first * len(view.parts)
    n = max(old["buckets"], 1 << max(0, (max(1, -(-estimate // rows_per_bucket)) - 1).bit_length()))
    rebucket = n != old["buckets"]  # grown: every old bucket is rehashed
    gen = old["generation"] + 1
    tmp = tempfile.mkdtemp(prefix="vidtok-index-", dir=spill_dir)
    try:
        spill = _Spill(tmp, n)
        for t in read_many(layout, view.parts + ([layout.path(f) for f in old["files"]] if rebucket else [])):
            spill.add(t)
        spill.close()
        files = list(old["files"]) if not rebucket else [None] * n
        retired = list(old["files"]) if rebucket else []
        videos = 0 if rebucket else old["videos"]
        for b in sorted(spill.touched):
            tables = [spill.read(b)]
            if not rebucket and files[b]:
                tables.append(layout.read_table(layout.path(files[b])))
                videos -= tables[-1].num_rows
                retired.append(files[b])
            t, dups = _merge(tables)
            out["duplicates"] += dups
            videos += t.num_rows
            name = f"index/g{gen:06d}/bucket-{b:05d}-of-{n:05d}.parquet"
            buf = pa.BufferOutputStream()
            pq.write_table(t, buf, compression="zstd", row_group_size=1024)
            layout.write_bytes(name, buf.getvalue().to_pybytes())
            files[b] = name
            out["buckets_written"] += 1
        for b in range(n):  # a bucket no row hashes to: an empty file, so every bucket has one
            if files[b] is None:
                name = f"index/g{gen:06d}/bucket-{b:05d}-of-{n:05d}.parquet"
                buf = pa.BufferOutputStream()
                pq.write_table(spill.schema.empty_table(), buf)
                layout.write_bytes(name, buf.getvalue().to_pybytes())
                files[b] = name
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    covers = [posixpath.basename(p) for p in view.parts + view.covered]
    manifest = {"generation": gen, "buckets": n, "files": files, "covers": covers, "retired": retired,
                "videos": videos}
    layout.write_bytes(MANIFEST, (json.dumps(manifest) + "\n").encode())  # the commit point
    _delete(layout, view.parts + view.covered)
    _delete(layout, [layout.path(f) for f in set(old.get("retired", ())) - set(files)])
    # the parts are gone: the manifest no longer needs to name them (a reader that listed them read the
    # covering manifest first: IndexView.reload keeps the covers of its first read)
    layout.write_bytes(MANIFEST, (json.dumps({**manifest, "covers": []}) + "\n").encode())
    out.update(generation=gen, buckets=n, videos=videos)
    log.info("frames index: %d parts folded into generation %d (%d of %d buckets written, %d videos)",
             out["parts"], gen, out["buckets_written"], n, videos)
    return out


def _delete(layout: OutputLayout, paths: list[str]) -> None:
    """Remove files (paths on the layout's fs), 1000 per call (one bulk DeleteObjects request on S3)."""
    for i in range(0, len(paths), 1000):
        chunk = paths[i:i + 1000]

        def rm():
            try:
                layout.fs.rm(chunk)
            except FileNotFoundError:  # a retried call: some are gone already
                for p in chunk:
                    if layout.fs.exists(p):
                        layout.fs.rm(p)
        layout.call(rm, f"delete {len(chunk)} files under {layout.url}")


def _merge(tables: list[pa.Table]) -> tuple[pa.Table, int]:
    """One bucket's rows: one per source (the newest commit), sorted by source; returns (table, rows dropped)."""
    schema = tables[0].schema
    t = pa.concat_tables([x.select(schema.names).cast(schema) for x in tables])
    if not t.num_rows:
        return t, 0
    t = t.sort_by([("source", "ascending"), ("committed_at", "descending")])
    src = t.column("source").to_pylist()
    keep = [i for i in range(len(src)) if i == 0 or src[i] != src[i - 1]]
    dups = len(src) - len(keep)
    if dups:
        log.error("frames index: %d duplicate index rows (kept the newest of each source)", dups)
        t = t.take(pa.array(keep, pa.int64()))
    return t, dups


class _Spill:
    """Rows split by bucket into local Arrow IPC stream files, `_SPILL_ROWS` rows at a time (sorted by bucket, then
    one slice per bucket)."""

    def __init__(self, folder: str, buckets: int):
        self.folder, self.n = folder, buckets
        self.pending: list[pa.Table] = []
        self.rows = 0
        self.writers: dict[int, pa.ipc.RecordBatchStreamWriter] = {}
        self.touched: set[int] = set()
        self.schema: pa.Schema | None = None

    def add(self, t: pa.Table) -> None:
        if self.schema is None:
            self.schema = t.schema
        self.pending.append(t.select(self.schema.names).cast(self.schema))
        self.rows += t.num_rows
        if self.rows >= _SPILL_ROWS:
            self._flush()

    def _flush(self) -> None:
        if not self.rows:
            return
        import numpy as np

        t = pa.concat_tables(self.pending).combine_chunks()
        self.pending, self.rows = [], 0
        keys = np.fromiter((bucket_of(s, self.n) for s in t.column("source").to_pylist()), np.int64, t.num_rows)
        order = np.argsort(keys, kind="stable")
        t, keys = t.take(pa.array(order)), keys[order]
        bounds = np.flatnonzero(np.diff(keys)) + 1
        for lo, hi in zip(np.r_[0, bounds], np.r_[bounds, len(keys)]):
            b = int(keys[lo])
            if b not in self.writers:
                self.writers[b] = pa.ipc.new_stream(os.path.join(self.folder, f"{b}.arrow"), self.schema)
            self.writers[b].write_table(t.slice(lo, hi - lo))
            self.touched.add(b)

    def close(self) -> None:
        self._flush()
        for w in self.writers.values():
            w.close()

    def read(self, b: int) -> pa.Table:
        with pa.ipc.open_stream(os.path.join(self.folder, f"{b}.arrow")) as r:
            return r.read_all()
