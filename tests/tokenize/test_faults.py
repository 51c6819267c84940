"""A flaky object store (tests/faults.py in front of the moto server): 503 SlowDown, 500, bodies cut half-way and
outages. After the documented recovery every window is committed exactly once and every input's status is what a
fault-free run gives; a run that could not finish says so (no _SUCCESS, exit 3) and a re-run completes it."""

from __future__ import annotations

import json
import subprocess

import pyarrow as pa
import pytest

from pipeline.decode import DecodeConfig
from pipeline.retry import RetryPolicy
from pipeline.storage import OutputLayout, is_transient_error
from pipeline.tokenize.config import RetryConfig
from pipeline.tokenize.run import run_tokenize
from pipeline.tokenize.schema import PLAN_SCHEMA
from pipeline.tokenize.stages import DecodeInputs
from tests.faults import FaultProxy, Outage, proxy_options
from tests.tokenize.helpers import CLIPS, FAST, job_config, make_corpus, read_folder, token_rows, tokenize_in_process

CORPUS = CLIPS + [(6.5, 30.0)]  # 1 + 2 + 3 + 1 windows, plus one file that is not a video
FAST_RETRY = ["retry.base_s=0.2", "retry.max_s=2", "retry.attempts=8", "retry.deadline_s=60"]


@pytest.fixture(scope="module")
def corpus(s3_server, tmp_path_factory):
    """Videos (and one non-video) under s3://<bucket>/videos/, and the fault-free run's output read back."""
    fs = s3_server.filesystem()
    bucket = s3_server.make_bucket("faults")
    folder = tmp_path_factory.mktemp("faults")
    for p in make_corpus(folder / "in", clips=CORPUS):
        fs.put(str(p), f"{bucket}/videos/{p.name}")
    fs.pipe(f"{bucket}/videos/notes.mp4", b"this is not a video\n" * 50)
    return {"bucket": bucket, "input": f"s3://{bucket}/videos"}


@pytest.fixture(scope="module")
def baseline(corpus, s3_server, ray_local_module):
    out = f"s3://{corpus['bucket']}/clean"
    s = run_tokenize(job_config(corpus["input"], out, *_creds(s3_server.endpoint_url)))
    assert s["complete"] and s["windows_this_run"] == 7
    return _read(s3_server, corpus["bucket"], "clean")


def _creds(endpoint: str) -> list[str]:
    return [f"storage.endpoint_url={endpoint}", "storage.key=testing", "storage.secret=testing"]


def _read(s3_server, bucket: str, prefix: str) -> dict:
    fs = s3_server.filesystem()
    tok = read_folder(fs, f"{bucket}/{prefix}/tokens")
    st = read_folder(fs, f"{bucket}/{prefix}/status").to_pandas()
    newest = st.sort_values("committed_at").groupby("source").tail(1).set_index("source")  # newest row wins
    return {"tokens": tok, "windows": token_rows(tok), "status": newest["status"].to_dict(),
            "final": newest["final"].to_dict(), "success": fs.exists(f"{bucket}/{prefix}/_SUCCESS")}


def _assert_same_as_baseline(got: dict, baseline: dict) -> None:
    ids = got["tokens"].column("clip_id").to_pylist()
    assert len(ids) == len(set(ids)), f"{len(ids) - len(set(ids))} windows committed twice"
    assert got["windows"] == baseline["windows"], (sorted(set(got["windows"]) ^ set(baseline["windows"])))
    assert got["status"] == baseline["status"] and all(got["final"].values())


# ------------------------------------------------------------------------------------------------ no Ray: units
def test_faults_proxy_is_deterministic_and_bounded(s3_server):
    """The same seed gives the same decisions; at most `max_faults` are injected, then requests pass through."""
    fs0 = s3_server.filesystem()
    bucket = s3_server.make_bucket("fp")
    fs0.pipe(f"{bucket}/k", b"x" * 1000)
    runs = []
    for _ in range(2):
        with FaultProxy(s3_server.endpoint_url, seed=3, p_slowdown=0.3, p_internal=0.2, p_cut=0.2,
                        max_faults=3) as proxy:  # each fault costs botocore's backoff (up to seconds): few
            conn_fs = _fs(s3_server, proxy.endpoint_url)
            for _ in range(12):
                assert conn_fs.cat_file(f"{bucket}/k") == b"x" * 1000  # client retries absorb every fault
            runs.append((list(proxy.decisions), dict(proxy.stats)))
    assert runs[0] == runs[1]
    stats = runs[0][1]
    assert stats["slowdown_503"] + stats["internal_500"] + stats["cut"] == 3 and stats["forwarded"] >= 12


def test_faults_storage_write_survives_an_outage(s3_server):
    """A shard write during a refuse-everything outage is retried until the store is back; with a policy shorter
    than the outage it fails with a transient error and leaves nothing at the key (absent or complete)."""
    bucket = s3_server.make_bucket("fw")
    table = pa.table({"a": list(range(1000))})
    with FaultProxy(s3_server.endpoint_url, outages=[Outage(after=1, seconds=2)]) as proxy:  # one client try each:
        lay = OutputLayout(f"s3://{bucket}/out", proxy_options(proxy.endpoint_url, client_tries=1),  # retry.* rides it
                           RetryPolicy(attempts=20, base_s=0.5, max_s=2, deadline_s=60))
        lay.write_table("tokens/part-a.parquet", table)
        assert proxy.stats["refused"] > 0
    assert read_folder(s3_server.filesystem(), f"{bucket}/out/tokens").equals(table)
    with FaultProxy(s3_server.endpoint_url, outages=[Outage(after=1, seconds=120)]) as proxy:
        lay = OutputLayout(f"s3://{bucket}/out", proxy_options(proxy.endpoint_url, client_tries=1),
                           RetryPolicy(attempts=2, base_s=0.1, max_s=0.1, deadline_s=1))
        with pytest.raises(Exception) as err:
            lay.write_table("tokens/part-b.parquet", table)
        assert is_transient_error(err.value), repr(err.value)
    assert not s3_server.filesystem().exists(f"{bucket}/out/tokens/part-b.parquet")


def test_faults_decode_stage_retries_then_leaves_pending_rows(s3_server, corpus):
    """A read failing through an outage is decoded again (more than one try) and gives the windows; one failing to
    the end commits a pending row (`final = false`, status io_error, its tries), never a final one."""
    src = f"{corpus['input']}/c0.mp4"
    size = s3_server.filesystem().size(src)  # as listed: the stage asks the store nothing before decoding
    plan = pa.Table.from_pylist([{"source": src, "source_size": size, "skip_windows": [], "prev_windows": 0}],
                                schema=PLAN_SCHEMA)
    decode = DecodeConfig(fps=3.0, size=32, num_frames=17, stride=17, timeout_s=60)
    with FaultProxy(s3_server.endpoint_url, outages=[Outage(after=1, seconds=2)]) as proxy:  # one client try each:
        lay = OutputLayout(f"s3://{corpus['bucket']}/unit", proxy_options(proxy.endpoint_url, client_tries=1))
        retry = RetryConfig(attempts=30, base_s=0.5, max_s=2, deadline_s=90)
        out = pa.concat_tables(list(DecodeInputs(decode, lay, retry=retry, run_id="r1")(plan)))
        assert proxy.stats["refused"] > 0
    assert out.num_rows == 1 and out.column("attempts").to_pylist()[0] > 1
    with FaultProxy(s3_server.endpoint_url, outages=[Outage(after=1, seconds=300, paths="/videos/")]) as proxy:
        # inputs down, outputs up; one client try per request: only retry.*'s 2 tries matter here
        lay = OutputLayout(f"s3://{corpus['bucket']}/unit", proxy_options(proxy.endpoint_url, client_tries=1))
        stage = DecodeInputs(decode, lay, retry=RetryConfig(attempts=2, base_s=0.1, deadline_s=60), run_id="r2")
        assert list(stage(plan)) == []
    rows = read_folder(s3_server.filesystem(), f"{corpus['bucket']}/unit/status").to_pylist()
    assert [(r["source"], r["status"], r["final"], r["attempts"], r["run_id"]) for r in rows] == \
        [(src, "io_error", False, 2, "r2")]


# -------------------------------------------------------------------------------------------- the job, with Ray
def test_faults_job_recovers_inside_the_run(s3_server, corpus, baseline, ray_local_module):
    """503s, 500s, cut bodies, a short outage of the whole store and a longer one of the inputs (longer than the
    client's own retries: the decode stage retries those inputs): the run equals the fault-free run."""
    with FaultProxy(s3_server.endpoint_url, seed=11, p_slowdown=0.08, p_internal=0.04, p_cut=0.1, max_faults=60,
                    outages=[Outage(after=40, seconds=4), Outage(after=3, seconds=10, paths="/videos/")]) as proxy:
        s = run_tokenize(job_config(corpus["input"], f"s3://{corpus['bucket']}/flaky", *_creds(proxy.endpoint_url),
                                    *FAST_RETRY))
        stats = dict(proxy.stats)
    print(f"faults injected: {stats}; inputs retried by the decode stage: {s['inputs_retried_this_run']}")
    assert proxy.faults > 10 and stats["refused"] > 0 and stats["cut"] > 0
    assert s["inputs_retried_this_run"] >= 1  # the inputs' outage outlasted the client's retries
    assert s["complete"] and s["inputs_pending"] == 0 and s["duplicate_windows_found"] == 0
    got = _read(s3_server, corpus["bucket"], "flaky")
    assert got["success"]
    _assert_same_as_baseline(got, baseline)


@pytest.mark.slow
@pytest.mark.parametrize("down", ["inputs", "store"])
def test_faults_outage_outlasting_retries_exits_3_then_rerun_completes(down, s3_server, corpus, baseline, capsys):
    """An outage longer than retry.* leaves the run incomplete: exit 3, no _SUCCESS, the pending count printed
    (the inputs down: pending io_error rows with their tries; the whole store down: the run stops). Re-running the
    same command, the store back, completes it with every window exactly once."""
    out = f"s3://{corpus['bucket']}/outage-{down}"
    retry = ["retry.attempts=2", "retry.base_s=0.2", "retry.max_s=0.5", "retry.deadline_s=10"]
    outage = Outage(after=2, seconds=60, paths="/videos/") if down == "inputs" else Outage(after=25, seconds=45)
    with FaultProxy(s3_server.endpoint_url, outages=[outage]) as proxy:
        first = _job(capsys, corpus["input"], out, proxy.endpoint_url, retry)
        refused = proxy.stats["refused"]
    print(f"first run ({down} down): exit {first.returncode}, {refused} requests refused\n{first.stderr[-600:]}")
    assert first.returncode == 3, first.stderr[-3000:]
    assert "INCOMPLETE" in first.stderr and "Re-running the same command retries them" in first.stderr
    fs = s3_server.filesystem()
    assert not fs.exists(f"{corpus['bucket']}/outage-{down}/_SUCCESS")
    if down == "inputs":
        summary = json.loads(fs.cat(f"{corpus['bucket']}/outage-{down}/summary.json"))
        assert summary["complete"] is False and summary["inputs_pending"] >= 1
        pending = [r for r in read_folder(fs, f"{corpus['bucket']}/outage-{down}/status").to_pylist() if not r["final"]]
        assert len(pending) == summary["inputs_pending"] == summary["pending_by_reason"]["io_error"]
        assert all(r["status"] == "io_error" and r["attempts"] == 2 for r in pending)
    second = _job(capsys, corpus["input"], out, s3_server.endpoint_url, retry)
    assert second.returncode == 0, second.stderr[-3000:]
    summary = json.loads(fs.cat(f"{corpus['bucket']}/outage-{down}/summary.json"))
    assert summary["complete"] and summary["duplicate_windows_found"] == 0
    got = _read(s3_server, corpus["bucket"], f"outage-{down}")
    assert got["success"]
    _assert_same_as_baseline(got, baseline)


def _job(capsys, input: str, output: str, endpoint: str, extra: list[str]) -> subprocess.CompletedProcess:
    """The tokenize job as the operator runs it, in this process on the module's Ray (the baseline's)."""
    return tokenize_in_process(capsys, f"input={input}", f"output={output}", *FAST, *_creds(endpoint), *extra)


def _fs(s3_server, endpoint: str):
    import s3fs

    return s3fs.S3FileSystem(**proxy_options(endpoint), skip_instance_cache=True)
