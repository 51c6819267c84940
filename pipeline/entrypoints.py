"""Console commands for the jobs (`[project.scripts]` in pyproject.toml): `vidtok-tokenize input=... output=...`.

Each command runs the job file itself (`jobs/<job>.py`, as `__main__`, with the same arguments), so there is one
`main` per job and `python jobs/<job>.py` keeps working for `ray job submit --working-dir .`:

    vidtok-tokenize            jobs/tokenize_corpus.py      vidtok-evaluate            jobs/evaluate.py
    vidtok-train-stage1        jobs/train_stage1.py         vidtok-reconstruct         jobs/reconstruct.py
    vidtok-train-stage2        jobs/train_stage2.py         vidtok-export-webdataset   jobs/export_webdataset.py
    vidtok-export              jobs/export.py (official layout + diffusers folder)
    vidtok-cache-frames        jobs/cache_frames.py (the training frames cache, docs/frames_cache.md)

The jobs folder is found beside the `pipeline` package, i.e. in the checkout an editable install (`pip install -e .`,
what `make setup`, the cluster setup commands and cluster/Dockerfile do) points at; a non-editable install has no
jobs/ and the command says so.
"""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

JOBS_DIR = Path(__file__).resolve().parent.parent / "jobs"


def run_job_file(job: str, argv: list[str] | None = None) -> int:
    """Run `jobs/<job>.py` as `__main__` with `argv` (default: this process's arguments); returns its exit code."""
    path = JOBS_DIR / f"{job}.py"
    if not path.exists():
        print(f"{path} not found: the vidtok-* commands run the job files of a checkout; install it with "
              "`pip install -e <checkout>` (or run `python jobs/{job}.py` there)", file=sys.stderr)
        return 2
    sys.argv = [str(path), *(sys.argv[1:] if argv is None else argv)]
    try:
        runpy.run_path(str(path), run_name="__main__")
    except SystemExit as e:  # the job ends with sys.exit(run_job(...))
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    return 0


def tokenize() -> int:
    return run_job_file("tokenize_corpus")


def train_stage1() -> int:
    return run_job_file("train_stage1")


def train_stage2() -> int:
    return run_job_file("train_stage2")


def evaluate() -> int:
    return run_job_file("evaluate")


def reconstruct() -> int:
    return run_job_file("reconstruct")


def export_webdataset() -> int:
    return run_job_file("export_webdataset")


def export() -> int:
    return run_job_file("export")


def cache_frames() -> int:
    return run_job_file("cache_frames")
