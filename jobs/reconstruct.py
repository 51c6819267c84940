"""Decode chosen token windows back to video: an mp4 (input | reconstruction) and a PNG grid per clip.

    python jobs/reconstruct.py                                   # first 2 windows of out/tokens_demo
    python jobs/reconstruct.py tokens=s3://b/tokens clips='[<clip_id>,<clip_id>]' checkpoint=/ckpt/x.ckpt
"""

from __future__ import annotations

import json
import sys

from pipeline.cli import run_job
from pipeline.tokenize.reconstruct import ReconstructConfig


def main(cfg: ReconstructConfig) -> int:
    from pipeline.tokenize.reconstruct import run_reconstruct

    print(json.dumps(run_reconstruct(cfg), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(run_job(ReconstructConfig, None, main, __doc__))
