"""Ray Train end to end on CPU: two gloo workers, tiny preset, videos and checkpoints on a local S3 server (moto).

Stage 1 loses a worker mid-run (the `fail_at_step` drill) and FailureConfig restarts it from the last checkpoint with
exactly the saved state; re-running the same command resumes at the latest step; stage 2 starts from the stage-1 run
on S3, keeps the encoder bit-identical and exports weights that `VidTok.load_official_state_dict` accepts. On a
`ray.cluster_utils.Cluster`, the node of one worker is removed mid-run: the run restarts from its last checkpoint and
ends in the state of an undisturbed run (the training order is fixed and resumable: pipeline/train/order.py).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
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

pytestmark = pytest.mark.slow
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
    run's states; stage 2 keeps the encoder."""
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


def _train_job(cluster, input: Path, output: Path, name: str, log: Path) -> subprocess.Popen:
    """The stage-1 job, as an operator runs it against the cluster: 2 workers, one per node (STRICT_SPREAD), 2 clips
    per video mixed in rounds of 4 (so a restart can land inside a round), 6 steps, a checkpoint every 2."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("RAY_ADDRESS", None)
    cmd = [sys.executable, str(REPO / "jobs" / "train_stage1.py"), f"input={input}", f"output={output}", f"name={name}",
           f"preset={PRESET}", "num_workers=2", "batch_size=2", "steps=6", "checkpoint_every=2", "keep_checkpoints=4",
           "val_every=0", "data.clips_per_video=2", "data.shuffle_buffer_clips=4", "placement_strategy=STRICT_SPREAD",
           "export=false", f"ray.address={cluster.address}"]
    return subprocess.Popen(cmd, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, cwd=REPO)


def _registered(run_dir: Path, step: int) -> bool:
    """Ray Train's controller has registered the checkpoint of `step` (its snapshot names it): a restart resumes from
    it or a later one."""
    snap = run_dir / "checkpoint_manager_snapshot.json"
    try:
        return f"checkpoint_{step:08d}" in snap.read_text()
    except OSError:
        return False


def _wait(proc: subprocess.Popen, what: str, cond, log: Path, timeout: float = 300.0) -> None:
    t0 = time.time()
    while not cond():
        assert proc.poll() is None, f"the job ended (exit {proc.returncode}) before {what}: {log.read_text()[-4000:]}"
        assert time.time() - t0 < timeout, f"no {what} within {timeout:.0f}s"
        time.sleep(0.2)


def _final_digest(run_dir: Path, step: int) -> str:
    payload = torch.load(run_dir / f"checkpoint_{step:08d}" / "state.pt", map_location="cpu", weights_only=False)
    assert payload["step"] == step
    return _digest_of_checkpoint(load_config(TrainConfig, None, [f"preset={PRESET}"]), payload)


def test_train_ray_lost_node_restarts_from_checkpoint_same_final_state(tmp_path, monkeypatch):
    """Two 2-CPU nodes each hold one Ray Train worker; once checkpoint 2 is registered, one node is removed (SIGKILL,
    as a spot reclaim) and a fresh one added: FailureConfig restarts the group from the last checkpoint and the final
    state digest equals an undisturbed run's on the same cluster."""
    from ray.cluster_utils import Cluster

    import ray

    ray.shutdown()  # the session's local Ray; the next test that needs it starts a fresh one
    tmp = tempfile.mkdtemp(prefix="vtt", dir="/tmp")
    os.makedirs(os.path.join(tmp, "ray"))
    monkeypatch.setenv("RAY_TMPDIR", tmp)  # Cluster records its address under $RAY_TMPDIR/ray, not the shared /tmp/ray
    corpus = make_sample_corpus(tmp_path / "corpus", num_clips=3, seconds=6.5, fps=12.0, width=64, height=48)
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "object_store_memory": 200 << 20,
                                                            "temp_dir": tmp, "include_dashboard": False})
    out = tmp_path / "runs"
    try:
        nodes = [cluster.add_node(num_cpus=2, object_store_memory=150 << 20) for _ in range(2)]
        cluster.wait_for_nodes()
        t0 = time.time()
        calm = _train_job(cluster, corpus, out, "calm", tmp_path / "calm.log")
        assert calm.wait(timeout=400) == 0, (tmp_path / "calm.log").read_text()[-6000:]
        calm_s = time.time() - t0

        t0, log, run_dir = time.time(), tmp_path / "drill.log", out / "drill"
        job = _train_job(cluster, corpus, out, "drill", log)
        # gated on the controller's record of checkpoint 2, not on a sleep: the run is then mid-way, whatever the
        # machine's speed, and a restart resumes from a checkpoint, not from scratch
        _wait(job, "checkpoint 2 registered", lambda: _registered(run_dir, 2), log)
        assert job.poll() is None and not (run_dir / "checkpoint_00000006").exists(), "the run ended before the drill"
        cluster.remove_node(nodes[1], allow_graceful=False)  # STRICT_SPREAD: this node holds one of the two workers
        removed_at = time.time() - t0
        cluster.add_node(num_cpus=2, object_store_memory=150 << 20)  # the autoscaler's replacement
        code = job.wait(timeout=400)
        drill_s = time.time() - t0
        assert code == 0, log.read_text()[-6000:]
    finally:
        ray.shutdown()
        cluster.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"undisturbed run {calm_s:.1f} s; with a node lost at {removed_at:.1f} s: {drill_s:.1f} s")
    resumed = [json.loads(p.read_text())["resumed_at_step"] for p in sorted((run_dir / "resumes").glob("*.json"))]
    assert resumed and all(s in (2, 4) for s in resumed), resumed  # restarted from a checkpoint, not from scratch
    for rank in (0, 1):  # each rank trained on the same batches (running digest) and ends at the same cursor
        calm_rec, drill_rec = (json.loads((d / "checkpoint_00000006" / f"data_rank{rank}.json").read_text())
                               for d in (out / "calm", run_dir))
        assert drill_rec["batches_digest"] == calm_rec["batches_digest"] and drill_rec == calm_rec
    assert _final_digest(run_dir, 6) == _final_digest(out / "calm", 6)
