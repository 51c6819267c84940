"""Benchmark (c): planning + resume over a synthetic 1,000,000-row manifest with half of it already done.

No decoding and no Ray: it times exactly what the driver does before the chain starts — read the key columns of the
committed status and token shards (`load_resume_state`), stream the manifest and write the plan of pending inputs
(`write_plan`). The measurement runs in a fresh child process so its peak RSS excludes the data generation.

    .venv/bin/python benchmarks/plan_resume.py [--rows 1000000] [--dir /tmp/plan_bench]
Goal: <= 60 s and <= 2 GB peak memory.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def generate(root: Path, rows: int) -> None:
    """Manifest of `rows` paths; status rows for the first half; 2 token rows for each done input plus 1 committed
    window (of 3) for 1% of the pending half (partially done inputs)."""
    from pipeline.storage import OutputLayout
    from pipeline.tokenize.schema import status_table

    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    paths = np.array([f"s3://bucket/videos/{i // 1000:04d}/clip_{i:08d}.mp4" for i in range(rows)], dtype=object)
    pq.write_table(pa.table({"path": paths, "size": np.full(rows, 1 << 20)}), root / "manifest.parquet")
    lay = OutputLayout(str(root / "out"))
    half, step = rows // 2, 50_000
    for s in range(0, half, step):
        src = paths[s:s + step]
        lay.write_table(f"status/status-{s:08d}.parquet", status_table(
            [{"source": x, "status": "ok", "num_windows": 2} for x in src], "bench"))
        tok = np.repeat(src, 2)
        lay.write_table(f"tokens/part-{s:08d}.parquet", pa.table({
            "source": tok, "window_index": pa.array(np.tile([0, 1], len(src)), pa.int32()),
            "num_windows": pa.array(np.full(len(tok), 2), pa.int32()),
            "tokens": pa.array([[1, 2, 3, 4]] * len(tok), pa.list_(pa.int32()))}))
    partial = paths[half::100]
    lay.write_table("tokens/part-partial.parquet", pa.table({
        "source": partial, "window_index": pa.array(np.zeros(len(partial)), pa.int32()),
        "num_windows": pa.array(np.full(len(partial), 3), pa.int32()),
        "tokens": pa.array([[1, 2, 3, 4]] * len(partial), pa.list_(pa.int32()))}))


def measure(root: Path) -> dict:
    from pipeline.inputs import iter_inputs
    from pipeline.storage import OutputLayout
    from pipeline.tokenize.commit import load_resume_state, write_plan

    t0 = time.time()
    lay = OutputLayout(str(root / "out"))
    state = load_resume_state(lay)
    t1 = time.time()
    plan = write_plan(lay, iter_inputs(str(root / "manifest.parquet"), extensions=[".mp4"]), state, "bench")
    t2 = time.time()
    return {"resume_state_s": round(t1 - t0, 2), "plan_s": round(t2 - t1, 2), "total_s": round(t2 - t0, 2),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "inputs_listed": plan.total_inputs, "done": plan.skipped_done, "pending": plan.pending,
            "partial": sum(1 for v in state.partial.values()), "plan_files": len(plan.files)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--dir", default="/tmp/plan_bench")
    ap.add_argument("--measure-only", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    root = Path(a.dir)
    if a.measure_only:
        print(json.dumps(measure(root)))
        return
    t = time.time()
    generate(root, a.rows)
    print(f"generated {a.rows} rows in {time.time() - t:.1f} s under {root}", file=sys.stderr)
    out = subprocess.run([sys.executable, __file__, "--dir", str(root), "--measure-only"], capture_output=True,
                         text=True, check=True)
    print(out.stdout.strip())
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
