"""Ray Train end to end on CPU: two gloo workers, tiny preset, videos and checkpoints on a local S3 server (moto).

Stage 1 loses a worker mid-run (the `fail_at_step` drill) and FailureConfig restarts it from the last checkpoint with
exactly the saved state; re-running the same command resumes at the latest step; stage 2 starts from the stage-1 run
on S3, keeps the encoder bit-identical and exports weights that `VidTok.load_official_state_dict` accepts. The node
loss drill on a multi-node cluster is tests/train/test_lost_node.py (its own file: the two run side by side under
`make test`'s two pytest processes).
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import torch

from pipeline.config import load_config
from pipeline.decode.synth import make_sample_corpus
from pipeline.train.loop import build_engine
from pipeline.train.run import run_training
from pipeline.train.config import TrainConfig
from vidtok import VidTok
from vidtok.train_state import state_digest
from vidtok.train_step import TrainState, make_optimizers

pytestmark = [pytest.mark.slow, pytest.mark.alone]
PRESET = "vidtok_kl_causal_488_4chn_tiny"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def s3_corpus(s3_server, tmp_path_factory):
    """Three synthetic clips uploaded to a fresh bucket; returns (bucket, input URL)."""
    local = make_sample_corpus(tmp_path_factory.mktemp("corpus"), num_clips=3, seconds=6.5, fps=12.0, width=64, height=48)
    bucket = s3_server.make_bucket("train")
    fs = s3_server.filesystem()
    for f in sorted(local.iterdir()):
        fs.put(str(f), f"{bucket}/videos/{f.name}")
    return bucket, f"s3://{bucket}/videos"


def _cfg(s3_server, input_url, output, stage, **kw) -> TrainConfig:
    over = [f"stage={stage}", f"preset={PRESET}", f"input={input_url}", f"output={output}", "num_workers=2",
            "batch_size=2", "checkpoint_every=2", "keep_checkpoints=2", "val_every=2", "val_clips=1",
            "preview_clips=1", "data.prefetch_batches=2", f"storage.endpoint_url={s3_server.endpoint_url}",
            f"storage.key={s3_server.key}", f"storage.secret={s3_server.secret}", "val_fraction=0.34"]
    over += [f"{k}={v}" for k, v in kw.items()]
    return load_config(TrainConfig, None, over)


def _load(fs, path):
    with fs.open(path, "rb") as f:
        return torch.load(io.BytesIO(f.read()), map_location="cpu", weights_only=False)


def _digest_of_checkpoint(cfg: TrainConfig, payload: dict) -> str:
    from vidtok.train_state import restore_training_state

    eng = build_engine(cfg)
    oa, od = make_optimizers(eng, cfg.optim)
    restore_training_state(payload, eng, oa, od, TrainState())
    return state_digest(eng, oa, od)


def test_train_ray_stage1_recovers_resumes_and_stage2_freezes(ray_local, s3_server, s3_corpus):
    """Worker loss -> restart from the saved step with identical state; re-run resumes; both end in an undisturbed
    run's states; stage 2 keeps the encoder. (Marked `alone`: see the note in pipeline/train/stream.py.)"""
    bucket, input_url = s3_corpus
    output = f"s3://{bucket}/runs"
    fs = s3_server.filesystem()

    # Stage 1, 4 steps; the last worker dies at step 3 (after checkpoint 2) -> FailureConfig restarts from step 2.
    cfg1 = _cfg(s3_server, input_url, output, 1, steps=4)
    s1 = run_training(cfg1, fail_at_step=3)
    run1 = f"{bucket}/runs/{cfg1.name}"
    assert s1.checkpoint.endswith("checkpoint_00000004")
    records = [json.loads(fs.cat_file(p)) for p in sorted(fs.glob(f"{run1}/resumes/*.json"))]
    assert [r["resumed_at_step"] for r in records] == [2]
    ck2 = _load(fs, f"{run1}/checkpoint_00000002/state.pt")
    assert ck2["step"] == 2
    assert records[0]["state_digest"] == _digest_of_checkpoint(cfg1, ck2)  # restored exactly what was saved
    for name in ("state.pt", "rng_rank0.pt", "rng_rank1.pt"):
        assert fs.exists(f"{run1}/checkpoint_00000004/{name}")
    assert fs.exists(f"{run1}/config.yaml") and fs.glob(f"{run1}/tensorboard/*")
    assert fs.glob(f"{run1}/previews/step_00000004/clip0.mp4")

    # Same command with more steps: resumes at 4 (not from scratch), keeps the newest 2 checkpoints.
    cfg1b = _cfg(s3_server, input_url, output, 1, steps=6)
    s1b = run_training(cfg1b)
    fs.invalidate_cache()  # the listings above are cached by s3fs
    records = [json.loads(fs.cat_file(p)) for p in sorted(fs.glob(f"{run1}/resumes/*.json"))]
    assert sorted(r["resumed_at_step"] for r in records) == [2, 4]
    assert s1b.checkpoint.endswith("checkpoint_00000006")
    assert _load(fs, f"{run1}/checkpoint_00000006/state.pt")["step"] == 6
    assert not fs.exists(f"{run1}/checkpoint_00000002/state.pt")  # keep_checkpoints=2

    # The same 6 steps undisturbed: both resumes (FailureConfig at 2, the re-run at 4) ended in its states.
    calm = _cfg(s3_server, input_url, output, 1, steps=6, name="calm")
    run_training(calm)
    for step in (4, 6):
        assert _digest_of_checkpoint(cfg1, _load(fs, f"{run1}/checkpoint_{step:08d}/state.pt")) == \
            _digest_of_checkpoint(cfg1, _load(fs, f"{bucket}/runs/calm/checkpoint_{step:08d}/state.pt")), step

    # Stage 2 from the stage-1 run on S3 (init_from derived from preset and output): encoder bit-identical to stage
    # 1's last checkpoint, decoder trained.
    cfg2 = _cfg(s3_server, input_url, output, 2, steps=2)
    s2 = run_training(cfg2)
    assert s2.init_from == f"s3://{run1}"
    fs.invalidate_cache()
    start = _load(fs, f"{run1}/checkpoint_00000006/state.pt")["model"]
    end = _load(fs, f"{bucket}/runs/{cfg2.name}/checkpoint_00000002/state.pt")["model"]
    enc = [k for k in start if k.startswith("encoder.")]
    dec = [k for k in start if k.startswith("decoder.")]
    for k in enc:
        torch.testing.assert_close(end[k], start[k], rtol=0, atol=0, msg=lambda m, k=k: f"{k}: {m}")
    assert any(not torch.equal(end[k], start[k]) for k in dec)

    exported = torch.load(io.BytesIO(fs.cat_file(s2.export.replace("s3://", ""))), weights_only=True)
    model = VidTok.from_config(PRESET).load_official_state_dict(exported)
    for k in enc:
        torch.testing.assert_close(model.state_dict()[k], start[k], rtol=0, atol=0)
    assert "loss.logvar" in exported["state_dict"] and exported["global_step"] == 4
