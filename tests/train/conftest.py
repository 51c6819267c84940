"""Fixtures of the Ray Train end-to-end tests: the 3-clip corpus on the S3 server and the one undisturbed stage-1 run
that the drills of test_ray.py and test_lost_node.py end equal to (tests/train/helpers.py)."""

from __future__ import annotations

import pytest

from pipeline.decode.synth import make_sample_corpus
from tests.conftest import _ensure_local_ray
from tests.train.helpers import train_cfg


@pytest.fixture(scope="session")
def s3_corpus(s3_server, tmp_path_factory):
    """Three synthetic clips uploaded to a fresh bucket; returns (bucket, input URL)."""
    local = make_sample_corpus(tmp_path_factory.mktemp("corpus"), num_clips=3, seconds=6.5, fps=12.0, width=64, height=48)
    bucket = s3_server.make_bucket("train")
    fs = s3_server.filesystem()
    for f in sorted(local.iterdir()):
        fs.put(str(f), f"{bucket}/videos/{f.name}")
    return bucket, f"s3://{bucket}/videos"


@pytest.fixture(scope="session")
def calm_run(s3_server, s3_corpus) -> str:
    """Stage 1, 6 steps, undisturbed, on the session's local Ray: its run dir (`<bucket>/runs/calm`)."""
    from pipeline.train.run import run_training

    bucket, input_url = s3_corpus
    _ensure_local_ray()
    run_training(train_cfg(s3_server, input_url, f"s3://{bucket}/runs", 1, steps=6, name="calm"))
    return f"{bucket}/runs/calm"
