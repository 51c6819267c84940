"""Benchmark (a): end-to-end windows/s of the tokenize job vs the standalone throughput of its slowest stage.

One run, same machine, same settings: (1) the encoder alone — `TokenizeClips` in this process on decoded-size
windows, torch on one thread like one CPU actor (or the GPU when there is one); (2) decode alone — `decode_windows`
over the corpus in this process, times the decode slots the job has (CPUs left after the tokenizer actors);
(3) the whole job (`run_tokenize`, private local Ray). Ratio = job windows/s ÷ min(stage throughputs). Goal ≥ 0.85.

    .venv/bin/python benchmarks/pipeline_throughput.py [--clips 16] [--size 128] [--cpus N]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clips", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=12.0)  # 36 samples at 3 FPS -> 2 windows of 17
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--cpus", type=int, default=os.cpu_count())
    ap.add_argument("--preset", default="vidtok_fsq_causal_488_32768_tiny")
    a = ap.parse_args()

    import torch

    from pipeline.config import load_config
    from pipeline.decode import DecodeConfig, decode_windows
    from pipeline.decode.synth import write_synthetic_video
    from pipeline.tokenize.schema import windows_from_frames
    from pipeline.tokenize.stages import TokenizeClips
    from pipeline.tokenize.config import TokenizeJobConfig
    from pipeline.tokenize.run import run_tokenize

    torch.set_num_threads(1)
    root = Path(tempfile.mkdtemp(prefix="tp_bench"))
    files = []
    for i in range(a.clips):
        p = root / "in" / f"c{i:03d}.mp4"
        p.parent.mkdir(parents=True, exist_ok=True)
        write_synthetic_video(p, num_frames=round(a.seconds * 30), fps=30, size=(320, 240), gop=60)
        files.append(p)
    cuda = torch.cuda.is_available()
    actors = 1
    batch = 8 if cuda else 4
    dcfg = DecodeConfig(fps=3.0, size=a.size, num_frames=17)

    # (2) decode alone
    t = time.time()
    nwin = sum(len(decode_windows(str(f), dcfg).windows) for f in files)
    decode_wps_1 = nwin / (time.time() - t)
    slots = max(1, a.cpus - (0 if cuda else actors))
    decode_wps = decode_wps_1 * slots

    # (1) the encoder alone
    tk = TokenizeClips(a.preset, None, "random-init-seed-0", 0, "auto", "float16")
    frames = np.random.default_rng(0).integers(0, 256, (batch, 17, a.size, a.size, 3), dtype=np.uint8)
    table = windows_from_frames(frames)
    tk(table)  # warm-up
    t, n = time.time(), 0
    while time.time() - t < 20 or n < 2 * batch:
        tk(table)
        n += batch
    encode_wps = n / (time.time() - t) * actors

    # (3) the job
    cfg = load_config(TokenizeJobConfig, None, [
        f"input={root / 'in'}", f"output={root / 'out'}", f"decode.size={a.size}", f"tokenizer.batch_size={batch}",
        f"ray.num_cpus={a.cpus}", f"preset={a.preset}", "decode_task.inputs_per_task=1"])
    s = run_tokenize(cfg)
    job_wps = s["windows_this_run"] / s["pipeline_time_s"]
    slowest = min(decode_wps, encode_wps)
    print(json.dumps({
        "windows": s["windows_this_run"], "device": "cuda" if cuda else "cpu", "cpus": a.cpus, "size": a.size,
        "decode_wps_per_process": round(decode_wps_1, 3), "decode_slots": slots, "decode_wps": round(decode_wps, 3),
        "encode_wps": round(encode_wps, 3), "slowest_stage": "decode" if decode_wps < encode_wps else "encode",
        "job_wps": round(job_wps, 3), "job_pipeline_s": s["pipeline_time_s"], "job_wall_s": s["wall_time_s"],
        "ratio_job_to_slowest": round(job_wps / slowest, 3)}, indent=2))
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
