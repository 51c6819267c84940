"""Console commands (`[project.scripts]`): one per job of `pipeline.entrypoints.COMMANDS` and per job file, each
answers `--help`, and — after `pip install -e .` — is an installed executable that answers `--help` too."""

from __future__ import annotations

import importlib
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest

from pipeline.entrypoints import COMMANDS

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]


def test_entrypoints_cover_every_job():
    """One command per job file and per library job, and each points at a function of pipeline.entrypoints; a job
    file only calls its library job (the jobs folder is not needed by an installed package)."""
    jobs = sorted(p.stem for p in (REPO / "jobs").glob("*.py"))
    assert len(SCRIPTS) == len(jobs) == 8 and sorted(COMMANDS) == jobs
    for job in jobs:
        assert "from pipeline.entrypoints import" in (REPO / "jobs" / f"{job}.py").read_text(), job
    module = importlib.import_module("pipeline.entrypoints")
    for name, target in SCRIPTS.items():
        mod, fn = target.split(":")
        assert mod == "pipeline.entrypoints" and callable(getattr(module, fn)), (name, target)


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_entrypoints_function_runs_the_job_help(name, monkeypatch, capsys):
    """The command's function runs its library job: `--help` prints the job's docstring and keys, exit 0."""
    fn = SCRIPTS[name].split(":")[1]
    monkeypatch.setattr(sys, "argv", [name, "--help"])
    assert getattr(importlib.import_module("pipeline.entrypoints"), fn)() == 0
    assert "Keys (set as key=value" in capsys.readouterr().out


def test_entrypoints_installed_executables_answer_help():
    """After `pip install -e .` every command is an executable beside the interpreter and answers `--help`."""
    installed = {ep.name for ep in metadata.distribution("vidtok-pipeline").entry_points
                 if ep.group == "console_scripts"}
    if not set(SCRIPTS) <= installed:
        pytest.skip(f"the installed vidtok-pipeline predates {sorted(set(SCRIPTS) - installed)}: run "
                    "`pip install -e .` (make setup does) to create the commands")
    exes = {name: Path(sys.executable).parent / name for name in sorted(SCRIPTS)}
    assert not [e for e in exes.values() if not e.exists()], "executables missing although the distribution declares them"
    procs = {name: subprocess.Popen([str(exe), "--help"], cwd="/", stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    text=True) for name, exe in exes.items()}  # at once: each is mostly imports
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0 and "Keys (set as key=value" in out, name + err[-2000:]
