"""Reconstruction quality of a VidTok checkpoint over a folder / URL / manifest of videos: PSNR, SSIM, LPIPS, and FVD
when a local I3D TorchScript file is given — the paper's protocol (spec §13.2: 30 FPS sampling, 17×256×256 causal /
16×256×256 non-causal consecutive clips), so MCL-JCV plus a published checkpoint reproduces the paper's table.

    python jobs/evaluate.py                                     # latest export of the embedded-default training run
    python jobs/evaluate.py input=/data/mcl_jcv preset=vidtok_kl_causal_488_4chn \\
        checkpoint=vidtok_kl_causal_488_4chn.ckpt output=metrics.json [i3d_path=i3d_torchscript.pt]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from pipeline.cli import run_job
from pipeline.evaluate.run import EvaluateConfig

DEFAULT_CONFIG = Path(__file__).resolve().parent / "configs" / "evaluate.yaml"


def main(cfg: EvaluateConfig) -> int:
    from pipeline.evaluate.run import run_evaluation

    summary = run_evaluation(cfg)
    headline = {k: summary[k] for k in ("psnr", "ssim", "lpips", "fvd", "frames", "videos") if k in summary}
    print(json.dumps({"checkpoint": summary["checkpoint"], **headline}, indent=2))
    if summary["skipped"]:
        print(f"skipped {len(summary['skipped'])} inputs: {summary['skipped']}")
    if cfg.output:
        print(f"full metrics (per video): {cfg.output}")
    return 0


if __name__ == "__main__":
    sys.exit(run_job(EvaluateConfig, DEFAULT_CONFIG, main, __doc__))
