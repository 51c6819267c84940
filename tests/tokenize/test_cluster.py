"""The tokenize job on real multi-process clusters: a multi-node `Cluster` (CPU nodes + a GPU node) and a
`ray start --head` cluster the job is submitted to with `ray job submit`, exactly as docs/tokenize.md says."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import fsspec
import pytest

from pipeline.tokenize.run import run_tokenize
from tests.conftest import local_cluster
from tests.tokenize.helpers import CLIPS, FAST, expected_windows, job_config, make_corpus, read_folder

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(os.environ.get("VIRTUAL_ENV", REPO / ".venv")) / "bin"
LOCAL = fsspec.filesystem("file")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_tokenize_multinode_decode_on_cpu_nodes_tokenizer_on_gpu_node(tmp_path, monkeypatch):
    """Decode tasks run only on CPU nodes, the tokenizer actor on the node advertising a GPU (CPU fallback inside)."""
    with local_cluster(monkeypatch, "vtc") as cluster:
        cpu_nodes = [cluster.add_node(num_cpus=2, object_store_memory=200 << 20) for _ in range(2)]
        gpu_node = cluster.add_node(num_cpus=0, num_gpus=1, object_store_memory=200 << 20)
        cluster.wait_for_nodes()
        make_corpus(tmp_path / "in")
        # tokenizer.num_cpus=0: the GPU node has no CPU slot, so nothing but the tokenizer actor can land there
        cfg = job_config(str(tmp_path / "in"), str(tmp_path / "out"), f"ray.address={cluster.address}",
                         "tokenizer.num_gpus=1", "tokenizer.num_cpus=0")
        s = run_tokenize(cfg)
    assert s["windows_this_run"] == expected_windows()
    assert set(s["nodes"]["decode"]) <= {n.node_id for n in cpu_nodes} and s["nodes"]["decode"]
    assert s["nodes"]["tokenizer"] == [gpu_node.node_id]
    assert s["nodes"]["tokenizer_device"] == ["cpu"]  # no CUDA here: the actor fell back to the CPU
    assert read_folder(LOCAL, str(tmp_path / "out/tokens")).num_rows == expected_windows()


@pytest.mark.slow
def test_tokenize_ray_job_submit_with_token_auth(tmp_path):
    """`ray start --head` + `ray job submit --working-dir . -- python jobs/tokenize_corpus.py ...` with token auth."""
    env = dict(os.environ, RAY_AUTH_MODE="token", PATH=f"{VENV_BIN}:{os.environ['PATH']}", OMP_NUM_THREADS="1")
    env.pop("RAY_ADDRESS", None)
    ray_bin = str(VENV_BIN / "ray")
    # the documented one-time step: create ~/.ray/auth_token if there is none (prints the token: keep it off the log)
    subprocess.run([ray_bin, "get-auth-token", "--generate"], env=env, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    gcs, dash = _free_port(), _free_port()
    tmp = tempfile.mkdtemp(prefix="vth", dir="/tmp")
    head = subprocess.Popen([ray_bin, "start", "--head", "--block", f"--port={gcs}", f"--dashboard-port={dash}",
                             "--dashboard-host=127.0.0.1", f"--temp-dir={tmp}", "--num-cpus=3",
                             "--object-store-memory=300000000", "--disable-usage-stats",
                             f"--ray-client-server-port={_free_port()}",
                             # the agent's HTTP port defaults to 52365: another Ray on a shared host may hold it
                             f"--dashboard-agent-listen-port={_free_port()}"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        make_corpus(tmp_path / "in", clips=CLIPS[:2])
        out = tmp_path / "out"
        address = f"http://127.0.0.1:{dash}"
        deadline = time.time() + 120
        while subprocess.run([ray_bin, "job", "list", f"--address={address}"], env=env,
                             capture_output=True).returncode != 0:
            assert head.poll() is None and time.time() < deadline, "ray start --head did not come up"
            time.sleep(2)
        for _ in range(10):  # right after start the head may answer "No available agent to submit job" for a while
            r = subprocess.run([ray_bin, "job", "submit", f"--address={address}", "--working-dir", ".", "--",
                                "python", "jobs/tokenize_corpus.py", f"input={tmp_path / 'in'}", f"output={out}",
                                *FAST], cwd=REPO, env=env, capture_output=True, text=True, timeout=480)
            if "No available agent" not in r.stderr:
                break
            time.sleep(3)
        assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
        assert "succeeded" in r.stdout + r.stderr
        # no sys.path edit in the job: Ray put the uploaded working dir on PYTHONPATH, and `pipeline` came from it
        found = re.search(r"pipeline package: (\S+)", r.stdout + r.stderr)
        assert found and "_ray_pkg" in found.group(1) and not found.group(1).startswith(str(REPO)), found
        summary = json.loads((out / "summary.json").read_text())
        assert summary["windows_this_run"] == expected_windows(CLIPS[:2]) and summary["failures_this_run"] == {}
    finally:
        head.terminate()  # only this head (and the processes it started); never `ray stop`
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            head.kill()
        shutil.rmtree(tmp, ignore_errors=True)
