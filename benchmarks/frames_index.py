"""The frames-cache index at 10^6 videos: finding one video's row (a training reader) and the resume scan (the cache
job's plan), before and after folding the parts into hash buckets (`pipeline/frames/index.py`), in one run.

    python benchmarks/frames_index.py                       # 10^6 videos, 8 per part (125 k parts), local disk
    python benchmarks/frames_index.py --videos 100000 --folder /tmp/idx

A synthetic index (no decoding): `--videos` rows of `INDEX_SCHEMA` (`--samples` timestamps each, two rows of
frames) in parts of `--per-part` rows, as `videos_per_task` tasks commit them. Each measurement runs in a fresh
process (time, and peak RSS above the interpreter's after imports):

* before, lookup: the first reader (`FramesCache` until this change): list `index/`, read the key columns of every
  part into one dict, then look the video up;
* before, resume scan: `load_cache_state` as it was: list and read `source, status, num_frames, shards` of every part;
* consolidate: what the job now does once at the end of a run (parts -> buckets);
* after, lookup: `FramesCache(url).entry(source)`: manifest, listing, one bucket file; then 200 more lookups of
  random videos (median, a bucket read each while they miss the `MAX_BUCKETS` kept);
* after, resume scan: `load_cache_state` over the bucket files.

Ratios before / after are printed at the end. Local disk only: on an object store every file read is a request
(~10-30 ms), so the file counts printed are what decide there.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def source_of(i: int) -> str:
    return f"s3://corpus/videos/part-{i // 1000:05d}/clip-{i:08d}.mp4"


def build(folder: str, videos: int, per_part: int, samples: int) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipeline.frames.store import INDEX_SCHEMA

    os.makedirs(os.path.join(folder, "index"), exist_ok=True)
    ts = [k / 3.0 for k in range(samples)]
    ix = [k * 10 for k in range(samples)]
    template = pa.Table.from_pylist([{
        "source": "x", "status": "ok", "message": None, "source_size": 10 << 20, "source_etag": "e" * 32,
        "source_mtime": 1.7e9, "num_frames": samples, "size": 256, "format": "zstd", "frames_per_row": 32,
        "timestamps": ts, "indices": ix, "shards": ["shards/part-x.parquet"] * 2, "rows": [0, 1],
        "committed_at": 1.7e9} for _ in range(per_part)], schema=INDEX_SCHEMA)
    si, hi = INDEX_SCHEMA.get_field_index("source"), INDEX_SCHEMA.get_field_index("shards")
    for p in range(-(-videos // per_part)):
        ids = range(p * per_part, min(videos, (p + 1) * per_part))
        t = template.slice(0, len(ids))
        t = t.set_column(si, INDEX_SCHEMA.field("source"), pa.array([source_of(i) for i in ids], pa.string()))
        t = t.set_column(hi, INDEX_SCHEMA.field("shards"), pa.array(
            [[f"shards/part-{p:07d}.parquet"] * 2 for _ in ids], pa.list_(pa.string())))
        pq.write_table(t, os.path.join(folder, "index", f"index-{p:010d}.parquet"), compression="zstd")


def case(name: str, folder: str, videos: int) -> dict:
    """One measurement, in this (fresh) process."""
    from pipeline.frames.index import consolidate
    from pipeline.frames.read import FramesCache
    from pipeline.frames.store import load_cache_state
    from pipeline.storage import OutputLayout

    import pyarrow.parquet  # noqa: F401  (in the baseline RSS: every case uses it)

    rng = random.Random(0)
    probe = source_of(rng.randrange(videos))
    base = _rss_mb()
    t0 = time.perf_counter()
    out: dict = {}
    if name == "before_lookup":
        layout = OutputLayout(folder)
        cols = ["source", "status", "num_frames", "size", "format", "frames_per_row", "shards", "rows"]
        entries = {}
        files = layout.list("index")
        for f in files:
            for r in layout.read_table(f, cols).to_pylist():
                if r["status"] == "ok":
                    entries[r["source"]] = (r["num_frames"], r["size"], r["format"], r["frames_per_row"],
                                            tuple(r["shards"]), tuple(r["rows"]))
        assert probe in entries
        out["files_read"] = len(files)
    elif name == "before_resume":
        layout = OutputLayout(folder)
        done, files = set(), layout.list("index")
        for f in files:
            t = layout.read_table(f, ["source", "status", "num_frames", "shards"])
            done.update(t.column("source").to_pylist())
        layout.list("shards")
        assert len(done) == videos
        out["files_read"] = len(files)
    elif name == "consolidate":
        out.update(consolidate(OutputLayout(folder)))
    elif name == "after_lookup":
        cache = FramesCache(folder)
        assert cache.entry(probe) is not None
        out["files_read"] = 1 + len(cache.index.parts)
        out["first_s"] = time.perf_counter() - t0
        times = []
        for _ in range(200):
            s = source_of(rng.randrange(videos))
            t1 = time.perf_counter()
            assert cache.entry(s) is not None
            times.append(time.perf_counter() - t1)
        out["lookup_median_ms"] = 1000 * sorted(times)[len(times) // 2]
    elif name == "after_resume":
        st = load_cache_state(OutputLayout(folder))
        assert len(st.done) == videos and not st.duplicates
        from pipeline.frames.index import IndexView

        out["files_read"] = len(IndexView(OutputLayout(folder)).files())
    out["seconds"] = time.perf_counter() - t0
    out["rss_mb"] = _rss_mb() - base
    return out


def run_case(name: str, folder: str, videos: int) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                                        os.environ.get("PYTHONPATH", "")])}
    res = subprocess.run([sys.executable, __file__, "--case", name, "--folder", folder, "--videos", str(videos)],
                         capture_output=True, text=True, env=env, check=True)
    out = json.loads(res.stdout.strip().splitlines()[-1])
    print(f"{name:14s} {json.dumps(out)}", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--videos", type=int, default=1_000_000)
    ap.add_argument("--per-part", type=int, default=8, help="videos per index part (the job's videos_per_task)")
    ap.add_argument("--samples", type=int, default=60, help="3 FPS samples per video (60: 20 s)")
    ap.add_argument("--folder", default=None, help="where the synthetic cache goes (default: a temp folder)")
    ap.add_argument("--case", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.case:
        print(json.dumps(case(a.case, a.folder, a.videos)))
        return
    folder = a.folder or tempfile.mkdtemp(prefix="vidtok-frames-index-")
    t0 = time.perf_counter()
    build(folder, a.videos, a.per_part, a.samples)
    print(f"synthetic index: {a.videos} videos in {-(-a.videos // a.per_part)} parts under {folder} "
          f"({time.perf_counter() - t0:.0f} s to write); load average {os.getloadavg()}", flush=True)
    r = {n: run_case(n, folder, a.videos) for n in ("before_lookup", "before_resume", "consolidate", "after_lookup",
                                                   "after_resume")}
    b, f = r["before_lookup"], r["after_lookup"]
    print(f"\nfind one video's row (a reader's first lookup): {b['seconds']:.1f} s -> {f['first_s']:.3f} s "
          f"({b['seconds'] / f['first_s']:.0f}x less), peak RSS {b['rss_mb']:.0f} MB -> {f['rss_mb']:.0f} MB "
          f"({b['rss_mb'] / max(f['rss_mb'], 1):.1f}x less), files read {b['files_read']} -> {f['files_read']}; "
          f"later lookups {f['lookup_median_ms']:.1f} ms median")
    b, f = r["before_resume"], r["after_resume"]
    print(f"resume scan: {b['seconds']:.1f} s -> {f['seconds']:.1f} s ({b['seconds'] / f['seconds']:.1f}x), "
          f"peak RSS {b['rss_mb']:.0f} MB -> {f['rss_mb']:.0f} MB, files {b['files_read']} -> "
          f"{f['files_read']}")
    print(f"consolidation (once per run): {r['consolidate']['seconds']:.1f} s, peak RSS "
          f"{r['consolidate']['rss_mb']:.0f} MB, {r['consolidate']['buckets']} buckets; load average "
          f"{os.getloadavg()}")


if __name__ == "__main__":
    main()
