"""Benchmark (b): peak driver and worker memory of the tokenize job for N and 10·N inputs (goal: flat).

Each size runs the real job (`jobs/tokenize_corpus.py`, private local Ray) in a child process; a sampler reads
/proc every 0.2 s: peak RSS of the driver, and peak RSS of the largest Ray worker (decode tasks, tokenizer actor,
writers) and of all processes below the driver together (shared object-store pages count once per process).

    .venv/bin/python benchmarks/pipeline_memory.py [--n 6] [--size 64]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from proctree import descendants, proc_kb  # noqa: E402


def _rss_mb(pid: int) -> float:
    return proc_kb(pid, "VmRSS", "status") / 1024


def run_once(n: int, size: int, root: Path) -> dict:
    from pipeline.decode.synth import write_synthetic_video

    corpus = root / f"in{n}"
    corpus.mkdir(parents=True)
    for i in range(n):
        write_synthetic_video(corpus / f"c{i:04d}.mp4", num_frames=12 * 24, fps=24, size=(320, 240), gop=48)
    ray_tmp = tempfile.mkdtemp(prefix="vtm", dir="/tmp")  # short: AF_UNIX socket paths; removed below
    env = dict(os.environ, OMP_NUM_THREADS="1", VIDTOK_RAY_TMP=ray_tmp)
    proc = subprocess.Popen([sys.executable, str(REPO / "jobs/tokenize_corpus.py"), f"input={corpus}",
                             f"output={root / f'out{n}'}", f"decode.size={size}", "tokenizer.batch_size=4",
                             "decode_task.inputs_per_task=1", "ray.object_store_mb=512"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak = {"driver_mb": 0.0, "largest_worker_mb": 0.0, "all_below_driver_mb": 0.0}
    done = threading.Event()

    def sample():
        while not done.is_set():
            kids = [_rss_mb(p) for p in descendants(proc.pid)]
            peak["driver_mb"] = max(peak["driver_mb"], _rss_mb(proc.pid))
            peak["largest_worker_mb"] = max(peak["largest_worker_mb"], max(kids, default=0.0))
            peak["all_below_driver_mb"] = max(peak["all_below_driver_mb"], sum(kids))
            time.sleep(0.2)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    t = time.time()
    out, _ = proc.communicate()
    done.set()
    th.join()
    shutil.rmtree(ray_tmp, ignore_errors=True)
    if proc.returncode != 0:
        raise SystemExit(out[-3000:])
    s = json.loads((root / f"out{n}" / "summary.json").read_text())
    return {"inputs": n, "windows": s["windows_this_run"], "wall_s": round(time.time() - t, 1),
            **{k: round(v, 1) for k, v in peak.items()}}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=6)
    ap.add_argument("--size", type=int, default=64)
    a = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="mem_bench"))
    try:
        print(json.dumps([run_once(a.n, a.size, root), run_once(10 * a.n, a.size, root)], indent=2))
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
