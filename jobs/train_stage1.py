"""Stage 1 of VidTok training: the full model on 128×128, 3 FPS clips (paper schedule: 50 k steps, batch 16).

    python jobs/train_stage1.py                                   # embedded default: tiny preset, sample corpus, local
    python jobs/train_stage1.py schedule=paper preset=vidtok_fsq_causal_488_32768 \\
        input=s3://bucket/videos output=s3://bucket/runs num_workers=8 use_gpu=true

Re-running the same command resumes from the run's latest checkpoint. docs/training.md explains the keys.
"""

from __future__ import annotations

import sys
from pathlib import Path

from pipeline.cli import run_job
from pipeline.config import ConfigError
from pipeline.train.config import TrainConfig

DEFAULT_CONFIG = Path(__file__).resolve().parent / "configs" / "train_stage1.yaml"


def main(cfg: TrainConfig) -> int:
    from pipeline.train.run import run_training

    if cfg.stage != 1:
        raise ConfigError(f"stage={cfg.stage}: jobs/train_stage1.py runs stage 1; use jobs/train_stage2.py")
    if cfg.dry_run:  # schedule, inputs, split; Ray Train is not started
        from pipeline.train.run import describe_run

        print(describe_run(cfg))
        return 0
    summary = run_training(cfg)
    print(f"stage 1 run:        {summary.run_dir}")
    print(f"latest checkpoint:  {summary.checkpoint}")
    print(f"exported weights:   {summary.export}")
    print(f"tensorboard:        tensorboard --logdir {summary.run_dir}/tensorboard")
    print("next: python jobs/train_stage2.py <same input/output/preset keys>")
    return 0


if __name__ == "__main__":
    sys.exit(run_job(TrainConfig, DEFAULT_CONFIG, main, __doc__))
