"""What an operator sees while the tokenize job runs: one progress line every `progress_every_s`, Ray metrics, stats.

    progress: inputs 120/1000 (12.0%), windows 480 (4.00/s), video 0.40 h (1.20 video-h per wall-h),
              failures 3 (corrupt 2, truncated 1), ETA 2h02m

* `ProgressReporter` (pure, a clock passed in) turns counts into that line and decides when the next one is due; the
  unit tests drive it with a fake clock.
* Figures: inputs done / total (the total is known after planning: pending + complete-without-decode inputs), windows,
  windows/s and video-hours per wall-hour since the chain started, failures by reason, and an ETA = inputs left /
  inputs per second so far (start-up costs make early ETAs pessimistic).
* Live sources, without extra traffic through the chain: the one count of the run is the driver's `StatusTracker`
  (`pipeline/tokenize/status.py`: who writes which status row, and how each is counted once); inputs finished in the
  decode stage reach it live through the `RunNodes` actor (`pipeline/tokenize/nodes.py`), polled once per line. At
  the end the tracker has read those rows back, and its counts give the final line and the summary.
* `RayMetrics` mirrors the same figures as `ray.util.metrics` counters and gauges (Prometheus names in
  `METRIC_NAMES`, exported by every node's metrics agent; cluster/README.md says how to scrape and graph them).
* The tail: once few inputs are left (the last `TAIL_FRACTION` (5 %) of the inputs, or fewer than the decode slots),
  the line names the `TAIL_SHOWN` oldest inputs still in flight — source, seconds since it started (its decode task
  reports the start to `RunNodes`; an input whose decode ended waits for its last windows, timed from its first
  committed window), windows committed so far, node — and the metric `vidtok_tokenize_inflight_seconds` (tags `rank`,
  `source`) carries the same, so an operator sees what holds the job:

    progress: inputs 97/100 (97.0%), ..., ETA 40s; tail: c17.mp4 (312s, 4 windows, node 10.0.0.7), c3.mp4 (...)

* Waiting: when no live node offers what a stage needs (its decode CPUs, the tokenizer's GPU: a spot node reclaimed
  and none back yet), the line says `WAITING for capacity: ...`; Ray Data goes on by itself when a node joins.
* `RunProgress` is the driver glue: a daemon thread that reports while the chain runs, and `save_stats` writes Ray
  Data's `ds.stats()` of the run to `_stats/<run_id>.txt` (atomic, `pipeline.storage`).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Mapping

log = logging.getLogger(__name__)

# Name given to ray.util.metrics -> name Prometheus shows (Ray prefixes `ray_`; counters get `_total`).
METRIC_NAMES = {
    "vidtok_tokenize_inputs_total": "ray_vidtok_tokenize_inputs_total",  # gauge: inputs planned this run
    "vidtok_tokenize_inputs_done": "ray_vidtok_tokenize_inputs_done",  # gauge: inputs finished this run
    "vidtok_tokenize_windows": "ray_vidtok_tokenize_windows_total",  # counter: windows committed
    "vidtok_tokenize_video_seconds": "ray_vidtok_tokenize_video_seconds_total",  # counter: seconds of video finished
    "vidtok_tokenize_failures": "ray_vidtok_tokenize_failures_total",  # counter, tag `reason`
    "vidtok_tokenize_windows_per_second": "ray_vidtok_tokenize_windows_per_second",  # gauge
    "vidtok_tokenize_video_hours_per_hour": "ray_vidtok_tokenize_video_hours_per_hour",  # gauge
    "vidtok_tokenize_eta_seconds": "ray_vidtok_tokenize_eta_seconds",  # gauge (-1 while unknown)
    "vidtok_tokenize_inflight_seconds": "ray_vidtok_tokenize_inflight_seconds",  # gauge, tail only: tags rank, source
    "vidtok_tokenize_waiting": "ray_vidtok_tokenize_waiting",  # gauge: 1 while a stage has no node to run on
}
TAIL_FRACTION = 0.05  # the tail: at most this fraction of the inputs left (or fewer than the decode slots)
TAIL_SHOWN = 3  # oldest inputs in flight named in the tail


@dataclass(frozen=True)
class InFlight:
    """An input still in flight: `seconds` since it started, `windows` committed so far, `node` decoding it ('' once
    its decode ended)."""

    source: str
    seconds: float
    windows: int
    node: str = ""

    def text(self) -> str:
        where = f", node {self.node}" if self.node else ""
        return f"{self.source.rsplit('/', 1)[-1]} ({self.seconds:.0f}s, {self.windows} windows{where})"


@dataclass(frozen=True)
class Counts:
    """What has finished in this run so far."""

    inputs: int = 0
    windows: int = 0
    video_s: float = 0.0
    failures: Mapping[str, int] = field(default_factory=dict)  # reason -> inputs
    in_flight: tuple = ()  # the tail: InFlight of the oldest inputs still in flight (empty before the tail)
    waiting: str = ""  # why the run waits for capacity ('' when every stage has a node)


@dataclass(frozen=True)
class Snapshot:
    """Counts plus the rates derived from them at one moment (`elapsed_s` since the chain started)."""

    counts: Counts
    total_inputs: int
    elapsed_s: float
    units: tuple[str, str] = ("inputs", "windows")  # what is counted (the frames cache job: videos, frames)

    @property
    def windows_per_s(self) -> float:
        return self.counts.windows / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def video_hours_per_hour(self) -> float:
        return self.counts.video_s / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def eta_s(self) -> float | None:
        left = max(self.total_inputs - self.counts.inputs, 0)
        if left == 0:
            return 0.0
        if self.counts.inputs == 0 or self.elapsed_s <= 0:
            return None
        return left / (self.counts.inputs / self.elapsed_s)

    def line(self) -> str:
        c, total = self.counts, self.total_inputs
        pct = 100.0 * c.inputs / total if total else 100.0
        nfail = sum(c.failures.values())
        fails = f"failures {nfail}" + (" (" + ", ".join(f"{k} {v}" for k, v in sorted(c.failures.items()) if v) + ")"
                                       if nfail else "")
        what, parts = self.units
        return (f"progress: {what} {c.inputs}/{total} ({pct:.1f}%), {parts} {c.windows} ({self.windows_per_s:.2f}/s), "
                f"video {c.video_s / 3600:.2f} h ({self.video_hours_per_hour:.2f} video-h per wall-h), {fails}, "
                f"ETA {format_duration(self.eta_s)}"
                + (f"; tail: {', '.join(f.text() for f in c.in_flight)}" if c.in_flight else "")
                + (f"; WAITING for capacity: {c.waiting}" if c.waiting else ""))


def format_duration(seconds: float | None) -> str:
    """`None` -> 'unknown'; else e.g. '45s', '12m05s', '2h02m', '3d04h'."""
    if seconds is None:
        return "unknown"
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


class ProgressReporter:
    """Decides when a line is due and renders it; `clock` is `time.monotonic` in the job, a fake in the tests."""

    def __init__(self, total_inputs: int, every_s: float, clock: Callable[[], float] = time.monotonic,
                 emit: Callable[[Snapshot], None] | None = None, units: tuple[str, str] = ("inputs", "windows")):
        self.total_inputs, self.every_s, self.clock, self.units = total_inputs, every_s, clock, units
        self.emit = emit or (lambda snap: log.info("%s", snap.line()))
        self.restart()

    def restart(self) -> None:
        """Measure from now (the chain starts: Ray start-up and planning do not count against the rates)."""
        self.start = self.clock()
        self.next_due = self.start + self.every_s

    def snapshot(self, counts: Counts) -> Snapshot:
        return Snapshot(counts, self.total_inputs, self.clock() - self.start, self.units)

    def maybe_report(self, counts: Callable[[], Counts]) -> Snapshot | None:
        """Emit a line if one is due (`counts` is only evaluated then); returns the snapshot emitted, or None."""
        if self.clock() < self.next_due:
            return None
        snap = self.snapshot(counts())
        self.emit(snap)
        now = self.clock()  # after `counts()`, which may have waited on the cluster
        while self.next_due <= now:  # a late tick does not cause a burst of catch-up lines
            self.next_due += self.every_s
        return snap

    def final(self, counts: Counts) -> Snapshot:
        """The last line, always emitted (with the driver's authoritative end-of-run counts)."""
        snap = self.snapshot(counts)
        self.emit(snap)
        return snap


class RayMetrics:
    """The figures of a Snapshot as `ray.util.metrics` counters (deltas) and gauges, tagged with `run_id`."""

    def __init__(self, run_id: str):
        from ray.util.metrics import Counter, Gauge

        tags = ("run_id",)
        self.tags = {"run_id": run_id}
        self.gauges = {name: Gauge(name, description=desc, tag_keys=tags) for name, desc in (
            ("vidtok_tokenize_inputs_total", "inputs planned in this tokenize run"),
            ("vidtok_tokenize_inputs_done", "inputs finished in this tokenize run"),
            ("vidtok_tokenize_windows_per_second", "windows committed per second since the chain started"),
            ("vidtok_tokenize_video_hours_per_hour", "hours of video finished per wall-clock hour"),
            ("vidtok_tokenize_eta_seconds", "estimated seconds to the end of the run (-1: unknown)"))}
        self.windows = Counter("vidtok_tokenize_windows", description="windows committed", tag_keys=tags)
        self.video_s = Counter("vidtok_tokenize_video_seconds", description="seconds of video finished", tag_keys=tags)
        self.failures = Counter("vidtok_tokenize_failures", description="inputs that failed, by reason",
                                tag_keys=("run_id", "reason"))
        self.inflight = Gauge("vidtok_tokenize_inflight_seconds", tag_keys=("run_id", "rank", "source"),
                              description="the tail: seconds the oldest inputs still in flight have run (0: gone)")
        self.waiting = Gauge("vidtok_tokenize_waiting", tag_keys=tags,
                             description="1 while a stage of the run has no live node to run on")
        self.shown: set[tuple[str, str]] = set()  # (rank, source) series set so far
        self.last = Counts()

    def record(self, snap: Snapshot) -> None:
        c, last = snap.counts, self.last
        eta = snap.eta_s
        for name, value in (("vidtok_tokenize_inputs_total", snap.total_inputs),
                            ("vidtok_tokenize_inputs_done", c.inputs),
                            ("vidtok_tokenize_windows_per_second", snap.windows_per_s),
                            ("vidtok_tokenize_video_hours_per_hour", snap.video_hours_per_hour),
                            ("vidtok_tokenize_eta_seconds", -1.0 if eta is None else eta)):
            self.gauges[name].set(float(value), tags=self.tags)
        if c.windows > last.windows:  # counters only grow: add what is new since the last record
            self.windows.inc(c.windows - last.windows, tags=self.tags)
        if c.video_s > last.video_s:
            self.video_s.inc(c.video_s - last.video_s, tags=self.tags)
        for reason, n in c.failures.items():
            if n > last.failures.get(reason, 0):
                self.failures.inc(n - last.failures.get(reason, 0), tags={**self.tags, "reason": reason})
        now = {(str(i + 1), f.source): f.seconds for i, f in enumerate(c.in_flight)}
        for rank, source in self.shown - set(now):  # left the tail's top: its series goes to 0
            self.inflight.set(0.0, tags={**self.tags, "rank": rank, "source": source})
        for (rank, source), seconds in now.items():
            self.inflight.set(float(seconds), tags={**self.tags, "rank": rank, "source": source})
        self.shown = set(now)
        self.waiting.set(1.0 if c.waiting else 0.0, tags=self.tags)
        self.last = c


class RunProgress:
    """Driver glue: progress lines + metrics from a background thread while the chain runs, the final line, stats.

    `tracker` is the driver's `StatusTracker` (`counts`, the one count; `first_seen`, `inflight`: the tail); `nodes` the
    `RunNodes` actor handle that the decode stage reports inputs it finished to (`attach`).
    """

    def __init__(self, layout, run_id: str, total_inputs: int, every_s: float, tracker,
                 clock: Callable[[], float] = time.monotonic):
        self.layout, self.run_id, self.tracker = layout, run_id, tracker
        self.metrics: RayMetrics | None = None
        self.reporter = ProgressReporter(total_inputs, every_s, clock, emit=self._emit)
        self.nodes = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._decode_done: dict = {"inputs": 0, "video_s": 0.0, "reasons": {}}
        self.slots = 0  # decode slots of the cluster (the tail starts when fewer inputs are left); set by the driver
        self.needs: dict[str, dict[str, float]] = {}  # stage -> resources one of its workers needs (`waiting`)

    def _emit(self, snap: Snapshot) -> None:
        log.info("%s", snap.line())
        if self.metrics is not None:
            try:
                self.metrics.record(snap)
            except Exception as e:  # metrics are for watching; never fail the run for them
                log.warning("could not record Ray metrics: %s", e)

    def live_counts(self) -> Counts:
        """Driver-side finished inputs plus those the decode stage finished (polled from the RunNodes actor), and in
        the tail the oldest inputs in flight; `waiting` when a stage has no live node."""
        running: list = []
        if self.nodes is not None:
            import ray

            try:  # a slow or lost actor (restarted on the driver's node) only makes this line stale
                self._decode_done, running = ray.get([self.nodes.finished.remote(), self.nodes.running.remote()],
                                                     timeout=10)
            except Exception as e:
                log.debug("RunNodes poll failed: %s", e)
        c = self.tracker.counts(self._decode_done)  # the one count (pipeline/tokenize/status.py)
        left = self.reporter.total_inputs - c.inputs
        tail = 0 < left <= max(TAIL_FRACTION * self.reporter.total_inputs, self.slots)
        return dataclasses.replace(c, in_flight=self.in_flight(running) if tail else (), waiting=self.waiting())

    def in_flight(self, running: list, now: float | None = None) -> tuple:
        """The `TAIL_SHOWN` oldest inputs in flight: those being decoded (`running`: `(source, started, node)` from
        RunNodes) and those whose windows are partly committed (the tracker's `first_seen`)."""
        now = time.time() if now is None else now
        t = self.tracker
        started = {s: (at, node) for s, at, node in running}
        for s, at in list(t.first_seen.items()):  # list(): the main thread changes it
            if s not in started or at < started[s][0]:
                started[s] = (at, started.get(s, (0, ""))[1])
        oldest = sorted(started.items(), key=lambda kv: kv[1][0])[:TAIL_SHOWN]
        return tuple(InFlight(s, max(0.0, now - at), len(t.inflight.get(s, ())), node) for s, (at, node) in oldest)

    def waiting(self) -> str:
        """'' when every stage (its resources in `needs`) fits some live node; else what is missing."""
        if not self.needs or self.nodes is None:
            return ""
        try:
            import ray

            alive = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
        except Exception:
            return ""
        missing = []
        for stage, need in self.needs.items():
            need = {k: v for k, v in need.items() if v}
            if not any(all(r.get(k, 0.0) >= v for k, v in need.items()) for r in alive):
                what = " + ".join(f"{k} {v:g}" for k, v in need.items())
                missing.append(f"no live node has {what} for the {stage}")
        if not missing:
            return ""
        return "; ".join(missing) + f" ({len(alive)} nodes alive): the job waits and goes on when a node joins"

    def attach(self, nodes) -> "RunProgress":
        """Start reporting (Ray is up: metrics can be registered); `nodes` is the RunNodes handle or None."""
        self.nodes = nodes
        self.reporter.restart()
        try:
            self.metrics = RayMetrics(self.run_id)
        except Exception as e:
            log.warning("Ray metrics unavailable (%s): progress is logged only", e)
        self._thread = threading.Thread(target=self._loop, name="tokenize-progress", daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(min(1.0, self.reporter.every_s)):
            try:
                self.reporter.maybe_report(self.live_counts)
            except Exception as e:  # watching must never take the run down
                log.warning("progress report failed: %s", e)

    def detach(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self.nodes = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.detach()

    def final(self) -> Snapshot:
        """The end-of-run line from the tracker alone (it has read back the decode stage's status rows by now)."""
        return self.reporter.final(self.tracker.counts())

    def save_stats(self, ds) -> str | None:
        """Ray Data's execution statistics of the run's dataset -> `_stats/<run_id>.txt`; returns the path."""
        try:
            text = ds.stats()
        except Exception as e:
            log.warning("Ray Data stats unavailable: %s", e)
            return None
        path = self.layout.write_bytes(f"_stats/{self.run_id}.txt", (text.rstrip() + "\n").encode())
        log.info("Ray Data stats of this run: %s", self.layout.url_of(f"_stats/{self.run_id}.txt"))
        return path
