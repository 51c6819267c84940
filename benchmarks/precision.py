"""Hand-run benchmark: how much bf16 autocast changes VidTok's tokens, per preset family, on the CPU.

    .venv/bin/python benchmarks/precision.py [--size 64] [--clips 3] [--tiny] [--decode] [--out precision.json]

For each family (v1.0 causal FSQ, v1.1 causal FSQ, non-causal FSQ, KL causal, KL non-causal) one full-size preset
with random weights (`torch.manual_seed(0)`, the default init) encodes `--clips` generated clips twice: float32,
and under `torch.autocast("cpu", dtype=torch.bfloat16)`. The clips are real decoded frames: a synthetic video
(`synth.write_synthetic_video`: moving texture + frame code) decoded at 3 fps and `--size`² by
`pipeline.decode.sample_frames`, mapped to [-1, 1] like the training data (`p/255`, then `(v - 0.5)/0.5`).
Reported, fp32 as the reference: % of FSQ ids identical; max / mean |latent error| (KL: the posterior mean; FSQ:
the raw encoder output z before rounding, whose error is what flips ids); with `--decode`, the max / mean error of
decoding the fp32 latents in bf16. The spatial size is small (default 64²) because a 256² fp32 + bf16 pass of five
full presets takes hours on two cores; the per-pixel numerics do not depend on the size.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.decode import sample_frames  # noqa: E402
from pipeline.decode.synth import write_synthetic_video  # noqa: E402
from vidtok import VidTok  # noqa: E402

FAMILIES = {
    "v1.0 causal FSQ": "vidtok_fsq_causal_488_32768",
    "v1.1 causal FSQ": "vidtok_fsq_causal_488_32768_v1_1",
    "non-causal FSQ": "vidtok_fsq_noncausal_488_262144",
    "KL causal": "vidtok_kl_causal_488_4chn",
    "KL non-causal": "vidtok_kl_noncausal_488_4chn",
}


def make_clips(n: int, frames: int, size: int, workdir: Path) -> list[torch.Tensor]:
    """`n` clips (1, 3, frames, size, size) in [-1, 1] decoded from generated videos (different textures)."""
    clips = []
    for i in range(n):
        path = workdir / f"clip{i}.mp4"
        # 30 fps source, sampled at 3 fps: frames / 3 s plus a margin.
        write_synthetic_video(path, num_frames=int((frames + 1) * 10), fps=30, size=(160 + 32 * i, 120 + 24 * i),
                              grain=4 * i)
        got = sample_frames(path, fps=3.0, size=(size, size)).frames[:frames]  # (T, H, W, 3) uint8
        if got.shape[0] < frames:
            raise RuntimeError(f"{path}: only {got.shape[0]} frames at 3 fps, need {frames}")
        x = torch.from_numpy(np.ascontiguousarray(got)).permute(3, 0, 1, 2).float().div(255).sub(0.5).div(0.5)
        clips.append(x.unsqueeze(0))
    return clips


def measure(preset: str, clips: list[torch.Tensor], decode: bool) -> dict:
    torch.manual_seed(0)
    model = VidTok.from_config(preset).eval()
    T = model.default_num_frames
    same = total = 0
    lat_max, lat_sum, lat_n, dec_max, dec_sum, dec_n = 0.0, 0.0, 0, 0.0, 0.0, 0
    t0 = time.perf_counter()
    for x in clips:
        x = x[:, :, :T]
        with torch.inference_mode():
            ref = model.encode(x)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                low = model.encode(x)
            # FSQ: z (pre-rounding) is what flips ids; KL: the posterior mean is the latent the pipeline stores.
            a, b = (ref.z, low.z) if ref.indices is not None else (ref.latents, low.latents)
            err = (a.float() - b.float()).abs()
            lat_max, lat_sum, lat_n = max(lat_max, err.max().item()), lat_sum + err.sum().item(), lat_n + err.numel()
            if ref.indices is not None:
                same += (ref.indices == low.indices).sum().item()
                total += ref.indices.numel()
            if decode:
                v32 = model.decode(ref.latents)
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    v16 = model.decode(ref.latents)
                d = (v32.float() - v16.float()).abs()
                dec_max, dec_sum, dec_n = max(dec_max, d.max().item()), dec_sum + d.sum().item(), dec_n + d.numel()
    out = {"preset": preset, "clips": len(clips), "latent_max_abs_err": lat_max, "latent_mean_abs_err": lat_sum / lat_n,
           "latent_kind": "z (pre-quantization)" if total else "KL posterior mean", "seconds": time.perf_counter() - t0}
    if total:
        out["ids_identical_pct"] = 100.0 * same / total
        out["ids_total"] = total
    if decode:
        out["decode_max_abs_err"], out["decode_mean_abs_err"] = dec_max, dec_sum / dec_n
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=64, help="clip side in pixels (a multiple of 8)")
    ap.add_argument("--clips", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tiny", action="store_true", help="the _tiny twins (ch=8): a quick smoke run, not a figure")
    ap.add_argument("--decode", action="store_true", help="also decode the fp32 latents in bf16")
    ap.add_argument("--families", default=",".join(FAMILIES), help="comma-separated subset of the family names")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="vt-prec-") as d:
        clips = make_clips(args.clips, 17, args.size, Path(d))
    print(f"{args.clips} decoded clips 17x{args.size}x{args.size}, random weights, CPU fp32 vs bf16 autocast, "
          f"{'tiny twins' if args.tiny else 'full presets'}", flush=True)
    results = {}
    for family in args.families.split(","):
        preset = FAMILIES[family] + ("_tiny" if args.tiny else "")
        r = measure(preset, clips, args.decode)
        results[family] = r
        ids = f"ids identical {r['ids_identical_pct']:.2f}% of {r['ids_total']}, " if "ids_identical_pct" in r else ""
        dec = (f", decode err max {r['decode_max_abs_err']:.3g} mean {r['decode_mean_abs_err']:.3g}"
               if args.decode else "")
        print(f"{family:16s} {preset}: {ids}{r['latent_kind']} err max {r['latent_max_abs_err']:.3g} "
              f"mean {r['latent_mean_abs_err']:.3g}{dec} ({r['seconds']:.0f} s)", flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
