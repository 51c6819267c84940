"""Reconstruction quality of a VidTok checkpoint over a folder / URL / manifest of videos: PSNR, SSIM, LPIPS, and FVD
when a local I3D TorchScript file is given — the paper's protocol (spec §13.2: 30 FPS sampling, 17×256×256 causal /
16×256×256 non-causal consecutive clips), so MCL-JCV plus a published checkpoint reproduces the paper's table.

    python jobs/evaluate.py                                     # latest export of the embedded-default training run
    python jobs/evaluate.py input=/data/mcl_jcv preset=vidtok_kl_causal_488_4chn \\
        checkpoint=vidtok_kl_causal_488_4chn.ckpt output=metrics.json [i3d_path=i3d_torchscript.pt]

Keys: `pipeline/evaluate.py: EvaluateConfig`.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

from pipeline.config import load_config, split_args
from pipeline.evaluate import EvaluateConfig, run_evaluation

DEFAULT_CONFIG = Path(__file__).resolve().parent / "configs" / "evaluate.yaml"


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config_path, overrides = split_args(sys.argv[1:] if argv is None else argv)
    cfg = load_config(EvaluateConfig, config_path or DEFAULT_CONFIG, overrides)
    summary = run_evaluation(cfg)
    headline = {k: summary[k] for k in ("psnr", "ssim", "lpips", "fvd", "frames", "videos") if k in summary}
    print(json.dumps({"checkpoint": summary["checkpoint"], **headline}, indent=2))
    if summary["skipped"]:
        print(f"skipped {len(summary['skipped'])} inputs: {summary['skipped']}")
    if cfg.output:
        print(f"full metrics (per video): {cfg.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
