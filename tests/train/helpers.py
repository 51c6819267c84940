"""Helpers of the Ray Train end-to-end tests (test_ray.py, test_lost_node.py): their one run configuration and the
state digest of a checkpoint. Every run of both files trains the same way (only steps, stage, name and the drill
differ), so each drill is compared with one undisturbed run (`calm_run` in conftest.py): a fit costs ~15-25 s here."""

from __future__ import annotations

import io
from pathlib import Path

import torch

from pipeline.config import load_config
from pipeline.train.config import TrainConfig
from pipeline.train.loop import build_engine
from vidtok.train_state import restore_training_state, state_digest
from vidtok.train_step import TrainState, make_optimizers

PRESET = "vidtok_kl_causal_488_4chn_tiny"
REPO = Path(__file__).resolve().parents[2]


def train_overrides(s3_server, input_url: str, output: str, stage: int, **kw) -> list[str]:
    """2 workers, global batch 2, a checkpoint and a validation every 2 steps, 1 of 3 videos held out, 2 clips per
    video mixed in rounds of 4 (so a restart can land inside a round); `kw`: more `key=value` overrides."""
    over = [f"stage={stage}", f"preset={PRESET}", f"input={input_url}", f"output={output}", "num_workers=2",
            "batch_size=2", "checkpoint_every=2", "keep_checkpoints=2", "val_every=2", "val_clips=1",
            "preview_clips=1", "data.prefetch_batches=2", "data.clips_per_video=2", "data.shuffle_buffer_clips=4",
            f"storage.endpoint_url={s3_server.endpoint_url}", f"storage.key={s3_server.key}",
            f"storage.secret={s3_server.secret}", "val_fraction=0.34"]
    return over + [f"{k}={v}" for k, v in kw.items()]


def train_cfg(s3_server, input_url: str, output: str, stage: int, **kw) -> TrainConfig:
    return load_config(TrainConfig, None, train_overrides(s3_server, input_url, output, stage, **kw))


def load_torch(fs, path: str):
    with fs.open(path, "rb") as f:
        return torch.load(io.BytesIO(f.read()), map_location="cpu", weights_only=False)


def digest_of_checkpoint(cfg: TrainConfig, payload: dict) -> str:
    """`vidtok.train_state.state_digest` of a checkpoint's training state, restored into a fresh engine."""
    eng = build_engine(cfg)
    oa, od = make_optimizers(eng, cfg.optim)
    restore_training_state(payload, eng, oa, od, TrainState())
    return state_digest(eng, oa, od)
