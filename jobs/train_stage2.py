"""Stage 2 of VidTok training: decoder-only fine-tuning on 256×256, 3 FPS clips with the encoder frozen (paper
schedule: 30 k steps, batch 8), starting from a stage-1 run or an official VidTok checkpoint.

    python jobs/train_stage2.py                  # embedded default: continues the default stage-1 run's latest checkpoint
    python jobs/train_stage2.py schedule=paper preset=vidtok_fsq_causal_488_32768 input=s3://bucket/videos \\
        output=s3://bucket/runs init_from=s3://bucket/runs/vidtok_fsq_causal_488_32768_stage1 use_gpu=true

`init_from` may be a stage-1 run dir (its latest checkpoint), one checkpoint dir, or an official `.ckpt`; null means
`<output>/<preset>_stage1`. Re-running the same command resumes stage 2 itself.
"""

from __future__ import annotations

import sys
from pathlib import Path

from pipeline.cli import run_job
from pipeline.config import ConfigError
from pipeline.train.config import TrainConfig

DEFAULT_CONFIG = Path(__file__).resolve().parent / "configs" / "train_stage2.yaml"


def main(cfg: TrainConfig) -> int:
    from pipeline.train.run import run_training

    if cfg.stage != 2:
        raise ConfigError(f"stage={cfg.stage}: jobs/train_stage2.py runs stage 2; use jobs/train_stage1.py")
    if cfg.dry_run:  # schedule, inputs, split; Ray Train is not started
        from pipeline.train.run import describe_run

        print(describe_run(cfg))
        return 0
    summary = run_training(cfg)
    print(f"stage 2 run:        {summary.run_dir} (initialised from {summary.init_from})")
    print(f"latest checkpoint:  {summary.checkpoint}")
    print(f"exported weights:   {summary.export}")
    print(f"tokenize with them: python jobs/tokenize_corpus.py preset={cfg.preset} checkpoint={summary.export}")
    return 0


if __name__ == "__main__":
    sys.exit(run_job(TrainConfig, DEFAULT_CONFIG, main, __doc__))
