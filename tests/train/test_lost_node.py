"""Ray Train on a `ray.cluster_utils.Cluster`: the node of one worker is removed mid-run; the run restarts from its last
checkpoint and ends in the state of the undisturbed run (`calm_run`; the training order is fixed and resumable:
pipeline/train/order.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.train.checkpoint import CKPT_PREFIX
from pipeline.train.loop import SNAPSHOT_FILE
from tests.conftest import local_cluster
from tests.train.helpers import REPO, digest_of_checkpoint, load_torch, train_cfg, train_overrides

pytestmark = [pytest.mark.slow, pytest.mark.alone]


def _train_job(cluster, overrides: list[str], log: Path) -> subprocess.Popen:
    """The stage-1 job, as an operator runs it against the cluster: 2 workers, one per node (STRICT_SPREAD)."""
    # the controller's poll of its workers: 0.5 s as on a local Ray (pipeline/train/run.py), not the 2-s default
    env = {**os.environ, "PYTHONPATH": str(REPO), "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.5"}
    env.pop("RAY_ADDRESS", None)
    cmd = [sys.executable, str(REPO / "jobs" / "train_stage1.py"), *overrides, "placement_strategy=STRICT_SPREAD",
           "export=false", f"ray.address={cluster.address}"]
    return subprocess.Popen(cmd, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, cwd=REPO)


def _wait(proc: subprocess.Popen, what: str, cond, log: Path, timeout: float = 300.0) -> None:
    t0 = time.time()
    while not cond():
        assert proc.poll() is None, f"the job ended (exit {proc.returncode}) before {what}: {log.read_text()[-4000:]}"
        assert time.time() - t0 < timeout, f"no {what} within {timeout:.0f}s"
        time.sleep(0.2)


def test_train_ray_lost_node_restarts_from_checkpoint_same_final_state(tmp_path, monkeypatch, s3_server, s3_corpus,
                                                                       calm_run):
    """Two 2-CPU nodes each hold one Ray Train worker; once checkpoint 2 is registered, one node is removed (SIGKILL,
    as a spot reclaim) and a fresh one added: FailureConfig restarts the group from the last checkpoint and the final
    state digest and each rank's batches equal the undisturbed run's."""
    bucket, input_url = s3_corpus
    fs = s3_server.filesystem()
    run_dir, log = f"{bucket}/runs/drill", tmp_path / "drill.log"

    def registered(step: int) -> bool:
        """Ray Train's controller has registered checkpoint `step` (its snapshot names it): a restart resumes from it
        or a later one."""
        try:
            return f"{CKPT_PREFIX}{step:08d}" in fs.cat_file(f"{run_dir}/{SNAPSHOT_FILE}").decode()
        except FileNotFoundError:
            return False

    with local_cluster(monkeypatch, "vtt") as cluster:
        nodes = [cluster.add_node(num_cpus=2, object_store_memory=150 << 20) for _ in range(2)]
        cluster.wait_for_nodes()
        t0 = time.time()
        job = _train_job(cluster, train_overrides(s3_server, input_url, f"s3://{bucket}/runs", 1, steps=6,
                                                  name="drill"), log)
        # gated on the controller's record of checkpoint 2, not on a sleep: the run is then mid-way, whatever the
        # machine's speed, and a restart resumes from a checkpoint, not from scratch
        _wait(job, "checkpoint 2 registered", lambda: registered(2), log)
        assert job.poll() is None and not fs.exists(f"{run_dir}/checkpoint_00000006"), "the run ended before the drill"
        cluster.remove_node(nodes[1], allow_graceful=False)  # STRICT_SPREAD: this node holds one of the two workers
        removed_at = time.time() - t0
        cluster.add_node(num_cpus=2, object_store_memory=150 << 20)  # the autoscaler's replacement
        code = job.wait(timeout=400)
        drill_s = time.time() - t0
        assert code == 0, log.read_text()[-6000:]
    print(f"node lost at {removed_at:.1f} s; the run ended at {drill_s:.1f} s")
    fs.invalidate_cache()
    resumed = [json.loads(fs.cat_file(p))["resumed_at_step"] for p in sorted(fs.glob(f"{run_dir}/resumes/*.json"))]
    assert resumed and all(s in (2, 4) for s in resumed), resumed  # restarted from a checkpoint, not from scratch
    for rank in (0, 1):  # each rank trained on the same batches (running digest) and ends at the same cursor
        calm_rec, drill_rec = (json.loads(fs.cat_file(f"{d}/checkpoint_00000006/data_rank{rank}.json"))
                               for d in (calm_run, run_dir))
        assert drill_rec["batches_digest"] == calm_rec["batches_digest"] and drill_rec == calm_rec
    cfg = train_cfg(s3_server, input_url, f"s3://{bucket}/runs", 1)
    digests = [digest_of_checkpoint(cfg, load_torch(fs, f"{d}/checkpoint_00000006/state.pt")) for d in (calm_run, run_dir)]
    assert digests[0] == digests[1]
