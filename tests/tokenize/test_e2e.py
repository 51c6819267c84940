"""End to end through real processes: kill -9 of the driver and of a worker, then resume exactly once."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import fsspec
import pytest

from pipeline.decode import DecodeConfig
from pipeline.decode.segments import MIN_BYTES_PER_S
from pipeline.tokenize.run import run_tokenize
from pipeline.tokenize.segments import TASK_COLUMN, SplitLong
from tests.tokenize.helpers import FAST, expected_windows, job_config, make_corpus, plan_table, read_folder, \
    token_rows, tokenize_in_process

REPO = Path(__file__).resolve().parents[2]
LOCAL = fsspec.filesystem("file")
CLIPS6 = [(12.0, 24.0), (6.5, 25.0), (18.0, 30.0), (12.0, 24.0), (6.5, 30.0), (12.0, 25.0)]


def _descendants(pid: int) -> list[int]:
    """Every live process below `pid` (Ray's gcs, raylet and workers of a driver-started local Ray)."""
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                ppid = int(Path(f"/proc/{d}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(d))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


_RAY_TMPS: list[str] = []


@pytest.fixture(autouse=True)
def _remove_ray_temp_dirs():
    yield
    while _RAY_TMPS:
        shutil.rmtree(_RAY_TMPS.pop(), ignore_errors=True)


def _start_job(args: list[str], tmp: Path) -> subprocess.Popen:
    ray_tmp = tempfile.mkdtemp(prefix="vtk", dir="/tmp")  # AF_UNIX socket paths must stay short
    _RAY_TMPS.append(ray_tmp)
    env = dict(os.environ, VIDTOK_RAY_TMP=ray_tmp, OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, str(REPO / "jobs/tokenize_corpus.py"), *args, "ray.num_cpus=3",
                             "ray.object_store_mb=300"], cwd=tmp, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def _wait_for_shards(out: Path, proc: subprocess.Popen, n: int, timeout: float = 240) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if (out / "tokens").exists() and len([f for f in os.listdir(out / "tokens") if f.endswith(".parquet")]) >= n:
            return
        if proc.poll() is not None:
            pytest.fail(f"job ended before {n} shards were committed:\n{proc.stdout.read()[-3000:]}")
        time.sleep(0.2)
    pytest.fail(f"no {n} committed shards after {timeout} s")


CHAIN_STAGES = ("DecodeInputs", "TokenizeClips", "WriteTokenShard")


def _wait_for_chain_worker(proc: subprocess.Popen, timeout: float = 240) -> int:
    """Pid of a Ray worker busy in one of the chain's stages, polled as soon as the job starts working.

    Polling (instead of waiting for a further shard first) keeps the kill inside the run even when the machine is
    fast and few windows are left: an idle worker is named `ray::IDLE`, so the stage name means work in flight.
    """
    deadline = time.time() + timeout
    while time.time() < deadline:
        for p in _descendants(proc.pid):
            cmd = _cmdline(p)
            if cmd.startswith("ray::") and any(stage in cmd for stage in CHAIN_STAGES):
                return p
        if proc.poll() is not None:
            pytest.fail(f"the job ended before a chain worker could be killed:\n{proc.stdout.read()[-3000:]}")
        time.sleep(0.05)
    pytest.fail(f"no Ray worker of the chain ({', '.join(CHAIN_STAGES)}) appeared within {timeout} s")


def _kill_tree(procs: list[int]) -> None:
    for p in procs:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.mark.slow
def test_tokenize_kill9_driver_and_worker_then_rerun_exactly_once(ray_local, tmp_path, capsys):
    """kill -9 of the driver mid-run, then a rerun during which a worker is killed -9: every window exactly once,
    the output equal to an uninterrupted run's (whole inputs), one `ok` row per input. One run holds both kinds of
    input: `decode.segment_s` is set at the 18-s clip's size, so it alone is cut into segments, one task each
    (`pipeline.decode.segments.worth_probing`), and the others stay whole."""
    paths = make_corpus(tmp_path / "in", clips=CLIPS6)
    want = expected_windows(CLIPS6)
    long = os.path.getsize(paths[2])
    assert all(os.path.getsize(p) < long for p in paths if p != paths[2])
    segment_s = (long - 1) / MIN_BYTES_PER_S
    tasks = SplitLong(DecodeConfig(size=32, num_frames=17, segment_s=segment_s))(plan_table(paths))
    cut = [t[0]["source"] for t in tasks.column(TASK_COLUMN).to_pylist() if t[0]["segment_first"] is not None]
    assert cut == [str(paths[2])] * 3  # one window per segment

    run_tokenize(job_config(str(tmp_path / "in"), str(tmp_path / "ref"), "decode.segment_s=null"))  # the reference
    out = tmp_path / "out"
    args = [f"input={tmp_path / 'in'}", f"output={out}", *FAST, "shards.shard_rows=1", f"decode.segment_s={segment_s}"]

    proc = _start_job(args, tmp_path)
    _wait_for_shards(out, proc, 1)
    ray_procs = _descendants(proc.pid)
    os.kill(proc.pid, signal.SIGKILL)  # the driver dies between commits, or in the middle of one
    proc.wait()
    time.sleep(2)
    _kill_tree([p for p in ray_procs if os.path.exists(f"/proc/{p}")])  # its local Ray, by pid, nothing else
    committed = len(os.listdir(out / "tokens"))
    assert committed < want, "the job finished before the kill; the test needs a slower corpus"
    assert not (out / "_SUCCESS").exists()

    proc = _start_job(args, tmp_path)
    worker = _wait_for_chain_worker(proc)
    os.kill(worker, signal.SIGKILL)  # whichever stage it runs (decode task, tokenizer actor, writer): Ray retries it
    text, _ = proc.communicate(timeout=400)
    assert proc.returncode == 0, text[-4000:]

    a, b = read_folder(LOCAL, str(tmp_path / "ref/tokens")), read_folder(LOCAL, str(out / "tokens"))
    assert a.num_rows == b.num_rows == want, (a.num_rows, b.num_rows)
    assert token_rows(a) == token_rows(b)
    st = read_folder(LOCAL, str(out / "status"))
    assert sorted(st.column("source").to_pylist()) == sorted(set(st.column("source").to_pylist()))
    assert st.num_rows == len(CLIPS6) and set(st.column("status").to_pylist()) == {"ok"} and (out / "_SUCCESS").exists()
    assert not [f for f in os.listdir(out / "tokens") if f.endswith(".tmp")] and not (out / "_plan").exists()

    again = tokenize_in_process(capsys, *args)
    assert again.returncode == 0 and "nothing to do" in again.stdout


@pytest.mark.slow
def test_tokenize_frames_output_kill9_then_rerun_exactly_once(ray_local, tmp_path, capsys):
    """With the frames side output (`frames.output`): kill -9 of the driver mid-run, then a rerun: the tokens of an
    uninterrupted run, one `ok` row per input, and a frames cache holding every sample of every input once (no
    duplicate index row, every frame equal to the decoded source's), its index folded, the summary's `frames`. The
    longest clip is cut into segments (their rows assembled into one index row), the others stay whole."""
    from pipeline.frames.store import load_cache_state
    from pipeline.storage import OutputLayout
    from tests.frames.test_cache import _check_all_frames

    paths = make_corpus(tmp_path / "in", clips=CLIPS6)
    want = expected_windows(CLIPS6)
    run_tokenize(job_config(str(tmp_path / "in"), str(tmp_path / "ref"), "decode.segment_s=null"))  # the reference
    out, cache = tmp_path / "out", tmp_path / "frames"
    segment_s = (os.path.getsize(paths[2]) - 1) / MIN_BYTES_PER_S  # the 18-s clip alone is cut (3 segments)
    args = [f"input={tmp_path / 'in'}", f"output={out}", *FAST, "shards.shard_rows=1", f"frames.output={cache}",
            "frames.size=32", "frames.frames_per_row=8", f"decode.segment_s={segment_s}"]
    proc = _start_job(args, tmp_path)
    _wait_for_shards(out, proc, 1)
    ray_procs = _descendants(proc.pid)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    time.sleep(2)
    _kill_tree([p for p in ray_procs if os.path.exists(f"/proc/{p}")])
    assert len(os.listdir(out / "tokens")) < want, "the job finished before the kill; the test needs a slower corpus"

    rerun = tokenize_in_process(capsys, *args)  # the same command, in this process
    assert rerun.returncode == 0, (rerun.stdout + rerun.stderr)[-4000:]
    a, b = read_folder(LOCAL, str(tmp_path / "ref/tokens")), read_folder(LOCAL, str(out / "tokens"))
    assert a.num_rows == b.num_rows == want and token_rows(a) == token_rows(b)
    st = read_folder(LOCAL, str(out / "status"))
    assert st.num_rows == len(CLIPS6) and set(st.column("status").to_pylist()) == {"ok"}
    state = load_cache_state(OutputLayout(str(cache)))
    assert state.ok == len(CLIPS6) and state.duplicates == 0 and not state.failures
    _check_all_frames(str(cache), [str(p) for p in paths])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frames"]["videos"] == len(CLIPS6) and summary["frames"]["parts_folded"] >= 1
    assert (cache / "index" / "_index.json").exists()  # the run's parts folded into buckets
    assert len(list((cache / "segments").glob("*/*/rows-*.parquet"))) == 3  # the long clip's segment parts
