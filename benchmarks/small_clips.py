"""Benchmark: per-input overhead of the tokenize job on many small clips, and driver memory against the input count.

    .venv/bin/python benchmarks/small_clips.py [--clips 2000] [--small 500] [--seconds 1.0] [--cpus 2]

Corpus: `--clips` synthetic clips of `--seconds` s (64x48, 24 fps). At 1 s and 3 FPS a clip has 3 samples, fewer
than one 17-frame window, so every input ends as a `too_short` status row: no tokenizer work, the job is pure
per-input cost (Ray task, read, probe, decode in the isolated child, status commit). `--seconds 6.5` gives one
window per clip instead (then the CPU encoder dominates on a machine without a GPU).

Measured in the same run, each in a fresh child process (own Ray, own peak RSS):
  1. decode alone: `decode_windows` over the same files in one process, times the decode slots the job has
     (`--cpus` minus the one CPU the tokenizer actor reserves); measured before and after the jobs, the faster of
     the two used (the stricter ratio);
  2. the job on `--small` clips and on all `--clips`: inputs/s of its pipeline (Ray is started before the clock),
     and the driver's peak RSS (sampled every 50 ms).
Ratio = job inputs/s / decode-alone inputs/s (goal >= 0.85); the marginal ratio takes the run's fixed start-up out
(extra inputs of the `--clips` run over its extra time, against decode alone) and `fixed_start_s` is that start-up;
memory: peak RSS at `--clips` / at `--small` (flat ~ 1).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def make(folder: Path, n: int, seconds: float) -> list[Path]:
    from pipeline.decode.synth import write_synthetic_video

    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        p = folder / f"c{i:05d}.mp4"
        if not p.exists():
            write_synthetic_video(p, num_frames=max(1, round(seconds * 24)), fps=24.0, size=(64, 48), gop=24)
        out.append(p)
    return out


def child_decode(folder: Path) -> dict:
    from pipeline.decode import DecodeConfig, decode_windows

    files = sorted(folder.glob("*.mp4"))
    cfg = DecodeConfig(fps=3.0, size=32, num_frames=17)
    decode_windows(str(files[0]), cfg)  # start the isolated child before the clock, as a warm decode task has
    t0 = time.perf_counter()
    statuses = [decode_windows(str(f), cfg).status for f in files]
    dt = time.perf_counter() - t0
    return {"inputs": len(files), "seconds": dt, "inputs_per_s": len(files) / dt, "statuses": sorted(set(statuses))}


def child_job(folder: Path, out: Path, cpus: int, extra: list[str]) -> dict:
    from pipeline.config import load_config
    from pipeline.ray_utils import init_ray
    from pipeline.tokenize.config import TokenizeJobConfig
    from pipeline.tokenize.run import run_tokenize

    init_ray("local", num_cpus=cpus, object_store_memory=512 << 20)
    peak = {"mb": _rss_mb()}
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak["mb"] = max(peak["mb"], _rss_mb())
            time.sleep(0.05)

    threading.Thread(target=sample, daemon=True).start()
    cfg = load_config(TokenizeJobConfig, None, [f"input={folder}", f"output={out}", "decode.size=32",
                                                "tokenizer.num_gpus=0", f"ray.num_cpus={cpus}", *extra])
    s = run_tokenize(cfg)
    stop.set()
    return {"inputs": s["inputs_this_run"], "pipeline_s": s["pipeline_time_s"], "wall_s": s["wall_time_s"],
            "inputs_per_s": s["inputs_this_run"] / s["pipeline_time_s"], "failures": s["failures_this_run"],
            "windows": s["windows_this_run"], "driver_peak_rss_mb": round(peak["mb"], 1)}


def _run_child(*args: str) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=int, default=2000)
    ap.add_argument("--small", type=int, default=500)
    ap.add_argument("--seconds", type=float, default=1.0)
    ap.add_argument("--cpus", type=int, default=2)
    ap.add_argument("--dir", default=None)
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    ap.add_argument("job_args", nargs="*", help="extra key=value overrides for the job (e.g. decode_task.inputs_per_task=8)")
    a = ap.parse_args()
    if a.child:
        kind, *rest = a.child
        if kind == "decode":
            print(json.dumps(child_decode(Path(rest[0]))))
        else:
            print(json.dumps(child_job(Path(rest[0]), Path(rest[1]), int(rest[2]), rest[3:])))
        return
    root = Path(a.dir or tempfile.mkdtemp(prefix="small-clips-"))
    t0 = time.time()
    files = make(root / "all", a.clips, a.seconds)
    small = root / "small"
    small.mkdir(exist_ok=True)
    for f in files[: a.small]:
        if not (small / f.name).exists():
            os.symlink(f, small / f.name)
    print(f"{a.clips} clips of {a.seconds} s in {root} ({time.time() - t0:.0f} s); load average {os.getloadavg()}")
    dec = _run_child("decode", str(root / "all"))
    slots = max(1, a.cpus - 1)  # the tokenizer actor reserves one CPU
    runs = {}
    for name, folder in (("small", small), ("all", root / "all")):
        out = root / f"out-{name}-{time.time_ns()}"
        runs[name] = _run_child("job", str(folder), str(out), str(a.cpus), *a.job_args)
    dec_after = _run_child("decode", str(root / "all"))  # decode alone again: it varies run to run on a shared machine
    dec = {**dec, "inputs_per_s_runs": [round(dec["inputs_per_s"], 1), round(dec_after["inputs_per_s"], 1)],
           "inputs_per_s": max(dec["inputs_per_s"], dec_after["inputs_per_s"])}  # the faster one: the stricter ratio
    ratio = runs["all"]["inputs_per_s"] / (dec["inputs_per_s"] * slots)
    # per-input cost without the run's fixed start-up: the extra inputs of the big run over its extra time
    extra_s = runs["all"]["pipeline_s"] - runs["small"]["pipeline_s"]
    marginal = (runs["all"]["inputs"] - runs["small"]["inputs"]) / extra_s if extra_s > 0 else float("nan")
    fixed_s = runs["small"]["pipeline_s"] - runs["small"]["inputs"] / marginal if extra_s > 0 else float("nan")
    print(json.dumps({"clips": a.clips, "small": a.small, "seconds": a.seconds, "cpus": a.cpus, "job_args": a.job_args,
                      "decode_alone": dec, "decode_slots": slots, "job_small": runs["small"], "job_all": runs["all"],
                      "ratio_job_to_decode_alone": round(ratio, 3),
                      "marginal_inputs_per_s": round(marginal, 1),
                      "marginal_ratio_to_decode_alone": round(marginal / (dec["inputs_per_s"] * slots), 3),
                      "fixed_start_s": round(fixed_s, 2),
                      "driver_rss_all_over_small": round(runs["all"]["driver_peak_rss_mb"]
                                                         / runs["small"]["driver_peak_rss_mb"], 3),
                      "load_average_end": os.getloadavg()}, indent=2))


if __name__ == "__main__":
    main()
