"""Hand-run benchmark: VidTok encode / decode seconds per clip and peak memory for one preset.

    .venv/bin/python benchmarks/model_speed.py [PRESET] [--frames 17] [--size 256] [--runs 3] [--threads 2]

Random weights (timing does not depend on them). CPU: float32, peak memory = process peak RSS
(resource.getrusage, includes the weights and Python). CUDA (when present): bf16 autocast like the README,
peak memory = torch.cuda.max_memory_allocated per phase. Reports the median of `--runs` timed runs after
`--warmup` untimed ones, and two ratios measured in the same run: decode/encode time, and the cost of
the v1.1 temporal tiling path (t_chunk_enc=16, the README setting) relative to whole-clip encoding when the preset
is v1.1 (skipped otherwise).
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time

import torch

from vidtok import VidTok


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time(fn, runs: int, warmup: int, device: torch.device) -> tuple[float, list[float], object]:
    """(median seconds, all timed runs, output of the last call)."""
    for _ in range(warmup):
        fn()
    times, out = [], None
    for _ in range(runs):
        _sync(device)
        t0 = time.perf_counter()
        out = fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times, out


def _peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("preset", nargs="?", default="vidtok_fsq_causal_488_32768")
    ap.add_argument("--frames", type=int, default=None, help="default: 17 causal, 16 non-causal")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=None, help="default: 1 on CUDA, 0 on CPU")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    warmup = args.warmup if args.warmup is not None else (1 if device.type == "cuda" else 0)
    model = VidTok.from_config(args.preset).eval().to(device)
    T = args.frames or model.default_num_frames
    x = (torch.rand(1, 3, T, args.size, args.size, generator=torch.Generator().manual_seed(0)) * 2 - 1).to(device)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else torch.autocast(
        "cpu", enabled=False)
    precision = "bf16 autocast" if device.type == "cuda" else "fp32"
    n_params = sum(p.numel() for p in model.parameters())
    print(f"preset {args.preset} ({n_params / 1e6:.2f} M params), clip 1x3x{T}x{args.size}x{args.size}, "
          f"{device} {precision}, threads {args.threads}, runs {args.runs} (+{warmup} warm-up)", flush=True)

    with torch.inference_mode(), autocast:
        def enc():
            return model.encode(x)

        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        t_enc, all_enc, out = _time(enc, args.runs, warmup, device)
        mem_enc = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else _peak_rss_gib()
        latents = out.latents

        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        t_dec, all_dec, _ = _time(lambda: model.decode(latents), args.runs, warmup, device)
        mem_dec = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else _peak_rss_gib()

        mem_label = "peak CUDA allocated" if device.type == "cuda" else "peak RSS (process, cumulative)"
        print(f"encode: {t_enc:.3f} s/clip (median; runs {[round(t, 3) for t in all_enc]}), {mem_label} "
              f"{mem_enc:.2f} GiB")
        print(f"decode: {t_dec:.3f} s/clip (median; runs {[round(t, 3) for t in all_dec]}), {mem_label} "
              f"{mem_dec:.2f} GiB")
        print(f"latent {tuple(latents.shape)}; ratio decode/encode = {t_dec / t_enc:.2f}x")
        if model.is_v1_1:
            model.use_tiling, model.t_chunk_enc = True, 16
            t_tiled, _, _ = _time(enc, args.runs, warmup, device)
            model.use_tiling = False
            print(f"baseline: v1.1 tiled encode (t_chunk_enc=16) {t_tiled:.3f} s/clip = {t_tiled / t_enc:.2f}x "
                  "whole-clip encode")
    return 0


if __name__ == "__main__":
    sys.exit(main())
