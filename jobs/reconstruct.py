"""Decode chosen token windows back to video: an mp4 (input | reconstruction) and a PNG grid per clip.

    python jobs/reconstruct.py                                   # first 2 windows of out/tokens_demo
    python jobs/reconstruct.py tokens=s3://b/tokens clips='[<clip_id>,<clip_id>]' checkpoint=/ckpt/x.ckpt

Config keys: pipeline/reconstruct.py `ReconstructConfig` (tokens, clips, num_clips, checkpoint, out_dir, storage.*).
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.config import ConfigError, load_config, split_args  # noqa: E402
from pipeline.reconstruct import ReconstructConfig, run_reconstruct  # noqa: E402


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        path, overrides = split_args(argv)
        cfg = load_config(ReconstructConfig, path, overrides)
    except (ConfigError, ValueError) as e:
        print(f"config error: {e}", file=sys.stderr)
        return 2
    results = run_reconstruct(cfg)
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
