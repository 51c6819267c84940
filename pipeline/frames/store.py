"""The frames cache on storage: its layout, schemas, atomic commits and the resume state read back (pure, no Ray).

Layout under `output` (a local folder or an object-store prefix):

  shards/part-<sha1 of the (source, row) keys it holds>.parquet   frames: one row per `frames.frames_per_row`
        consecutive samples of one video (`SHARD_SCHEMA`), one Parquet row group per row, so a window reads one or
        two row groups; blobs stored uncompressed by Parquet (they are zstd / JPEG already)
  index/index-<sha1 of its sources>.parquet   one row per video (`INDEX_SCHEMA`): status, source identity
        (size, etag, mtime), frame count, every sample's timestamp and source frame index, and where each row of its
        frames lives (shard name, row number)
  index/_index.json, index/g<generation>/bucket-<b>-of-<B>.parquet   the parts folded into hash buckets at the end
        of each run, so a reader opens one small file per video (`pipeline/frames/index.py`: consolidation and
        the rule by which readers see every row exactly once)
  segments/<h[:2]>/<h>/rows-<first>-<stop>.parquet   the tokenize job's side output: the rows one segment of a long
        input owns (`SEGMENT_SCHEMA`), until the segment that completes them writes the video's index row
  summary.json, resolved_config.yaml, _job.json

Exactly once (the token shards' rule, `pipeline/tokenize/commit.py`): every file is published whole
(`pipeline.storage.write_bytes`: temp + rename, one PUT on object stores), shards first, then the index file that
names them: **the index is the commit point**. A video is cached once its index row exists; a re-run plans only the
videos no index row names (a finished cache: nothing to do). A task killed before its index commit leaves shards
no index names (never read; rewritten under the same name when the re-run groups the same videos, else orphaned
bytes: `summary.json` counts them as `orphan_shards`), and its videos are planned again — no frame is read twice
or missing. A permanent decode failure (`pipeline.decode.status.PERMANENT`) is an index row with its reason (final);
a transient one still failing after `retry.*` (`pipeline/frames/build.py`) writes nothing, so the next run tries
it again.
"""

from __future__ import annotations

import hashlib
import io
import logging
import posixpath
import time
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.storage import OutputLayout
from pipeline.tokenize.commit import keys_digest

log = logging.getLogger(__name__)

SHARD_SCHEMA = pa.schema([
    pa.field("source", pa.string(), nullable=False),
    pa.field("row", pa.int32(), nullable=False),  # row r holds samples [r * frames_per_row, ...) of the video
    pa.field("frames", pa.list_(pa.binary())),  # one blob per frame (pipeline/frames/codec.py)
    pa.field("timestamps", pa.list_(pa.float64())),  # seconds since the video's first frame
    pa.field("indices", pa.list_(pa.int64())),  # source frame indices (presentation order)
])

INDEX_SCHEMA = pa.schema([
    pa.field("source", pa.string(), nullable=False),
    pa.field("status", pa.string(), nullable=False),  # ok | a permanent reason (pipeline/decode/status.py)
    pa.field("message", pa.string()),
    pa.field("source_size", pa.int64()),
    pa.field("source_etag", pa.string()),
    pa.field("source_mtime", pa.float64()),
    pa.field("num_frames", pa.int32()),
    pa.field("size", pa.int32()),  # square side of the frames
    pa.field("format", pa.string()),  # zstd | jpeg
    pa.field("frames_per_row", pa.int32()),
    pa.field("timestamps", pa.list_(pa.float64())),
    pa.field("indices", pa.list_(pa.int64())),
    pa.field("shards", pa.list_(pa.string())),  # per row of frames: its shard (relative to the cache root)
    pa.field("rows", pa.list_(pa.int32())),  # per row of frames: its row (= row group) in that shard
    pa.field("committed_at", pa.float64()),
])


# A long input cut into segments by the tokenize job (its frames side output, `pipeline/tokenize/stages.py`): each
# segment task commits the frames rows it owns (those whose first sample lies in its sample range) as a segment part
# after their shards; whichever segment finds the parts covering every row assembles the video's index row (the
# commit point, as for a whole video). Segment parts are never read as index rows.
SEGMENT_SCHEMA = pa.schema([
    pa.field("source", pa.string(), nullable=False),
    pa.field("source_size", pa.int64()),
    pa.field("source_etag", pa.string()),
    pa.field("source_mtime", pa.float64()),
    pa.field("num_rows", pa.int32()),  # rows of the whole video
    pa.field("row", pa.int32()),  # one row of frames this segment owns
    pa.field("shard", pa.string()),
    pa.field("row_group", pa.int32()),
    pa.field("timestamps", pa.list_(pa.float64())),
    pa.field("indices", pa.list_(pa.int64())),
])


def segment_dir(source: str) -> str:
    h = hashlib.sha1(source.encode()).hexdigest()
    return f"segments/{h[:2]}/{h}"


def write_segment(layout: OutputLayout, rows: list[dict]) -> str:
    """Commit the owned rows (dicts of SEGMENT_SCHEMA, one video, consecutive rows) of one segment."""
    name = f"{segment_dir(rows[0]['source'])}/rows-{rows[0]['row']:08d}-{rows[-1]['row'] + 1:08d}.parquet"
    return layout.write_table(name, pa.Table.from_pylist(rows, schema=SEGMENT_SCHEMA))


def assemble_segments(layout: OutputLayout, source: str, frames) -> dict | None:
    """The index row of `source` (INDEX_SCHEMA, without `committed_at`) when its committed segment parts cover every
    row once, else None (other segments still to come)."""
    parts = layout.list(segment_dir(source))
    ranges = sorted((int(a), int(b)) for a, b in (posixpath.basename(p)[5:-8].split("-") for p in parts))
    if not ranges or ranges[0][0] != 0 or any(b != c for (_, b), (c, _) in zip(ranges, ranges[1:])):
        return None  # a gap in the names (`rows-<first>-<stop>`): parts are read only once they may cover all
    rows: dict[int, dict] = {}
    for p in parts:
        for r in layout.read_table(p).to_pylist():
            rows[r["row"]] = r
    n = next(iter(rows.values()))["num_rows"]
    if sorted(rows) != list(range(n)):
        return None
    ordered = [rows[k] for k in range(n)]
    first = ordered[0]
    times = [t for r in ordered for t in r["timestamps"]]
    return {"source": source, "status": "ok", "message": None,
            **{k: first[k] for k in ("source_size", "source_etag", "source_mtime")},
            "num_frames": len(times), "size": frames.size, "format": frames.format,
            "frames_per_row": frames.frames_per_row, "timestamps": times,
            "indices": [i for r in ordered for i in r["indices"]],
            "shards": [r["shard"] for r in ordered], "rows": [r["row_group"] for r in ordered]}


def cache_identity(fps: float, frames) -> dict:
    """What a cached frame means (`frames`: a `FramesConfig`); a later run into the same cache must not change it."""
    return {"fps": fps, "size": frames.size, "format": frames.format, "frames_per_row": frames.frames_per_row}


def cache_claim(layout: OutputLayout, fps: float, frames, source: str, append: bool):
    """The claim of a cache folder (`pipeline.job_record.OutputClaim`, kind `frames`), by the frames-cache job or the
    tokenize job's side output alike (either can go on with a cache the other started); not yet checked."""
    from pipeline.job_record import OutputClaim

    return OutputClaim(layout, "frames", cache_identity(fps, frames), source, append, data=("index", "shards"))


def shard_name(keys) -> str:
    return f"shards/part-{keys_digest(keys)}.parquet"


def index_name(sources) -> str:
    return f"index/index-{keys_digest((s, 0) for s in sources)}.parquet"


def write_shard(layout: OutputLayout, rows: list[dict]) -> str:
    """Commit one shard of frame rows (dicts of SHARD_SCHEMA); returns its relative name."""
    name = shard_name((r["source"], r["row"]) for r in rows)
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows, schema=SHARD_SCHEMA), buf, row_group_size=1, compression="none")
    layout.write_bytes(name, buf.getvalue())
    return name


def write_index(layout: OutputLayout, rows: list[dict]) -> str:
    """Commit the index rows (dicts of INDEX_SCHEMA) of a group of videos: the commit point of their frames."""
    now = time.time()
    name = index_name(r["source"] for r in rows)
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pylist([{**r, "committed_at": now} for r in rows], schema=INDEX_SCHEMA), buf,
                   compression="zstd")
    layout.write_bytes(name, buf.getvalue())
    return name


@dataclass
class CacheState:
    """What committed index files say: cached videos (ok), final failures, and shards no index row names."""

    done: set[str] = field(default_factory=set)  # sources with an index row (ok or a permanent failure)
    ok: int = 0
    frames: int = 0
    failures: dict[str, int] = field(default_factory=dict)  # reason -> videos
    duplicates: int = 0  # sources in two index rows (never written by the protocol; reported)
    orphan_shards: int = 0


def load_cache_state(layout: OutputLayout) -> CacheState:
    """Read the key columns of every index row (bucket files and uncovered parts: `pipeline/frames/index.py`) and
    the shard listing, to count orphans."""
    from pipeline.frames.index import IndexView

    st = CacheState()
    named: set[str] = set()
    for t in IndexView(layout).scan(["source", "status", "num_frames", "shards"]):
        for s, status, n, shards in zip(*(t.column(c).to_pylist() for c in ("source", "status", "num_frames",
                                                                               "shards"))):
            if s in st.done:
                st.duplicates += 1
                continue
            st.done.add(s)
            if status == "ok":
                st.ok += 1
                st.frames += n or 0
                named.update(shards or ())
            else:
                st.failures[status] = st.failures.get(status, 0) + 1
    root = layout.path("")
    st.orphan_shards = sum(1 for f in layout.list("shards") if f[len(root):].lstrip("/") not in named)
    if st.duplicates:
        log.error("%d videos appear in more than one index row under %s", st.duplicates, layout.url)
    return st
