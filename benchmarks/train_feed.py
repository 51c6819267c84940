"""Feed benchmark: can the data path keep a GPU busy? Cache path vs source path, in one run.

The real ingest — a rank's `pipeline.train.stream.RankStream` (Ray Data decode tasks of
`pipeline.train.data.build_train_dataset`, in the fixed training order, no mixing, prefetch 4) — into one `TorchTrainer`
worker that stands in for a GPU: it consumes each batch by sleeping `batch / rate` seconds (a GPU step leaves the CPU
free, so does a sleep), for `--seconds` after its first batch. Reported per scenario: the data wait (share of that time
the worker waited for a batch), clips/s delivered, and CPU-seconds per clip over the same span (start-up excluded: /proc
sampled every 0.5 s) of every Ray process (decode tasks and their decode children, Ray's own daemons, the worker: an
upper bound on the decode CPU), and the same net of the idle local Ray's CPU (measured for 10 s before the scenarios).

Rates (clips/s a GPU consumes) = peak bf16 TFLOPS × MFU / TFLOP per training clip. TFLOP per clip from
`benchmarks/model_flops.py` (encode + decode forward counted on the meta device, ×3 for the backward, plus LPIPS and
the discriminator): about 14 TFLOP per stage-1 clip (17×128²) and 44 per stage-2 clip (17×256²) (docs/frames_cache.md). At 45 %
MFU: A100 (312 TFLOPS) 10.0 and 3.2 clips/s; H100 SXM (989 TFLOPS) 31.8 and 10.1 — `--mfu`, `--tflop-s1/-s2` change them.

Resources: a private local Ray with `1 + --decode-cpus` logical CPUs, the worker reserving 1 and one decode task
per decode CPU (`decode_task.concurrency`): "one decode CPU per simulated GPU" by default. Clips: `--videos` copies
(links) of a 10 s 1280×720 30 fps texture clip (`benchmarks/frames_cache.py --clip texture`, the pessimistic case for
cache bytes), cached at 256² zstd (the default) before the scenarios run; stage 1 reads 128² (downscaled from the
cache, decoded at 128² on the source path), stage 2 256². The machine is shared: the load average is printed.

    python benchmarks/train_feed.py [--seconds 40] [--scenarios cache:1:a100,source:1:a100] [--decode-cpus 1]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

PEAK = {"a100": 312.0, "h100": 989.0}


def consume_loop(config: dict) -> None:
    """The stand-in GPU: wait for a batch, 'train' on it for batch / rate seconds, count."""
    import numpy as np

    from pipeline.train.order import Cursor, TrainOrder
    from pipeline.train.setup import TrainRun
    from pipeline.train.stream import RankStream

    cfg = config["cfg"]  # batch_size: config["batch"]
    stream = RankStream(TrainRun.of(cfg), TrainOrder(cfg.seed, 0, 1, cfg.batch_size, 1, 0), Cursor(), config["urls"])
    rate, seconds = config["rate"], config["seconds"]
    waited = busy = 0.0
    clips = 0
    start = None
    t = time.perf_counter()
    for b in stream:
        b = {"video": np.stack(b.clips)}
        now = time.perf_counter()
        n = int(b["video"].shape[0])
        if start is None:  # the first batch: start-up (Ray Data plan, worker start), not steady state
            start = now
        else:
            waited += now - t
            clips += n
        step = n / rate
        time.sleep(step)
        if clips:
            busy += step
        t = time.perf_counter()
        if start is not None and t - start >= seconds:
            break
    import json

    t_start = time.time() - (t - start if start is not None else 0.0)
    Path(config["out"]).write_text(json.dumps({"waited": waited, "busy": busy, "clips": clips,
                                               "elapsed": t - (start or t), "shape": list(b["video"].shape),
                                               "t_start": t_start, "t_end": time.time()}))


def ray_cpu_seconds(include_self: bool = False) -> float:
    """CPU seconds (user + system, with reaped children's) of every live process under this one (the local Ray;
    the decode child processes), and of this process when `include_self`."""
    from benchmarks.proctree import descendants

    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in descendants(os.getpid()) + ([os.getpid()] if include_self else []):
        try:
            f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])) / tick  # utime stime cutime cstime
        except (OSError, IndexError, ValueError):
            pass
    return total


def scenario(name: str, urls, cache: str, args, idle_cpu_s: float = 0.0) -> dict:
    import ray.train
    from ray.train.torch import TorchTrainer

    from pipeline.config import load_config
    from pipeline.train.config import TrainConfig

    path, stage, gpu = name.split(":")
    stage = int(stage)
    tflop = args.tflop_s1 if stage == 1 else args.tflop_s2
    rate = PEAK[gpu] * args.mfu / tflop
    size = 128 if stage == 1 else 256
    batch = args.batch
    steps = int(rate * (args.seconds + 60) / batch) + 4
    cfg = load_config(TrainConfig, None, [f"steps={steps}", f"batch_size={batch}", "num_workers=1",
                                          f"decode.size={size}", "data.shuffle_buffer_clips=0", "data.prefetch_batches=4", "seed=23",
                                          f"decode_task.concurrency={args.decode_cpus}", "decode_task.num_cpus=1",
                                          f"output={args.workdir}"]
                      + ([f"data.frames={cache}"] if path == "cache" else []))
    samples: list[tuple[float, float]] = []  # (time, Ray CPU seconds): the steady state's CPU, start-up excluded
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            samples.append((time.time(), ray_cpu_seconds()))
            stop.wait(0.5)
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out = Path(args.workdir) / f"feed_{path}_{stage}_{gpu}_{os.getpid()}.json"  # same machine: a local file
    trainer = TorchTrainer(consume_loop, train_loop_config={"rate": rate, "batch": batch, "seconds": args.seconds,
                                                            "out": str(out), "cfg": cfg, "urls": list(urls)},
                           scaling_config=ray.train.ScalingConfig(num_workers=1, use_gpu=False,
                                                                  resources_per_worker={"CPU": 1}),
                           run_config=ray.train.RunConfig(storage_path=args.workdir + "/ray_results",
                                                          name=f"feed_{path}_{stage}_{gpu}_{int(time.time())}"))
    try:
        trainer.fit()
    finally:
        stop.set()
        sampler.join()
    m = json.loads(out.read_text())
    inside = [s for s in samples if m["t_start"] <= s[0] <= m["t_end"]]
    wall = inside[-1][0] - inside[0][0] if len(inside) > 1 else 0.0
    cpu = inside[-1][1] - inside[0][1] if len(inside) > 1 else 0.0
    clips = m["clips"] * wall / m["elapsed"] if m["elapsed"] else 0  # clips consumed within the sampled span
    total = m["waited"] + m["busy"]
    return {"scenario": name, "rate": rate, "size": size, "wait": m["waited"] / total if total else 1.0,
            "clips_s": m["clips"] / m["elapsed"] if m["elapsed"] else 0.0, "clips": m["clips"],
            "cpu_s_per_clip": cpu / max(clips, 1e-9),
            "net_cpu_s_per_clip": max(0.0, cpu - idle_cpu_s * wall) / max(clips, 1e-9),
            "wall": wall, "load": os.getloadavg()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=40.0, help="measured time per scenario (after the first batch)")
    ap.add_argument("--scenarios", default="cache:1:a100,source:1:a100",
                    help="path:stage:gpu, comma separated (path cache|source, stage 1|2, gpu a100|h100)")
    ap.add_argument("--decode-cpus", type=int, default=1, help="decode CPUs (= concurrent decode tasks)")
    ap.add_argument("--batch", type=int, default=4, help="clips per batch the worker takes")
    ap.add_argument("--videos", type=int, default=8)
    ap.add_argument("--mfu", type=float, default=0.45)
    ap.add_argument("--tflop-s1", type=float, default=14.0)
    ap.add_argument("--tflop-s2", type=float, default=44.0)
    ap.add_argument("--workdir", default="/tmp/vidtok-bench")
    args = ap.parse_args()

    import ray

    from benchmarks.frames_cache import make_texture_clip
    from pipeline.decode import DecodeConfig
    from pipeline.frames.build import cache_videos
    from pipeline.frames.config import FramesConfig
    from pipeline.ray_utils import init_ray
    from pipeline.storage import OutputLayout

    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    clip = make_texture_clip(work, 10)
    tmp = Path(tempfile.mkdtemp(prefix="feed-", dir=work))
    urls = []
    for i in range(args.videos):
        os.symlink(clip, tmp / f"v{i:03d}.mp4")
        urls.append(str(tmp / f"v{i:03d}.mp4"))
    cache = str(tmp / "cache")
    t0, c0 = time.perf_counter(), ray_cpu_seconds(include_self=True)
    cache_videos([{"source": u} for u in urls], OutputLayout(cache), DecodeConfig(), FramesConfig())
    build_cpu = ray_cpu_seconds(include_self=True) - c0
    print(f"cache built: {args.videos} videos × 30 samples at 256² zstd in {time.perf_counter() - t0:.1f} s wall, "
          f"{build_cpu:.1f} CPU-s ({build_cpu / args.videos / 10:.3f} CPU-s per second of 720p video); "
          f"{sum(f.stat().st_size for f in Path(cache).rglob('*.parquet')) / 2**20:.1f} MiB")
    init_ray("local", num_cpus=1 + args.decode_cpus, object_store_memory=1 << 30,
             temp_dir=tempfile.mkdtemp(prefix="ray-", dir="/tmp"))
    ray.data.DataContext.get_current().enable_progress_bars = False
    time.sleep(5)
    c0, t0 = ray_cpu_seconds(), time.perf_counter()
    time.sleep(10)  # Ray's daemons' own CPU with nothing running: subtracted for the net figure
    idle = (ray_cpu_seconds() - c0) / (time.perf_counter() - t0)
    print(f"idle local Ray: {idle:.3f} CPU", flush=True)
    rows = []
    try:
        for name in args.scenarios.split(","):
            r = scenario(name.strip(), urls, cache, args, idle)
            rows.append(r)
            print(f"{r['scenario']:16} rate {r['rate']:5.1f} clips/s at {r['size']}²: data wait {r['wait'] * 100:5.1f} %, "
                  f"{r['clips_s']:5.2f} clips/s, {r['cpu_s_per_clip']:.3f} CPU-s per clip (net of idle Ray "
                  f"{r['net_cpu_s_per_clip']:.3f}; {r['clips']} clips; "
                  f"load average {r['load'][0]:.1f})", flush=True)
    finally:
        ray.shutdown()
    print(f"\n{'scenario':16} {'rate':>6} {'wait %':>7} {'clips/s':>8} {'CPU-s/clip':>11} {'net':>6}   "
          f"({args.decode_cpus} decode CPU, {os.cpu_count()} cores, load average now {os.getloadavg()})")
    for r in rows:
        print(f"{r['scenario']:16} {r['rate']:6.1f} {r['wait'] * 100:7.1f} {r['clips_s']:8.2f} {r['cpu_s_per_clip']:11.3f} "
              f"{r['net_cpu_s_per_clip']:6.3f}")


if __name__ == "__main__":
    main()
