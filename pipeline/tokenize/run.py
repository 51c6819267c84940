"""Driver side of the tokenize job: plan, run the Ray Data chain, commit status rows, write the summary.

Exactly-once protocol (details and failure analysis in docs/tokenize.md):
  1. resume state = keys of committed token shards + sources of committed status rows (pipeline/tokenize/commit.py);
  2. plan = inputs without a status row, each with the windows already committed (`skip_windows`);
  3. the chain commits token shards atomically and streams back one WRITTEN row per committed window; the decode
     stage commits the status row of an input that yields no window itself;
  4. this driver counts committed windows per input and, once an input is complete, buffers its status row; buffers
     are committed as status shards every `shards.status_every_inputs` inputs / `shards.status_every_s` seconds;
  5. when every planned input has a status row (the driver's, or the decode stage's, read back at the end):
     summary.json, resolved_config.yaml and, if no row is pending and the chain did not stop, _SUCCESS.
A kill -9 anywhere loses at most uncommitted work; the next run's plan redoes exactly that. A transient failure that
outlasts `retry.*` leaves a pending status row (decode) or stops the chain (a write): either way the run ends
incomplete (`summary["complete"] = False`, no _SUCCESS, the job exits non-zero) and re-running the same command
retries exactly what is missing.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections import Counter
from contextlib import ExitStack


import ray

from pipeline.config import to_yaml
from pipeline.job_record import listing_digest
from pipeline.decode import DecodeConfig
from pipeline.inputs import iter_inputs
from pipeline.ray_utils import RayLogs, ray_session
from pipeline.storage import OutputLayout, is_transient_error
from pipeline.tokenize.card import write_card
from pipeline.tokenize.commit import (
    Plan, load_resume_state, new_run_id, read_new_status, write_json, write_plan,
)
from pipeline.tokenize.config import TokenizeJobConfig
from pipeline.tokenize.machine import MachineBroken, find_cause
from pipeline.tokenize.progress import RunProgress
from pipeline.tokenize.nodes import RunNodes
from pipeline.tokenize.status import StatusTracker
from pipeline.tokenize.setup import RunSetup
from pipeline.tokenize.stages import build_dataset

log = logging.getLogger(__name__)


def run_tokenize(cfg: TokenizeJobConfig) -> dict:
    """Run (or resume) the job described by `cfg`; returns the summary (also written as summary.json).

    `summary["complete"]` is False when inputs are still pending (`inputs_pending`) or the run stopped on a storage
    outage that outlasted `retry.*` (`stopped`): no _SUCCESS then, and re-running the same command retries what is
    missing. Only a transient storage error stops a run this way; anything else raises.
    """
    try:
        return _run_tokenize(cfg)
    except Exception as e:
        if not is_transient_error(e):
            raise
        stopped = _short(e)  # before the chain (resume scan, listing, plan): nothing of this run is committed
        log.error("the run stopped on a storage error that outlasted retry.* (%s): re-run the same command", stopped)
        return {"output": cfg.output, "complete": False, "nothing_to_do": False, "stopped": stopped,
                "inputs_pending": None, "pending_by_reason": {}}


def _short(e: BaseException) -> str:
    """The innermost cause of `e` (Ray wraps a task's error in its own), on one line."""
    for _ in range(10):
        inner = getattr(e, "cause", None) or e.__cause__
        if inner is None:
            break
        e = inner
    return f"{type(e).__name__}: " + (str(e).strip().splitlines() or [""])[0][:300]


def _run_tokenize(cfg: TokenizeJobConfig) -> dict:
    t0 = time.time()
    setup = RunSetup.of(cfg)  # settings first: a bad one creates nothing
    opts, decode, source = setup.storage_options, setup.decode, setup.source
    kind, token_shape, tokens_binary = setup.kind, setup.token_shape, setup.tokens_binary
    layout = OutputLayout(cfg.output, opts, cfg.retry)
    claim = setup.claim(layout).check()  # writes nothing
    side = _FramesOutput(cfg, decode.fps, source, opts) if cfg.frames.output else None  # claimed, not written
    sha = setup.checkpoint_sha()
    state = load_resume_state(layout, retry_permanent=cfg.retry.permanent)
    run_id = new_run_id()
    listed: dict = {}
    chunks = listing_digest(iter_inputs(source, extensions=cfg.extensions, storage_options=opts,
                                        column=cfg.manifest_column, data_dir=cfg.data_dir), listed)
    plan = write_plan(layout, chunks, state, run_id, limit=cfg.limit or 0,
                      frames_done=side.done if side else None)
    claim.record(listed.get("digest"))  # the job record, once the input was listed
    if side:
        side.claim.record(listed.get("digest"))
        side.check_earlier(state.done, source)
    log.info("plan: %d inputs listed, %d already done, %d to decode (%d pending from earlier runs), %d complete "
             "without decoding (%.1f s)", plan.total_inputs, plan.skipped_done, plan.pending, len(state.pending),
             len(plan.complete_without_decode), time.time() - t0)
    if plan.pending == 0 and not plan.complete_without_decode and not plan.limited and layout.exists("_SUCCESS"):
        log.info("nothing to do: all %d inputs of %s already have status rows in %s", plan.skipped_done, source,
                 cfg.output)
        layout.remove(f"_plan/{run_id}", recursive=True)
        return {**json.loads(layout.read_text("summary.json") or "{}"), "nothing_to_do": True}

    layout.remove("_SUCCESS")  # work is pending: readers must not take the output as complete until it is done
    layout.write_bytes("resolved_config.yaml", to_yaml(cfg).encode())
    tracker = StatusTracker(layout, run_id, cfg.shards.status_every_inputs, cfg.shards.status_every_s)
    progress = RunProgress(layout, run_id, plan.pending + len(plan.complete_without_decode), cfg.progress_every_s,
                           tracker)  # progress lines, Ray metrics, _stats/<run_id>.txt (pipeline/tokenize/progress.py)
    for row in plan.complete_without_decode:
        tracker.finish({**row, "status": "ok", "message": ""}, row["num_windows"])
    t_run = time.time()
    nodes: dict = {}
    stopped = None
    logs = RayLogs(console=cfg.ray.console_logs)
    try:
        if plan.pending:
            frames = decode.max_frames if decode.whole_clip else decode.num_frames
            row_bytes = math.prod(token_shape) * (2 if tokens_binary else 4) + 64 * frames
            shard_rows = max(1, min(cfg.shards.shard_rows, int(cfg.shards.shard_max_mb * 2**20 // row_bytes)))
            nodes = _run_chain(cfg, plan, decode, layout, sha, tokens_binary, shard_rows, tracker, run_id,
                               progress, logs)
        tracker.maybe_flush(force=True)
        # committed by the decode stage; a task retried by Ray may have committed a source twice: newest wins
        tracker.settle(read_new_status(layout, run_id, skip=tracker.written))
    except Exception as e:
        if not is_transient_error(e):
            raise
        stopped = _short(e)
        log.error("the run stopped on a storage error that outlasted retry.* (%s); everything committed stays "
                  "committed: re-run the same command to complete the output", stopped)
    finally:
        logs.keep(lambda data: layout.write_bytes(f"_logs/{run_id}.log", data))  # Ray's own lines, off the console
    frames_summary = side.close() if side else None
    progress.final()
    counts = tracker.counts()  # the one count (pipeline/tokenize/status.py)
    expected = plan.pending + len(plan.complete_without_decode)
    if stopped is None and (counts.inputs != expected or tracker.inflight):
        raise RuntimeError(f"{expected} inputs planned but {counts.inputs} finished ({len(tracker.inflight)} with "
                           "missing windows); nothing is lost: rerun the same command to complete them")
    # pending = what a re-run will retry: rows left pending, plus (after a stop) inputs that got no row at all
    pending = sum(tracker.pending.values()) + max(0, expected - counts.inputs)
    # a limited run did what it was asked, but inputs it left out have no status row: never complete
    partial = f"limit={cfg.limit} of {plan.total_inputs} listed" if plan.limited else None
    complete = stopped is None and pending == 0 and partial is None
    done_reasons = Counter(state.failures)
    done_reasons.update(counts.failures)
    run_s = max(time.time() - t_run, 1e-9)
    size = list(decode.size) if isinstance(decode.size, tuple) else decode.size
    summary = {
        "output": cfg.output, "input": source, "run_id": run_id, "complete": complete, "nothing_to_do": False,
        "partial": partial,
        "stopped": stopped, "inputs_pending": pending, "pending_by_reason": dict(sorted(tracker.pending.items())),
        "inputs_unfinished": max(0, expected - counts.inputs),
        "inputs_retried_this_run": tracker.retried,
        "tokenizer": cfg.preset, "checkpoint_sha256": sha, "random_weights": not cfg.checkpoint,
        "regularizer": kind, "token_shape": list(token_shape), "num_frames": decode.num_frames, "size": size,
        "buckets": [list(b) for b in decode.buckets] if decode.buckets else None, "whole_clip": decode.whole_clip,
        "inputs_listed": plan.total_inputs, "inputs_done_before": plan.skipped_done,
        "inputs_this_run": counts.inputs, "inputs_ok_this_run": tracker.reasons.get("ok", 0),
        "failures_this_run": dict(sorted(counts.failures.items())),
        "failures_total": dict(sorted(done_reasons.items())), "duplicate_inputs_in_listing": plan.duplicates_in_input,
        "windows_this_run": counts.windows, "windows_total": state.committed_windows + counts.windows,
        "duplicate_windows_found": state.duplicate_windows, "wall_time_s": round(time.time() - t0, 3),
        "pipeline_time_s": round(run_s, 3), "windows_per_s": round(counts.windows / run_s, 3),
        "video_seconds_per_s": round(counts.video_s / run_s, 3), "nodes": nodes, "crop_this_run": tracker.crop(),
        "frames": frames_summary,
    }
    if partial and stopped is None and pending == 0:  # the limited run itself went well: say what is missing
        log.warning("partial output (%s): _SUCCESS not written; run again without limit= to complete it", partial)
        write_json(layout, "summary.json", summary)
        write_card(layout, summary, cfg)
        return summary
    if not complete:
        log.error("run %s incomplete: %d inputs pending %s%s; _SUCCESS not written. Re-run the same command to "
                  "retry them.", run_id, pending, summary["pending_by_reason"], f", stopped: {stopped}" if stopped else "")
        try:
            write_json(layout, "summary.json", summary)
        except Exception as e:  # still in the outage: the summary is informational, the status rows are the truth
            log.error("summary.json not written (%s)", e)
        return summary
    layout.remove("_plan", recursive=True)  # this run's plan; an older crashed run's plan is stale too
    write_json(layout, "summary.json", summary)
    write_card(layout, summary, cfg)  # README.md: the dataset card (pipeline/tokenize/card.py)
    layout.write_bytes("resolved_config.yaml", to_yaml(cfg).encode())
    layout.write_bytes("_SUCCESS", b"")
    return summary


def summary_text(summary: dict) -> str:
    """The run's end on the console, a few lines: counts, failures by reason, where things are, the next command
    (`summary.json` has everything)."""
    out = summary["output"]
    if summary.get("inputs_listed") is None:  # stopped before the plan
        return f"stopped before planning: {summary.get('stopped')}"
    failed = summary.get("failures_this_run") or {}
    lines = [
        f"done: {summary['inputs_this_run']} inputs this run ({summary['inputs_ok_this_run']} ok, "
        f"{sum(failed.values())} failed), {summary['windows_this_run']} windows in {summary['wall_time_s']:.0f} s "
        f"({summary['video_seconds_per_s']} video-s/s); {summary['windows_total']} windows in the output",
        "failures by reason: " + (", ".join(f"{k} {v}" for k, v in sorted(failed.items())) or "none")
        + ("" if not failed else f" (the `message` of each status row says why: {out}/status/)"),
        f"output: {out} (summary.json, README.md: the dataset card, _logs/: Ray's own output)",
    ]
    if summary.get("complete"):
        lines.append(f"next: python jobs/reconstruct.py tokens={out} num_clips=2   # tokens back to video")
    return "\n".join(lines)


class _FramesOutput:
    """The side output `frames.output` (a frames cache, `pipeline/frames/store.py`) as the driver sees it: claimed
    like the cache job's output (the same kind: either job can go on with it), the sources it holds (the plan's
    `frames_cached`), and at the end its index parts folded into buckets (`pipeline/frames/index.py`)."""

    def __init__(self, cfg: TokenizeJobConfig, fps: float, source: str, opts: dict):
        from pipeline.frames.store import cache_claim, load_cache_state

        self.layout = OutputLayout(cfg.frames.output, opts, cfg.retry)
        self.claim = cache_claim(self.layout, fps, cfg.frames, source, cfg.append).check()
        self.done = load_cache_state(self.layout).done
        self.without = 0  # inputs tokenized by earlier runs without their frames here (`check_earlier`)

    def check_earlier(self, tokenized: set[str], source: str) -> None:
        """Warn about inputs tokenized by earlier runs whose frames the cache lacks: this job decodes only inputs
        with windows to encode, so their frames come only from the cache job."""
        self.without = len(tokenized - self.done)
        if self.without:
            log.warning("frames.output: %d inputs were tokenized by earlier runs without their frames in %s; this job "
                        "does not decode them again: run jobs/cache_frames.py input=%s output=%s (it skips the cached "
                        "videos)", self.without, self.layout.url, source, self.layout.url)

    def close(self) -> dict:
        from pipeline.frames.index import consolidate

        out = {"output": self.layout.url, "videos_before": len(self.done),
               "tokenized_before_without_frames": self.without}
        try:
            folded = consolidate(self.layout)
            out.update(videos=folded["videos"], index_generation=folded["generation"], parts_folded=folded["parts"])
        except Exception as e:  # the parts stay readable as they are; the next run folds them
            if not is_transient_error(e):
                raise
            log.error("frames cache %s: index not consolidated (%s); readers use its parts", self.layout.url, e)
            out["index_error"] = _short(e)
        return out


def _run_nodes_actor():
    """The RunNodes actor, on the driver's own node (soft=False): it dies only with the driver, never with a worker
    node; a crash of its process restarts it (empty: it holds only informational counts) and its calls are retried."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    here = ray.get_runtime_context().get_node_id()
    return ray.remote(RunNodes).options(
        num_cpus=0, max_restarts=-1, max_task_retries=-1,
        scheduling_strategy=NodeAffinitySchedulingStrategy(here, soft=False)).remote()


def _run_chain(cfg: TokenizeJobConfig, plan: Plan, decode: DecodeConfig, layout: OutputLayout, sha: str,
               tokens_binary: bool, shard_rows: int, tracker: StatusTracker, run_id: str,
               progress: RunProgress, logs: RayLogs) -> dict:
    """Run the Ray Data chain over the plan, feeding `tracker`; returns where the stages ran (RunNodes)."""
    session = ExitStack()
    session.enter_context(ray_session(cfg.ray, logs))  # Ray started or joined; stopped (if ours) in `finally`
    try:
        num_gpus = cfg.tokenizer.num_gpus
        if num_gpus is None:
            num_gpus = 1.0 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0
        nodes = _run_nodes_actor()
        dt = cfg.decode_task
        slots = ray.cluster_resources().get("CPU", 1.0) / dt.num_cpus
        per_task = dt.inputs_for(plan.pending, plan.pending_bytes, plan.pending_sized, slots)
        log.info("decode tasks: %d inputs each (%s)", per_task,
                 "decode_task.inputs_per_task" if dt.inputs_per_task else
                 f"sized by decode_task.task_mb={dt.task_mb} over {plan.pending_sized} known sizes")
        ds = build_dataset(plan.files, cfg, decode, layout, sha, tokens_binary, num_gpus, shard_rows, run_id, per_task,
                           nodes)
        progress.slots = int(dt.concurrency or max(slots, 1))
        progress.needs = {"decode tasks": {"CPU": dt.num_cpus},
                          "tokenizer": {"CPU": cfg.tokenizer.num_cpus, "GPU": num_gpus}}
        try:
            with progress.attach(nodes):
                for written in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
                    tracker.consume(written)
        except Exception as e:  # a broken decode environment stops the run with its own exit code (the job's)
            broken = find_cause(e, MachineBroken)
            if broken is None:
                raise
            raise MachineBroken(broken.node, broken.reason, broken.detail, broken.sources) from None
        tracker.close()
        progress.save_stats(ds)
        if tracker.redelivered:
            log.warning("%d windows of finished inputs came again (Ray re-ran tasks after a lost node); counted once",
                        tracker.redelivered)
        try:  # where the stages ran: informational, never worth the run (a lost actor leaves it partial)
            seen = ray.get(nodes.get.remote(), timeout=60)
            ray.kill(nodes)
        except Exception as e:
            log.warning("where the stages ran is unknown (RunNodes: %s): the summary's nodes stay empty", _short(e))
            seen = {}
        return seen
    finally:
        try:
            tracker.maybe_flush(force=True)  # what is committed stays committed, even if the chain failed
        except Exception as e:  # an outage: these rows are rebuilt from the committed token shards next run
            log.error("status rows of %d finished inputs not committed (%s)", len(tracker.buffer), e)
        session.close()
