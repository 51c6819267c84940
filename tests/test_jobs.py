"""Every job in jobs/: `--help` lists every key without starting Ray, and a bad key is exit code 2 with its name."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


from pipeline.config import describe
from pipeline.decode import DecodeConfig
from pipeline.evaluate.run import EvaluateConfig
from pipeline.tokenize.config import TokenizeJobConfig
from pipeline.train.config import TrainConfig

REPO = Path(__file__).resolve().parents[1]
JOBS = sorted(p.name for p in (REPO / "jobs").glob("*.py"))

# Run each job's __main__ with --help in turn, in one process (the tokenize job first: torch must not be loaded
# by its help), and report after each job which heavy modules are loaded by then.
_PROBE = """import runpy, sys
for job in {jobs!r}:
    sys.argv = [job, '--help']
    try:
        runpy.run_path(job, run_name='__main__')
    except SystemExit as e:
        code = e.code
    print('JOB', job.rsplit('/', 1)[1], 'EXIT', code, 'LOADED', sorted(m for m in ('ray', 'torch') if m in sys.modules))
"""


def test_jobs_help_lists_every_key_without_ray():
    """`--help` of every job file prints the docstring and every key with type, default and comment, and never
    imports (or starts) Ray; the tokenize job's help does not even load torch."""
    jobs = sorted((str(REPO / "jobs" / j) for j in JOBS), key=lambda j: not j.endswith("tokenize_corpus.py"))
    r = subprocess.run([sys.executable, "-c", _PROBE.format(jobs=jobs)], cwd=REPO, capture_output=True, text=True,
                       timeout=300)
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("JOB ")]
    assert len(lines) == len(JOBS), r.stdout[-2000:] + r.stderr[-2000:]
    for line in lines:
        assert " EXIT 0 " in line and "'ray'" not in line, line
    assert "'torch'" not in lines[0] and lines[0].startswith("JOB tokenize_corpus.py"), lines[0]
    assert r.stdout.count("Keys (set as key=value") == len(JOBS)


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
