"""A newcomer's first hour, scripted: a foreign output folder, a missing input, a bad preset or key, no credentials,
access denied, no such bucket, an unreachable Ray, a `limit=` run, a second corpus into the same output. Each case
checks the exit code (pipeline/errors.py), the one-line message and its next step, no traceback, and that nothing of
the user's was touched."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.entrypoints import run_command
from pipeline.errors import CONFIG, RAY_START
from tests.conftest import start_moto, stop_moto
from tests.tokenize.helpers import CLIPS, FAST, make_corpus, tokenize_in_process

REPO = Path(__file__).resolve().parents[2]
JOB = REPO / "jobs" / "tokenize_corpus.py"


def _job(capsys, *args: str) -> tuple[int, str]:
    """Run the tokenize job in this process (what `python jobs/tokenize_corpus.py ARGS` does): (exit code, stderr)."""
    r = tokenize_in_process(capsys, *args)
    return r.returncode, r.stderr


def _subprocess_job(*args: str, env: dict | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(JOB), *args], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})}, cwd=cwd)


def _user_folder(base: Path) -> dict[str, bytes]:
    """A folder of the user's own files; returns {relative path: bytes} to compare after the job."""
    (base / "photos").mkdir(parents=True)
    files = {"notes.txt": b"my notes\n", "README.md": b"# my project\n", "photos/cat.jpg": b"\xff\xd8not really"}
    for rel, data in files.items():
        (base / rel).write_bytes(data)
    return files


def _snapshot(base: Path) -> dict[str, bytes]:
    return {str(p.relative_to(base)): p.read_bytes() for p in sorted(base.rglob("*")) if p.is_file()}


def test_first_hour_foreign_output_is_refused_and_untouched(tmp_path, capsys):
    """An output folder holding the user's files is refused (exit 2, the files listed), and nothing in it changes."""
    make_corpus(tmp_path / "in", clips=CLIPS[:1])
    mine = tmp_path / "mine"
    files = _user_folder(mine)
    code, err = _job(capsys, f"input={tmp_path / 'in'}", f"output={mine}", *FAST)
    assert code == CONFIG, err
    assert "is not empty and is not an output of this project" in err and "notes.txt" in err and "photos/" in err
    assert "Traceback" not in err
    assert _snapshot(mine) == files  # not one file added, changed or removed


def test_first_hour_missing_input_bad_preset_bad_key(tmp_path, capsys):
    """A missing input, an unknown preset, a misspelt key: exit 2 at once, one message with the fix, no traceback,
    and no output folder left behind (the next attempt with other settings is not refused)."""
    out = tmp_path / "out"
    code, err = _job(capsys, f"input={tmp_path / 'nope'}", f"output={out}", *FAST)
    assert code == CONFIG and "neither a file nor a folder" in err and "Traceback" not in err, err
    assert not out.exists() or not (out / "_job.json").exists()  # the record is written only after the listing
    code, err = _job(capsys, f"input={tmp_path}", f"output={out}", "preset=vidtok_fsq_causal_488_32768_tny", *FAST)
    assert code == CONFIG and "did you mean" in err and "vidtok_fsq_causal_488_32768_tiny" in err, err
    code, err = _job(capsys, f"inptu={tmp_path}", f"output={out}")
    assert code == CONFIG and "did you mean input" in err, err
    assert not (tmp_path / "sample_corpus").exists()  # settings are checked before anything is generated


@pytest.fixture(scope="module")
def auth_s3():
    """A moto server that checks credentials (unknown access keys are refused, as S3 does)."""
    proc, endpoint = start_moto(INITIAL_NO_AUTH_ACTION_COUNT="0")
    yield endpoint
    stop_moto(proc)


NO_AWS = {"AWS_EC2_METADATA_DISABLED": "true", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
          "AWS_CONFIG_FILE": "/nonexistent", "AWS_DEFAULT_REGION": "us-east-1"}


def _without_credentials() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    return {**env, **NO_AWS, "PYTHONPATH": str(REPO)}


def test_first_hour_storage_configuration_errors(tmp_path, s3_server, auth_s3, capsys):
    """No credentials, a key the store does not know, a bucket that does not exist: each is a configuration error
    (exit 2 within seconds: never retried as transient) whose message names what to set. The first two run in a
    process of their own (their environment holds the credentials), the third in this one."""
    args = [f"output={tmp_path / 'out'}", *FAST]
    r = subprocess.run([sys.executable, str(JOB), "input=s3://bkt/videos/",
                        f"storage.endpoint_url={s3_server.endpoint_url}", *args], capture_output=True, text=True,
                       timeout=300, env=_without_credentials())
    assert r.returncode == CONFIG, r.stderr[-2000:]
    assert "no credentials" in r.stderr and "AWS_PROFILE" in r.stderr and "storage.endpoint_url" in r.stderr
    assert "transient failure" not in r.stderr and "Traceback" not in r.stderr  # not retried

    r = _subprocess_job("input=s3://bkt/videos/", f"storage.endpoint_url={auth_s3}", *args,
                        env={**NO_AWS, "AWS_ACCESS_KEY_ID": "AKIDUNKNOWN", "AWS_SECRET_ACCESS_KEY": "wrong"})
    assert r.returncode == CONFIG and "access denied" in r.stderr and "InvalidAccessKeyId" in r.stderr, r.stderr[-2000:]
    assert "transient failure" not in r.stderr

    r = tokenize_in_process(capsys, f"input=s3://no-such-bucket-{os.getpid()}/videos/",
                            f"storage.endpoint_url={s3_server.endpoint_url}", *args)
    assert r.returncode == CONFIG and "no such bucket" in r.stderr, r.stderr[-2000:]
    assert not (tmp_path / "out" / "_job.json").exists()


def test_first_hour_unreachable_ray_has_its_own_exit_code(tmp_path):
    """`ray.address` where nothing listens: exit 4 with one line saying what to try, no traceback."""
    make_corpus(tmp_path / "in", clips=CLIPS[:1])
    r = _subprocess_job(f"input={tmp_path / 'in'}", f"output={tmp_path / 'out'}", "ray.address=127.0.0.1:1", *FAST)
    assert r.returncode == RAY_START, r.stderr[-2000:]
    assert "nothing answers at ray.address=127.0.0.1:1" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.slow
def test_first_hour_limit_is_partial_and_corpora_do_not_merge(tmp_path, capsys, ray_local):
    """`limit=1` of 3 inputs: exit 0 but no _SUCCESS, `complete: false`, "partial: limit=1 of 3 listed" in the
    summary and the card; the console shows the project's lines only (Ray's go to _logs/); a second corpus into the
    same output is refused unless append=true; the same command without the limit completes the output. The first
    run is a newcomer's, in its own process with its own Ray; the others run in this one (`tokenize_in_process`)."""
    make_corpus(tmp_path / "in", clips=CLIPS)
    make_corpus(tmp_path / "other", clips=CLIPS[:1])
    out = tmp_path / "out"
    common = [f"output={out}", *FAST, "ray.num_cpus=2", "ray.object_store_mb=300"]
    r = _subprocess_job(f"input={tmp_path / 'in'}", "limit=1", *common, cwd=tmp_path)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["complete"] is False and summary["partial"] == "limit=1 of 3 listed"
    assert not (out / "_SUCCESS").exists()
    assert "Partial: limit=1 of 3 listed" in (out / "README.md").read_text()
    assert "PARTIAL: limit=1 of 3 listed" in r.stderr
    console = r.stdout + r.stderr
    for noise in ("Running Dataset", "core_worker", "Execution plan", "Started a local Ray", "Traceback"):
        assert noise not in console, noise
    assert "progress: inputs 1/1" in console and "done: 1 inputs this run" in console
    logs = list((out / "_logs").glob("*.log"))
    assert logs and "Started a local Ray" in logs[0].read_text()  # Ray's own lines are kept, off the console
    temp = re.search(r"starting a private local Ray \(temp dir (\S+)\)", console)
    assert temp and not Path(temp.group(1)).exists()  # Ray's session folder is removed once the private Ray stopped

    r = tokenize_in_process(capsys, f"input={tmp_path / 'other'}", *common, "dry_run=true")
    assert r.returncode == 0 and "a run would refuse this output" in r.stdout, r.stdout[-2000:]
    r = tokenize_in_process(capsys, f"input={tmp_path / 'other'}", *common)
    assert r.returncode == CONFIG and "append=true" in r.stderr, r.stderr[-2000:]
    r = tokenize_in_process(capsys, f"input={tmp_path / 'other'}", *common, "append=true", "dry_run=true")
    assert r.returncode == 0 and "would refuse" not in r.stdout, r.stdout[-2000:]

    r = tokenize_in_process(capsys, f"input={tmp_path / 'in'}", *common)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["complete"] is True and summary["partial"] is None and (out / "_SUCCESS").exists()
    assert summary["inputs_done_before"] == 1 and summary["inputs_this_run"] == 2
    # 64x48 (4:3) clips into 32x32 windows: resized to 32x43, the sides cut: 1 - 32*32 / (32*43) of each frame
    import pyarrow.parquet as pq

    status = pq.read_table(out / "status").to_pylist()
    assert len(status) == 3 and all(abs(r["crop_dropped"] - (1 - 32 / 43)) < 1e-4 for r in status), status
    assert summary["crop_this_run"]["inputs_cropped"] == 2
    assert "the crop dropped 25.6 % of their pixels" in (out / "README.md").read_text()
    record = json.loads((out / "_job.json").read_text())
    assert record["kind"] == "tokenize" and [i["url"] for i in record["inputs"]] == [str(tmp_path / "in")]


def test_first_hour_training_and_export_refuse_foreign_folders(tmp_path, capsys):
    """A training run dir and an export folder that hold the user's files are refused before anything starts (no
    Ray, no checkpoint read), and the files stay as they were."""
    from pipeline.config import ConfigError, load_config
    from pipeline.train.config import TrainConfig
    from pipeline.train.run import run_training

    run_dir = tmp_path / "runs" / "mine"
    files = _user_folder(run_dir)
    cfg = load_config(TrainConfig, None, [f"output={tmp_path / 'runs'}", "name=mine"])
    with pytest.raises(ConfigError, match="is not an output of this project"):
        run_training(cfg)
    assert _snapshot(run_dir) == files

    out = tmp_path / "export"
    files = _user_folder(out)
    code = run_command("export", ["preset=vidtok_fsq_causal_488_32768_tiny", f"checkpoint={tmp_path / 'none.ckpt'}",
                                  f"output={out}"])
    err = capsys.readouterr().err
    assert code == CONFIG and "is not an output of this project" in err, err
    assert _snapshot(out) == files
