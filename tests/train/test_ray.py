"""Ray Train end to end on CPU: two gloo workers, tiny preset, videos and checkpoints on a local S3 server (moto).

Stage 1 loses a worker mid-run (the `fail_at_step` drill) and FailureConfig restarts it from the last checkpoint with
exactly the saved state; re-running the same command resumes at the latest step; stage 2 starts from the stage-1 run
on S3, keeps the encoder bit-identical and exports weights that `VidTok.load_official_state_dict` accepts. The node
loss drill on a multi-node cluster is tests/train/test_lost_node.py; both compare with one undisturbed run
(`calm_run`, tests/train/conftest.py).
"""

from __future__ import annotations

import io
import json

import pytest
import torch

from pipeline.train.run import run_training
from tests.train.helpers import PRESET, digest_of_checkpoint, load_torch, train_cfg
from vidtok import VidTok

pytestmark = [pytest.mark.slow, pytest.mark.alone]


def test_train_ray_stage1_recovers_resumes_and_stage2_freezes(ray_local, s3_server, s3_corpus, calm_run):
    """Worker loss -> restart from the saved step with identical state; re-run resumes; both end in an undisturbed
    run's states; stage 2 keeps the encoder. (Marked `alone`: see the note in pipeline/train/stream.py.)"""
    bucket, input_url = s3_corpus
    output = f"s3://{bucket}/runs"
    fs = s3_server.filesystem()

    # Stage 1, 4 steps; the last worker dies at step 3 (after checkpoint 2) -> FailureConfig restarts from step 2.
    cfg1 = train_cfg(s3_server, input_url, output, 1, steps=4)
    s1 = run_training(cfg1, fail_at_step=3)
    run1 = f"{bucket}/runs/{cfg1.name}"
    assert s1.checkpoint.endswith("checkpoint_00000004")
    records = [json.loads(fs.cat_file(p)) for p in sorted(fs.glob(f"{run1}/resumes/*.json"))]
    assert [r["resumed_at_step"] for r in records] == [2]
    ck2 = load_torch(fs, f"{run1}/checkpoint_00000002/state.pt")
    assert ck2["step"] == 2
    assert records[0]["state_digest"] == digest_of_checkpoint(cfg1, ck2)  # restored exactly what was saved
    for name in ("state.pt", "rng_rank0.pt", "rng_rank1.pt"):
        assert fs.exists(f"{run1}/checkpoint_00000004/{name}")
    assert fs.exists(f"{run1}/config.yaml") and fs.glob(f"{run1}/tensorboard/*")
    assert fs.glob(f"{run1}/previews/step_00000004/clip0.mp4")

    # Same command with more steps: resumes at 4 (not from scratch), keeps the newest 2 checkpoints.
    cfg1b = train_cfg(s3_server, input_url, output, 1, steps=6)
    s1b = run_training(cfg1b)
    fs.invalidate_cache()  # the listings above are cached by s3fs
    records = [json.loads(fs.cat_file(p)) for p in sorted(fs.glob(f"{run1}/resumes/*.json"))]
    assert sorted(r["resumed_at_step"] for r in records) == [2, 4]
    assert s1b.checkpoint.endswith("checkpoint_00000006")
    assert load_torch(fs, f"{run1}/checkpoint_00000006/state.pt")["step"] == 6
    assert not fs.exists(f"{run1}/checkpoint_00000002/state.pt")  # keep_checkpoints=2

    # The same 6 steps undisturbed (`calm_run`): both resumes (FailureConfig at 2, the re-run at 4) ended in its states.
    for step in (4, 6):
        assert digest_of_checkpoint(cfg1, load_torch(fs, f"{run1}/checkpoint_{step:08d}/state.pt")) == \
            digest_of_checkpoint(cfg1, load_torch(fs, f"{calm_run}/checkpoint_{step:08d}/state.pt")), step

    # Stage 2 from the stage-1 run on S3 (init_from derived from preset and output): encoder bit-identical to stage
    # 1's last checkpoint, decoder trained.
    cfg2 = train_cfg(s3_server, input_url, output, 2, steps=2)
    s2 = run_training(cfg2)
    assert s2.init_from == f"s3://{run1}"
    fs.invalidate_cache()
    start = load_torch(fs, f"{run1}/checkpoint_00000006/state.pt")["model"]
    end = load_torch(fs, f"{bucket}/runs/{cfg2.name}/checkpoint_00000002/state.pt")["model"]
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
