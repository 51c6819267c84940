"""FLOPs of VidTok encode / decode per clip, counted on the `meta` device (no compute, no weights), and the GPU time
they imply at a stated utilisation — the input `cluster/README.md` uses for sizing when no GPU is at hand.

    .venv/bin/python benchmarks/model_flops.py [PRESET] [--frames 17] [--size 256] [--peak-tflops 312] [--mfu 0.35]

`torch.utils.flop_counter.FlopCounterMode` counts 2 FLOPs per multiply-add of every conv / matmul / attention. The
time estimate is FLOPs / (peak x mfu): 312 TFLOPS is the A100's dense bf16 peak; `--mfu` is an assumption, not a
measurement — replace the estimate with `benchmarks/model_speed.py` on a real GPU when you have one. The ratio
printed against the CPU figure of `model_speed.py` (same preset, same clip) says what fraction of the CPU's peak that
run achieved.
"""

from __future__ import annotations

import argparse

import torch
from torch.utils.flop_counter import FlopCounterMode

from vidtok import VidTok


def count_flops(preset: str, frames: int | None, size: int) -> tuple[int, int, tuple]:
    """(encode FLOPs, decode FLOPs, latent shape) for one (1, 3, frames, size, size) clip."""
    with torch.device("meta"):
        model = VidTok.from_config(preset).eval()
        x = torch.zeros(1, 3, frames or model.default_num_frames, size, size)
    with torch.no_grad():
        # The encoder/decoder modules directly: the public API checks value ranges, which meta tensors cannot do.
        with FlopCounterMode(display=False) as fc:
            z = model.encoder(x)
        enc = fc.get_total_flops()
        latents = z[:, : model.config.z_channels]  # FSQ: z itself; KL: the mean half (same shape as a sample)
        with FlopCounterMode(display=False) as fc:
            model.decoder(latents)
        dec = fc.get_total_flops()
    return enc, dec, tuple(latents.shape)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("preset", nargs="?", default="vidtok_fsq_causal_488_32768")
    ap.add_argument("--frames", type=int, default=None)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--peak-tflops", type=float, default=312.0, help="A100 dense bf16 peak")
    ap.add_argument("--mfu", type=float, default=0.35, help="assumed fraction of peak reached (an assumption)")
    ap.add_argument("--cpu-encode-s", type=float, default=None, help="measured CPU encode seconds to compare")
    args = ap.parse_args()
    enc, dec, shape = count_flops(args.preset, args.frames, args.size)
    rate = args.peak_tflops * 1e12 * args.mfu
    print(f"{args.preset}: latent {shape}")
    print(f"encode {enc / 1e12:.2f} TFLOP -> {enc / rate * 1e3:.1f} ms at {args.peak_tflops:g} TFLOPS x {args.mfu:g}")
    print(f"decode {dec / 1e12:.2f} TFLOP -> {dec / rate * 1e3:.1f} ms at {args.peak_tflops:g} TFLOPS x {args.mfu:g}")
    print(f"decode / encode FLOP ratio {dec / enc:.2f}")
    if args.cpu_encode_s:
        print(f"CPU run reached {enc / args.cpu_encode_s / 1e9:.1f} GFLOP/s on encode")


if __name__ == "__main__":
    main()
