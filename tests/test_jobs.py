"""Every job in jobs/: `--help` lists every key without starting Ray, and a bad key is exit code 2 with its name."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.config import describe
from pipeline.decode import DecodeConfig
from pipeline.evaluate.run import EvaluateConfig
from pipeline.tokenize.config import TokenizeJobConfig
from pipeline.train.config import TrainConfig

REPO = Path(__file__).resolve().parents[1]
JOBS = sorted(p.name for p in (REPO / "jobs").glob("*.py"))

# Run the job's __main__ with --help and report which heavy modules it imported.
_PROBE = ("import runpy, sys; sys.argv = [{job!r}, '--help']\n"
          "try:\n    runpy.run_path({job!r}, run_name='__main__')\nexcept SystemExit as e:\n    code = e.code\n"
          "print('EXIT', code); print('LOADED', sorted(m for m in ('ray', 'torch') if m in sys.modules))")


@pytest.mark.parametrize("job", JOBS)
def test_jobs_help_lists_every_key_without_ray(job):
    """`--help` prints the docstring and every key with type, default and comment, and never imports (or starts)
    Ray; the tokenize job's help does not even load torch."""
    r = subprocess.run([sys.executable, "-c", _PROBE.format(job=str(REPO / "jobs" / job))], cwd=REPO,
                       capture_output=True, text=True, timeout=120)
    assert "EXIT 0" in r.stdout, r.stdout[-2000:] + r.stderr[-2000:]
    loaded = r.stdout.rsplit("LOADED", 1)[1]
    assert "ray" not in loaded and (job != "tokenize_corpus.py" or "torch" not in loaded), loaded
    assert "Keys (set as key=value" in r.stdout


def test_jobs_help_shows_types_defaults_and_comments():
    """The help rows come from the schema: nested keys dotted, declared defaults, the field's comment."""
    rows = {k: (t, d, c) for k, t, d, c in describe(TokenizeJobConfig)}
    assert rows["decode.fps"][1] == "3.0" and "presentation timestamps" in rows["decode.fps"][2]
    assert rows["tokenizer.num_gpus"][1] == "null" and "GPUs" in rows["tokenizer.num_gpus"][2]
    assert rows["decode_task.memory_mb"][2].endswith("serialise decoding on the GPU actor")  # continued comment
    train = {k: d for k, _, d, _ in describe(TrainConfig)}
    assert train["steps"] == "null" and train["loss.perceptual_weight"] == "null"  # schedule keys stay null


def test_jobs_bad_key_exits_2_naming_it(tmp_path):
    """A typo in a key fails before any work: exit code 2, the key in the message, no traceback."""
    r = subprocess.run([sys.executable, str(REPO / "jobs/tokenize_corpus.py"), "decode.fsp=3"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "decode.fsp" in r.stderr and "Traceback" not in r.stderr, r.stderr[-2000:]
    r = subprocess.run([sys.executable, str(REPO / "jobs/train_stage1.py"), "stage=2"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "train_stage2.py" in r.stderr and "Traceback" not in r.stderr, r.stderr[-2000:]


def test_jobs_share_one_decode_schema():
    """The tokenize, training and evaluation configs expose identical decode.* keys, types and defaults."""
    def decode_rows(schema):
        return sorted((k, t, d) for k, t, d, _ in describe(schema) if k.startswith("decode."))

    want = sorted((f"decode.{k}", t, d) for k, t, d, _ in describe(DecodeConfig))
    assert decode_rows(TokenizeJobConfig) == decode_rows(TrainConfig) == decode_rows(EvaluateConfig) == want
