"""`dry_run=true` of the tokenize job: list and plan exactly as a run would, estimate the work, write nothing.

What it prints: inputs listed, to do, done before, failed before by reason (from the committed status rows), and the
expected windows and hours of video of the inputs to do. It never starts Ray, never decodes, and leaves the output as
it found it: no `_plan/`, no `_job.json`, `_SUCCESS` untouched (`write_plan(..., dry_run=True)` only counts).

The estimate. Sizes and durations are not in a listing, so `dry_run_probe` pending inputs (a seeded reservoir
sample: every pending input equally likely, the same sample each time) are probed with `pipeline.decode.probe` —
container and packet timestamps only, no decoding; remote files are downloaded for that, one at a time. Each probe
gives the exact sample count at `decode.fps` (the timestamp rule of `pipeline.decode.resample`; the duration where a
container has no timestamps) and hence the windows (`DecodeConfig.window_plan`, what the decode stage cuts), minus windows already
committed. When every pending input was probed, the figures are exact up to decode-time surprises; otherwise they
are extrapolated — by bytes when the listing gives every size (windows per byte of the sample × bytes to do), else
per input — and say so ("estimate from N of M inputs"). Probe failures are counted by reason as expected failures.
Inputs with a current row in the output's video index (`_index/`, `pipeline.decode.index`: same size, etag and
mtime) are not probed again: their row is what the probe would say.
"""

from __future__ import annotations

import logging
import math
import random
from collections import Counter
from dataclasses import asdict, dataclass, field

import pyarrow as pa

from pipeline.config import ConfigError
from pipeline.decode import DecodeConfig, DecodeError
from pipeline.decode.index import VideoIndex
from pipeline.decode.probe import ProbeInfo, probe
from pipeline.decode.resample import select_frames
from pipeline.decode.source import open_source
from pipeline.decode.status import CORRUPT, TOO_SHORT
from pipeline.inputs import iter_inputs
from pipeline.storage import OutputLayout
from pipeline.tokenize.commit import load_resume_state, write_plan
from pipeline.tokenize.config import TokenizeJobConfig
from pipeline.tokenize.setup import RunSetup

log = logging.getLogger(__name__)


@dataclass
class DryRunReport:
    """What a run of the same command would do (`text()` is what the job prints)."""

    output: str
    input: str
    inputs_listed: int
    inputs_to_do: int  # pending + complete without decoding
    inputs_to_decode: int
    inputs_done_before: int
    failed_before: dict  # reason -> inputs (committed status rows)
    duplicate_inputs_in_listing: int
    windows_committed: int
    settings_differ: dict = field(default_factory=dict)  # key -> (in _job.json, now): a run would refuse
    refusal: str = ""  # why a run of the same command would refuse this output (pipeline/job_record.py), if it would
    probed: int = 0
    from_index: int = 0  # of the `probed` inputs, how many came from the video index (`_index/`) without a probe
    expected_windows: float = 0.0
    expected_video_hours: float = 0.0
    expected_failures: dict = field(default_factory=dict)  # reason -> inputs (extrapolated)
    estimate_basis: str = ""

    def text(self) -> str:
        failed = ", ".join(f"{k} {v}" for k, v in sorted(self.failed_before.items())) or "none"
        exp_fail = ", ".join(f"{k} ~{v:.0f}" for k, v in sorted(self.expected_failures.items())) or "none seen"
        lines = [
            f"dry run: nothing decoded, nothing written ({self.output})",
            f"  input:            {self.input}",
            f"  inputs listed:    {self.inputs_listed} ({self.duplicate_inputs_in_listing} repeated names ignored)",
            f"  to do:            {self.inputs_to_do} ({self.inputs_to_decode} to decode)",
            f"  done before:      {self.inputs_done_before} ({self.windows_committed} windows committed)",
            f"  failed before:    {failed}",
            f"  expected windows: {self.expected_windows:.0f}",
            f"  expected video:   {self.expected_video_hours:.3f} h",
            f"  expected failures: {exp_fail}",
            f"  basis:            {self.estimate_basis}",
        ]
        if self.refusal:
            lines.append(f"  WARNING: a run would refuse this output: {self.refusal}")
        return "\n".join(lines)

    def as_dict(self) -> dict:
        return asdict(self)


class _Sampler:
    """Seeded reservoir sample of pending plan rows, plus the totals the extrapolation needs."""

    def __init__(self, k: int, seed: int = 0):
        self.k, self.rng = k, random.Random(seed)
        self.rows: list[dict] = []
        self.seen = 0
        self.bytes, self.sized = 0, 0

    def __call__(self, chunk: pa.Table) -> None:
        sizes = chunk.column("source_size").to_pylist()
        self.bytes += sum(s for s in sizes if s)
        self.sized += sum(1 for s in sizes if s)
        for row in chunk.select(["source", "source_size", "source_etag", "source_mtime", "prev_windows"]).to_pylist():
            self.seen += 1
            if len(self.rows) < self.k:
                self.rows.append(row)
            elif (j := self.rng.randrange(self.seen)) < self.k:
                self.rows[j] = row


def probe_windows(source: str, decode: DecodeConfig, storage_options: dict | None,
                  info: ProbeInfo | None = None) -> tuple[int, float]:
    """(windows, video seconds) the decode stage would cut from `source`, from its container alone (or from `info`,
    its index row); raises `DecodeError` with the reason the decode stage would give (`too_short` when no window
    fits)."""
    if info is None:
        readable, _ = open_source(source, storage_options, max_bytes=decode.max_bytes)
        info = probe(readable)
    if info.pts_reliable:
        samples = len(select_frames(info.pts_ticks, info.end_tick, decode.fps, info.time_base, info.rates)[0])
    else:  # no presentation times (AVI, MPEG-PS): t_k = k / fps < duration
        samples = math.ceil(info.duration_s * decode.fps) if info.duration_s > 0 else 0
    n = len(decode.window_plan(samples).spans)  # the decode stage's own rule (windows, or whole-clip pieces)
    if n == 0:
        raise DecodeError(TOO_SHORT, f"{samples} samples at {decode.fps:g} fps: shorter than one window")
    return n, float(info.duration_s)


def dry_run(cfg: TokenizeJobConfig) -> DryRunReport:
    """Plan `cfg` without writing and estimate its work (module docstring)."""
    setup = RunSetup.of(cfg)  # the run's own resolution of input and settings
    opts, decode, source = setup.storage_options, setup.decode, setup.source
    layout = OutputLayout(cfg.output, opts)
    claim = setup.claim(layout)
    refusal = ""
    try:
        claim.check()
    except ConfigError as e:
        refusal = str(e)
    was = (claim.found or {}).get("settings", claim.found or {})
    differ = {k: (was.get(k), v) for k, v in setup.identity.items() if claim.found and was.get(k) != v}
    state = load_resume_state(layout)
    sampler = _Sampler(cfg.dry_run_probe)
    chunks = iter_inputs(source, extensions=cfg.extensions, storage_options=opts, column=cfg.manifest_column,
                         data_dir=cfg.data_dir)
    plan = write_plan(layout, chunks, state, "dry-run", limit=cfg.limit or 0, dry_run=True, on_pending=sampler)
    report = DryRunReport(
        output=layout.url_of(), input=source, inputs_listed=plan.total_inputs,
        inputs_to_do=plan.pending + len(plan.complete_without_decode), inputs_to_decode=plan.pending,
        inputs_done_before=plan.skipped_done, failed_before=dict(sorted(state.failures.items())),
        duplicate_inputs_in_listing=plan.duplicates_in_input, windows_committed=state.committed_windows,
        settings_differ=differ, refusal=refusal)
    _estimate(report, sampler, plan.pending, decode, opts, VideoIndex.of_job(layout, cfg.index))
    return report


def _estimate(report: DryRunReport, sampler: _Sampler, pending: int, decode: DecodeConfig, opts: dict,
              index: VideoIndex) -> None:
    if pending == 0:
        report.estimate_basis = "nothing to decode"
        return
    if not sampler.rows:
        report.estimate_basis = "not estimated (dry_run_probe=0)"
        return
    windows = video_s = probed_bytes = 0.0
    fails: Counter = Counter()
    known = index.lookup(sampler.rows)
    report.from_index = len(known)
    for row in sampler.rows:
        try:
            n, dur = probe_windows(row["source"], decode, opts, known.get(row["source"]))
            windows += max(n - int(row["prev_windows"] or 0), 0)
            video_s += dur
        except DecodeError as e:
            fails[e.reason] += 1
        except Exception as e:  # the decode stage would count a crash of the demuxer as corrupt
            log.warning("probe of %s failed: %s", row["source"], e)
            fails[CORRUPT] += 1
        probed_bytes += row["source_size"] or 0
    k = len(sampler.rows)
    by_bytes = k < pending and sampler.sized == pending and probed_bytes > 0
    scale = sampler.bytes / probed_bytes if by_bytes else pending / k
    report.probed = k
    report.expected_windows = windows * scale
    report.expected_video_hours = video_s * scale / 3600
    report.expected_failures = {r: n * pending / k for r, n in sorted(fails.items())}
    if k == pending:
        report.estimate_basis = f"probed all {k} inputs to decode (containers only; decoding may still fail some)"
    else:
        how = "by bytes (windows per byte of the sample x bytes to do)" if by_bytes else "per input"
        report.estimate_basis = f"ESTIMATE from probing {k} of {pending} inputs to decode, extrapolated {how}"
    if report.from_index:
        report.estimate_basis += f"; {report.from_index} of them from the video index"
