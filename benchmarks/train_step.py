"""Training-step benchmark: seconds per step, clips/s per worker, and (with --ray) the data-wait fraction of a real
Ray Train run fed by the streaming decode pipeline.

    python benchmarks/train_step.py --preset vidtok_fsq_causal_488_32768_tiny --size 128 --batch 2 --steps 5
    python benchmarks/train_step.py --preset vidtok_fsq_causal_488_32768 --size 128 --batch 1 --steps 2   # full, CPU
    python benchmarks/train_step.py --ray --preset vidtok_fsq_causal_488_32768_tiny --size 32 --steps 30

Step mode times `vidtok.train_step.train_step` alone (generator + discriminator updates, GAN on, LPIPS with a random
backbone unless --no-lpips) on one process: median of the timed steps after --warmup. On CUDA it uses bf16 autocast
and reports peak memory. Ray mode runs `pipeline.train.run.run_training` (tiny schedule, 2 workers, local storage) on the
sample corpus and prints the steady-state data-wait fraction the workers reported.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time

import torch


def bench_step(args) -> dict:
    from vidtok import VidTok
    from vidtok.losses import LossConfig, VidTokLoss
    from vidtok.train_step import OptimConfig, TrainEngine, TrainState, make_optimizers, train_step

    device = torch.device("cuda" if torch.cuda.is_available() and not args.cpu else "cpu")
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = VidTok.from_config(args.preset)
    loss = VidTokLoss(LossConfig(perceptual_weight=0.0 if args.no_lpips else 1.0, lpips_random_backbone=True,
                                 disc_start=0))
    engine = TrainEngine(model, loss, freeze_encoder=args.stage == 2).to(device)
    opt = OptimConfig()
    oa, od = make_optimizers(engine, opt)
    st = TrainState()
    T = model.default_num_frames
    x = (torch.rand(args.batch, 3, T, args.size, args.size, device=device) * 2 - 1)
    autocast = torch.bfloat16 if device.type == "cuda" else None
    times = []
    for i in range(args.warmup + args.steps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        train_step(engine, oa, od, x, st, opt, autocast)  # returns floats: already synchronised
        if i >= args.warmup:
            times.append(time.perf_counter() - t)
    med = statistics.median(times)
    out = {"preset": args.preset, "stage": args.stage, "device": str(device), "batch": args.batch, "frames": T,
           "size": args.size, "lpips": not args.no_lpips, "step_s_median": med, "clips_per_s": args.batch / med,
           "steps_timed": len(times), "params_M": sum(p.numel() for p in model.parameters()) / 1e6}
    if device.type == "cuda":
        out["peak_mem_GiB"] = torch.cuda.max_memory_allocated() / 2**30
        out["gpu"] = torch.cuda.get_device_name()
    else:
        out["threads"] = args.threads
    return out


def bench_ray(args) -> dict:
    from pipeline.config import load_config
    from pipeline.train.run import run_training
    from pipeline.train.config import TrainConfig

    out_dir = tempfile.mkdtemp(prefix="vt-bench-")
    cfg = load_config(TrainConfig, None, [
        f"preset={args.preset}", f"steps={args.steps}", f"decode.size={args.size}", f"batch_size={2 * args.batch}",
        "num_workers=2", f"output={out_dir}", f"checkpoint_every={args.steps}", "val_every=0",
        f"log_every={max(1, args.steps // 3)}", "export=false", f"use_gpu={torch.cuda.is_available() and not args.cpu}"])
    t = time.perf_counter()
    summary = run_training(cfg)
    m = summary.metrics
    return {"preset": args.preset, "mode": "ray", "workers": 2, "per_worker_batch": args.batch, "size": args.size,
            "steps": args.steps, "wall_s": time.perf_counter() - t,
            "data_wait_frac_steady": m.get("data_wait_frac"), "clips_per_s_per_worker": m.get("clips_per_s_per_worker"),
            "step_s_last_window": m.get("step_s"), "data_wait_s_last_window": m.get("data_wait_s")}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="vidtok_fsq_causal_488_32768_tiny")
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--batch", type=int, default=1, help="clips per step (per worker in --ray mode)")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--stage", type=int, default=1, choices=(1, 2))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--no-lpips", action="store_true")
    p.add_argument("--cpu", action="store_true", help="force CPU even when CUDA is available")
    p.add_argument("--ray", action="store_true", help="measure a Ray Train run (data-wait fraction) instead")
    args = p.parse_args()
    print(json.dumps(bench_ray(args) if args.ray else bench_step(args), indent=2))


if __name__ == "__main__":
    main()
