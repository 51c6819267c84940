"""`dry_run=true` of the training jobs: the resolved schedule, the inputs and their split, and nothing started."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from pipeline.config import load_config
from pipeline.train.config import TrainConfig
from pipeline.train.run import describe_run
from tests.tokenize.helpers import make_corpus

REPO = Path(__file__).resolve().parents[2]


def test_train_dry_run_states_schedule_inputs_and_split(tmp_path):
    """Stage 1 paper schedule over 10 videos: steps, global/per-worker batch, size, 9/1 split; no run dir written."""
    make_corpus(tmp_path / "in", clips=[(6.5, 24.0)] * 10, size=(32, 24))
    cfg = load_config(TrainConfig, None, [f"input={tmp_path / 'in'}", f"output={tmp_path / 'runs'}", "schedule=paper",
                                          "num_workers=8", "preset=vidtok_fsq_causal_488_32768"])
    text = describe_run(cfg)
    assert "stage 1, full model; schedule paper" in text
    assert "steps:        50000, global batch 16 = 2 per worker x 8 workers" in text
    assert "17 frames at 3 fps, 128x128" in text and "checkpoint every 5000 steps" in text
    assert "10 videos under" in text and "9 training, 1 validation (val_fraction=0.1)" in text
    assert "nothing yet, starts at step 0" in text
    assert f"export:       {tmp_path / 'runs'}/vidtok_fsq_causal_488_32768_stage1/export/" \
        "vidtok_fsq_causal_488_32768_stage1_step00050000.ckpt" in text
    assert not (tmp_path / "runs").exists()


def test_train_dry_run_job_exits_0_without_training(tmp_path):
    """`python jobs/train_stage2.py dry_run=true` prints stage 2's plan (init_from default) and exits 0, no Ray."""
    r = subprocess.run([sys.executable, str(REPO / "jobs/train_stage2.py"), "dry_run=true", f"output={tmp_path}"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "stage 2, decoder only, encoder frozen" in r.stdout
    assert f"init from:    {tmp_path}/vidtok_fsq_causal_488_32768_tiny_stage1" in r.stdout
    assert "generates 6 sample clips" in r.stdout and "Started a local Ray" not in r.stderr
    assert list(tmp_path.iterdir()) == []
