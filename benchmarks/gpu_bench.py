"""One-shot GPU benchmark of the tokenizer: encoder windows/s, peak memory and MFU in bf16 and fp32, plus one stage-1
and one stage-2 training step. Needs only torch + omegaconf (no Ray).

    python benchmarks/gpu_bench.py --out gpu_bench.json                 # on a GPU machine, the full figures
    python benchmarks/gpu_bench.py --cpu-smoke --out /tmp/smoke.json    # whole script, tiny presets, CPU, < 1 min

Encoder (per preset, per precision, per batch in --batches): `VidTok.encode` on (B, 3, 17, 256, 256) random windows
under `torch.inference_mode` (bf16: `torch.autocast("cuda", dtype=torch.bfloat16)`; fp32: no autocast, cuDNN's
default TF32 convolutions), `--warmup` untimed calls then `--iters` timed ones; windows/s = B * iters / seconds,
peak memory = `torch.cuda.max_memory_allocated` of that configuration, MFU = encode FLOPs per window
(`benchmarks/model_flops.count_flops`, 2 FLOPs per multiply-add) * windows/s / peak FLOP/s. Peak FLOP/s comes from
--peak-tflops-bf16 / --peak-tflops-fp32, else a table of dense peaks by GPU name (an assumption, printed).
cuDNN autotuning (`vidtok.set_cudnn_benchmark`) is on; `--compile MODE` adds `vidtok.compile_encoder`. A batch that
does not fit is recorded as "oom" and the larger batches are skipped.

Training (`benchmarks/train_step.bench_step`: generator + discriminator update, GAN on, LPIPS with a random VGG16,
bf16 autocast on CUDA): stage 1 with --train-preset at 17x128², batch 16; stage 2 (frozen encoder) at 17x256²,
batch 8. Seconds per step (median of --train-steps after one warm-up) and peak memory.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import model_flops  # noqa: E402  (benchmarks/model_flops.py: the one FLOP counter)
import train_step as step_bench  # noqa: E402  (benchmarks/train_step.py: the one training-step timer)

import vidtok  # noqa: E402
from vidtok import VidTok  # noqa: E402

# Dense peak TFLOP/s (bf16 tensor core, fp32 = TF32 tensor core, which cuDNN uses for fp32 convs by default).
PEAK_TFLOPS = {"H200": (989.0, 494.0), "H100": (989.0, 494.0), "A100": (312.0, 156.0), "L4": (121.0, 60.0),
               "A10": (125.0, 62.5), "L40": (181.0, 90.5)}


def peak_tflops(device: torch.device, args) -> tuple[float, float, str]:
    """(bf16, fp32) peak TFLOP/s and where the numbers came from."""
    if args.peak_tflops_bf16 and args.peak_tflops_fp32:
        return args.peak_tflops_bf16, args.peak_tflops_fp32, "command line"
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for key, (bf16, fp32) in PEAK_TFLOPS.items():
            if key in name:
                return (args.peak_tflops_bf16 or bf16, args.peak_tflops_fp32 or fp32,
                        f"table entry {key} for {name!r} (dense, assumed)")
        raise SystemExit(f"no peak FLOP/s known for {name!r}: pass --peak-tflops-bf16 and --peak-tflops-fp32")
    return args.peak_tflops_bf16 or 0.2, args.peak_tflops_fp32 or 0.2, "nominal CPU placeholder (smoke run only)"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def _peak_gib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


def bench_encoder(preset: str, device: torch.device, args, peaks: tuple[float, float]) -> list[dict]:
    model = VidTok.from_config(preset).eval().to(device)
    if args.compile:
        vidtok.compile_encoder(model, mode=args.compile)
    T = model.default_num_frames
    flops_per_window, _, latent = model_flops.count_flops(preset, T, args.size)
    rows = []
    for precision, peak in zip(("bf16", "fp32"), peaks):
        autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
        for batch in args.batches:
            row = {"preset": preset, "precision": precision, "batch": batch, "window": [3, T, args.size, args.size],
                   "latent": list(latent), "encode_gflop_per_window": flops_per_window / 1e9}
            try:
                _reset_peak(device)
                x = torch.rand(batch, 3, T, args.size, args.size, device=device) * 2 - 1
                with torch.inference_mode(), autocast:
                    for _ in range(args.warmup):
                        model.encode(x)
                    _sync(device)
                    t0 = time.perf_counter()
                    for _ in range(args.iters):
                        model.encode(x)
                    _sync(device)
                    dt = time.perf_counter() - t0
                wps = batch * args.iters / dt
                row.update(windows_per_s=wps, s_per_batch=dt / args.iters, peak_mem_GiB=_peak_gib(device),
                           mfu=flops_per_window * wps / (peak * 1e12))
            except torch.cuda.OutOfMemoryError:
                row["status"] = "oom"
            finally:
                x = None
            rows.append(row)
            print(json.dumps(row), flush=True)
            if row.get("status") == "oom":
                break
    del model
    return rows


def bench_train(stage: int, preset: str, size: int, batch: int, device: torch.device, args) -> dict:
    step_args = argparse.Namespace(preset=preset, size=size, batch=batch, steps=args.train_steps, warmup=1,
                                   stage=stage, threads=args.threads, no_lpips=False, cpu=device.type == "cpu")
    _reset_peak(device)
    try:
        out = step_bench.bench_step(step_args)  # bf16 autocast on CUDA; peak memory since the reset above
    except torch.cuda.OutOfMemoryError:
        out = {"preset": preset, "stage": stage, "batch": batch, "size": size, "status": "oom"}
    print(json.dumps(out), flush=True)
    return out


def bench_tokenize_stage(preset: str, size: int, batch: int, device: torch.device, args) -> dict:
    """The tokenize job's GPU stage as the job runs it: `TokenizeClips` (model loaded once, bf16 autocast, tokens to
    host) on WINDOW tables of the sample corpus's shape, without Ray (needs pyarrow; skipped if it is absent)."""
    try:
        from pipeline.tokenize.schema import windows_from_frames
        from pipeline.tokenize.stages import TokenizeClips
    except ImportError as e:  # the GPU machine may lack pyarrow: carry it (a wheel) to run this part
        return {"status": f"skipped: {e}"}
    import numpy as np

    frames = np.random.default_rng(0).integers(0, 256, (batch, 17, size, size, 3), dtype=np.uint8)
    table = windows_from_frames(frames)
    out = {}
    for precision in ("fp32", "bf16"):
        stage = TokenizeClips(preset, None, "random-init-seed-0", 0, precision, "float16")
        stage(table)  # warm-up (and cuDNN autotune)
        _reset_peak(device)
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(args.iters):
            stage(table)
        _sync(device)
        dt = (time.perf_counter() - t0) / args.iters
        out[precision] = {"windows_per_s": batch / dt, "s_per_batch": dt, "peak_gib": _peak_gib(device)}
    result = {"preset": preset, "size": size, "batch": batch, **out}
    print(json.dumps(result), flush=True)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="JSON output path")
    ap.add_argument("--cpu-smoke", action="store_true",
                    help="tiny presets, 32², batches 1/2, one train step each, on the CPU: tests the script")
    ap.add_argument("--presets", default="vidtok_fsq_causal_488_262144,vidtok_fsq_causal_41616_262144",
                    help="a 4x8x8 and a 4x16x16 preset (see vidtok.list_presets())")
    ap.add_argument("--batches", default="1,4,8,16")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--compile", default=None, help=f"compile the encoder with this mode {vidtok.accel.COMPILE_MODES}")
    ap.add_argument("--train-preset", default="vidtok_fsq_causal_488_32768")
    ap.add_argument("--train-steps", type=int, default=3)
    ap.add_argument("--peak-tflops-bf16", type=float, default=None)
    ap.add_argument("--peak-tflops-fp32", type=float, default=None)
    ap.add_argument("--threads", type=int, default=2, help="CPU threads (smoke run)")
    ap.add_argument("--skip-train", action="store_true")
    args = ap.parse_args()

    if args.cpu_smoke:
        device = torch.device("cpu")
        torch.set_num_threads(args.threads)
        presets = [p + "_tiny" for p in args.presets.split(",")]
        args.batches, args.size, args.warmup, args.iters, args.train_steps = [1, 2], 32, 1, 1, 1
        train = [(1, args.train_preset + "_tiny", 32, 1), (2, args.train_preset + "_tiny", 32, 1)]
    else:
        if not torch.cuda.is_available():
            raise SystemExit("no CUDA device: run on a GPU machine, or use --cpu-smoke to test the script")
        device = torch.device("cuda")
        presets = args.presets.split(",")
        args.batches = [int(b) for b in args.batches.split(",")]
        train = [(1, args.train_preset, 128, 16), (2, args.train_preset, 256, 8)]
    vidtok.set_cudnn_benchmark(True)  # fixed window shapes: autotune each conv once
    bf16_peak, fp32_peak, peak_src = peak_tflops(device, args)
    result = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
              "torch": torch.__version__, "cpu_smoke": args.cpu_smoke, "compile": args.compile,
              "peak_tflops": {"bf16": bf16_peak, "fp32": fp32_peak, "source": peak_src}, "encoder": [], "train": []}
    print(f"device {result['device']}, peak TFLOP/s bf16 {bf16_peak} fp32 {fp32_peak} ({peak_src})", flush=True)
    t0 = time.perf_counter()
    for preset in presets:
        result["encoder"] += bench_encoder(preset, device, args, (bf16_peak, fp32_peak))
    result["tokenize_stage"] = bench_tokenize_stage(presets[0], args.size, max(args.batches), device, args)
    if not args.skip_train:
        for stage, preset, size, batch in train:
            result["train"].append(bench_train(stage, preset, size, batch, device, args))
    result["wall_s"] = time.perf_counter() - t0
    best = {}
    for r in result["encoder"]:
        if "windows_per_s" in r:
            key = (r["preset"], r["precision"])
            best[key] = max(best.get(key, 0.0), r["windows_per_s"])
    result["best_windows_per_s"] = {f"{p} {prec}": v for (p, prec), v in best.items()}
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out} ({result['wall_s']:.0f} s); best windows/s: "
          + ", ".join(f"{k}: {v:.2f}" for k, v in result["best_windows_per_s"].items()))


if __name__ == "__main__":
    main()
