"""Ray Train from the frames cache end to end (slow): the cache job over a small corpus, then a tiny stage-1 run
with `data.frames=` that reads its clips from the cache and finishes its steps."""

from __future__ import annotations

import math

import pytest

from pipeline.config import load_config
from pipeline.decode.synth import make_sample_corpus
from pipeline.frames.config import CacheFramesJobConfig, FramesConfig
from pipeline.frames.run import run_cache_frames
from pipeline.train.config import TrainConfig
from pipeline.train.run import run_training

pytestmark = [pytest.mark.slow, pytest.mark.alone]


def test_train_stage1_from_frames_cache(tmp_path, ray_local):
    """Cache a 3-clip corpus at 64² (stage 1 reads 32², downscaled), then train 2 steps from it."""
    corpus = make_sample_corpus(tmp_path / "corpus", num_clips=3, seconds=6.5, fps=12.0, width=64, height=48)
    cache = str(tmp_path / "frames")
    s = run_cache_frames(CacheFramesJobConfig(input=str(corpus), output=cache,
                                              frames=FramesConfig(size=64, frames_per_row=8)))
    assert s["videos_cached"] == 3 and s["left_for_next_run"] == 0
    cfg = load_config(TrainConfig, None, [
        "stage=1", "preset=vidtok_kl_causal_488_4chn_tiny", f"input={corpus}", f"output={tmp_path / 'runs'}",
        "num_workers=1", "batch_size=1", "steps=2", "checkpoint_every=2", "val_every=0", "export=false",
        f"data.frames={cache}", "val_fraction=0.34"])
    summary = run_training(cfg)
    assert summary.checkpoint and summary.metrics.get("clips_seen", 2) == 2, summary.metrics
    assert all(math.isfinite(v) for v in summary.metrics.values() if isinstance(v, float)), summary.metrics
