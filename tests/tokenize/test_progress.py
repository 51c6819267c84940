"""Progress of the tokenize driver: the line and its cadence on a fake clock, live failure counts from the decode
stage through the RunNodes actor, and the same figures as Ray metrics scraped from the node's Prometheus endpoint."""

from __future__ import annotations

import time
import urllib.request

import pyarrow as pa

from pipeline.decode import DecodeConfig
from pipeline.storage import OutputLayout
from pipeline.tokenize.progress import METRIC_NAMES, Counts, InFlight, ProgressReporter, RayMetrics, Snapshot, format_duration
from pipeline.tokenize.schema import PLAN_SCHEMA
from pipeline.tokenize.stages import DecodeInputs, RunNodes


class FakeClock:
    def __init__(self, t: float = 1000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_progress_reports_once_per_interval_on_a_fake_clock():
    """No line before `every_s`; one line when due; a long stall gives one line, not a burst; final always emits."""
    clock, lines = FakeClock(), []
    rep = ProgressReporter(total_inputs=10, every_s=30, clock=clock, emit=lines.append)
    counts = lambda: Counts(inputs=2, windows=8, video_s=36.0, failures={"corrupt": 1})  # noqa: E731
    clock.t += 29
    assert rep.maybe_report(counts) is None and lines == []
    clock.t += 1
    snap = rep.maybe_report(counts)
    assert snap is not None and len(lines) == 1 and snap.elapsed_s == 30.0
    assert rep.maybe_report(counts) is None  # same moment: not due again
    clock.t += 95  # a stalled driver (125 s after start): three intervals passed
    rep.maybe_report(counts)
    assert len(lines) == 2
    clock.t += 24  # next due at 150 s after start, on the original grid
    assert rep.maybe_report(counts) is None
    clock.t += 1
    assert rep.maybe_report(counts) is not None
    rep.final(Counts(inputs=10, windows=40, video_s=180.0))
    assert len(lines) == 4 and lines[-1].eta_s == 0.0


def test_progress_line_has_counts_rates_failures_and_eta():
    """The line states inputs done/total, windows and windows/s, video hours per wall hour, failures by reason, ETA."""
    snap = Snapshot(Counts(inputs=25, windows=100, video_s=7200.0, failures={"truncated": 1, "corrupt": 2}),
                    total_inputs=100, elapsed_s=3600.0)
    assert snap.windows_per_s == 100 / 3600 and snap.video_hours_per_hour == 2.0
    assert snap.eta_s == 75 / (25 / 3600)
    assert snap.line() == ("progress: inputs 25/100 (25.0%), windows 100 (0.03/s), video 2.00 h (2.00 video-h per "
                           "wall-h), failures 3 (corrupt 2, truncated 1), ETA 3h00m")
    early = Snapshot(Counts(), total_inputs=5, elapsed_s=0.0)
    assert early.eta_s is None and early.line().endswith("failures 0, ETA unknown")
    assert [format_duration(s) for s in (5, 125, 7322, 90000)] == ["5s", "2m05s", "2h02m", "1d01h"]


def test_progress_decode_failures_reach_run_nodes_once(ray_local, tmp_path):
    """A failed input is reported by the decode stage to the RunNodes actor (live count by reason); a retried task
    reporting it again does not count it twice."""
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"not a video" * 50)
    plan = pa.Table.from_pylist([{"source": str(bad), "source_size": None, "source_etag": None, "source_mtime": None,
                                  "skip_windows": [], "prev_windows": 0}], schema=PLAN_SCHEMA)
    nodes = ray_local.remote(num_cpus=0)(RunNodes).remote()
    stage = DecodeInputs(DecodeConfig(fps=3.0, size=32, num_frames=17, stride=17, timeout_s=60),
                         OutputLayout(str(tmp_path / "out")), nodes)
    for _ in range(2):  # the second call is a retried task
        assert list(stage(plan)) == []
    got = ray_local.get(nodes.finished.remote())
    assert got["inputs"] == 1 and got["reasons"] == {"not_a_video": 1}
    ray_local.kill(nodes)


def _scrape(port: int, names: list[str], deadline_s: float = 60.0) -> dict[str, list[str]]:
    """Lines of the node's Prometheus endpoint per metric name, once every name appears (Ray exports periodically)."""
    end = time.time() + deadline_s
    found: dict[str, list[str]] = {}
    while time.time() < end:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
        found = {n: [ln for ln in text.splitlines() if ln.startswith(n + "{") and 'run_id="test-metrics"' in ln]
                 for n in names}
        if all(found.values()):
            break
        time.sleep(1)
    return found


def test_progress_figures_are_exported_as_ray_metrics(ray_local):
    """RayMetrics registers every name of METRIC_NAMES and the node's metrics agent exports them with the values
    recorded (counters as the sum of their increments)."""
    m = RayMetrics("test-metrics")
    m.record(Snapshot(Counts(inputs=1, windows=4, video_s=30.0, failures={"corrupt": 1}), 10, 10.0))
    m.record(Snapshot(Counts(inputs=3, windows=12, video_s=90.0, failures={"corrupt": 2},
                             in_flight=(InFlight("s3://b/v/slow.mp4", 125.0, 2, "n1"),)), 10, 20.0))
    port = ray_local.nodes()[0]["MetricsExportPort"]
    found = _scrape(port, list(METRIC_NAMES.values()))
    missing = [n for n, lines in found.items() if not lines]
    assert not missing, f"not exported: {missing}"

    def value(name: str) -> float:
        return float(found[name][-1].rsplit(" ", 1)[1])

    assert value("ray_vidtok_tokenize_windows_total") == 12
    assert value("ray_vidtok_tokenize_inputs_done") == 3 and value("ray_vidtok_tokenize_inputs_total") == 10
    assert value("ray_vidtok_tokenize_windows_per_second") == 12 / 20
    assert 'reason="corrupt"' in found["ray_vidtok_tokenize_failures_total"][-1]
    assert value("ray_vidtok_tokenize_failures_total") == 2
    assert 'source="s3://b/v/slow.mp4"' in found["ray_vidtok_tokenize_inflight_seconds"][-1]
    assert value("ray_vidtok_tokenize_inflight_seconds") == 125 and value("ray_vidtok_tokenize_waiting") == 0
