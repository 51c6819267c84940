"""Two-stage VidTok training on Ray Train — the ONE library function both stage jobs call: `run_training(cfg)`.

Driver: resolves the stage once (`pipeline/train/setup.py: TrainRun`: paths, decode settings, export URL, storage
options), lists the inputs (or writes the sample corpus), holds out validation videos and runs a Train V2 `TorchTrainer` with `RunConfig(storage_path, name)`,
`CheckpointConfig(num_to_keep)` and `FailureConfig(max_failures)`; each worker streams its own batches in the fixed
training order (`pipeline/train/order.py`, `pipeline/train/stream.py`).
Re-running the same command resumes: Ray Train finds the run's checkpoints under `<output>/<name>` and
`ray.train.get_checkpoint()` hands the latest to every worker (`pipeline/train/loop.py`).

Stage 2 starts from `init_from`, by default the stage-1 run of the same preset under the same output
(`<output>/<preset>_stage1`): a key with a derived default, so a custom `name=` of either stage still works.
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass

import ray
import ray.train
from ray.train.torch import TorchTrainer

from pipeline.config import to_yaml
from pipeline.decode.synth import make_sample_corpus
from pipeline.inputs import list_urls
from pipeline.ray_utils import RayLogs, ray_session
from pipeline.job_record import OutputClaim
from pipeline.storage import OutputLayout, is_remote, join, local_path, write_bytes
from pipeline.train.checkpoint import latest_checkpoint_dir, ray_storage
from pipeline.train.config import TrainConfig
from pipeline.train.loop import train_loop_per_worker
from pipeline.train.setup import TrainRun

log = logging.getLogger(__name__)

# How often Ray Train's controller polls its workers (Ray's default 2 s). Every fit waits on that poll to see its
# worker group start and end, and a restart to see a death: on a Ray on this machine 0.5 s takes ~3.5 s off each
# fit (measured: a 2-step tiny fit 14.9 s -> 11.1 s). A joined cluster keeps Ray's default (or the operator's value).
HEALTH_CHECK_ENV, LOCAL_HEALTH_CHECK_S = "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.5"


@dataclass
class TrainSummary:
    """Where a finished run put things, and its last metrics."""

    run_dir: str
    checkpoint: str | None
    export: str | None
    metrics: dict
    init_from: str | None = None


def resolve_inputs(run: TrainRun) -> tuple[list[str], list[str]]:
    """(train urls, val urls): list `input` (prefix or manifest) or generate the sample corpus; hold out val videos."""
    cfg, opts = run.cfg, run.storage_options
    source = cfg.input
    if not source:
        base = run.paths.output if not is_remote(run.paths.output) else local_path("runs")
        source = str(make_sample_corpus(os.path.join(base, "sample_corpus"), num_clips=cfg.data.sample_corpus_clips))
        log.info("no input given: training on the generated sample corpus %s", source)
    urls = list_urls(source, extensions=cfg.data.extensions, storage_options=opts)
    if not urls:
        raise ValueError(f"no videos under input={source!r} with extensions {cfg.data.extensions}")
    if cfg.val_input:
        return urls, list_urls(cfg.val_input, extensions=cfg.data.extensions, storage_options=opts)
    if len(urls) == 1:
        log.warning("only one input video: validating on the training video")
        return urls, urls
    k = max(1, int(round(len(urls) * cfg.val_fraction)))
    return urls[:-k], urls[-k:]


def describe_run(cfg: TrainConfig) -> str:
    """`dry_run=true`: the resolved schedule, the inputs found and their train/val split; starts nothing, and does
    not generate the sample corpus an empty `input` stands for."""
    run = TrainRun.of(cfg)
    paths, decode = run.paths, run.decode
    kind = "full model" if cfg.stage == 1 else "decoder only, encoder frozen"
    lines = [f"dry run: training not started (stage {cfg.stage}, {kind}; schedule {cfg.schedule})",
             f"  preset:       {cfg.preset}",
             f"  steps:        {cfg.steps}, global batch {cfg.batch_size} = {cfg.per_worker_batch} per worker x "
             f"{cfg.num_workers} workers ({'GPU' if cfg.use_gpu else 'CPU'})",
             f"  clips:        {decode.num_frames} frames at {decode.fps:g} fps, {decode.size}x{decode.size}; "
             f"{cfg.steps * cfg.batch_size} clips drawn in all",
             f"  cadence:      checkpoint every {cfg.checkpoint_every} steps (keep {cfg.keep_checkpoints}), validation "
             f"every {cfg.val_every} ({cfg.val_clips} clips), metrics every {cfg.log_every}",
             f"  run dir:      {paths.run_dir} (resumes from: "
             f"{latest_checkpoint_dir(paths.run_dir, run.storage_options) or 'nothing yet, starts at step 0'})",
             f"  export:       {run.export or 'none (export=false)'}"]
    if cfg.stage == 2:
        lines.append(f"  init from:    {paths.init_from}")
    if not cfg.input:
        lines.append(f"  inputs:       none given: a run generates {cfg.data.sample_corpus_clips} sample clips and holds "
                     "out one of them for validation")
        return "\n".join(lines)
    train_urls, val_urls = resolve_inputs(run)
    held = f"val_input={cfg.val_input}" if cfg.val_input else f"val_fraction={cfg.val_fraction}"
    passes = cfg.steps * cfg.batch_size / (len(train_urls) * cfg.data.clips_per_video)
    lines += [f"  inputs:       {len(train_urls) + (0 if cfg.val_input else len(val_urls))} videos under {cfg.input}",
              f"  split:        {len(train_urls)} training, {len(val_urls)} validation ({held}); "
              f"{passes:.2f} passes over the training videos",
              f"  first:        {train_urls[0]}" + (f", validation {val_urls[0]}" if val_urls else "")]
    return "\n".join(lines)


def run_training(cfg: TrainConfig, *, fail_at_step: int | None = None) -> TrainSummary:
    """Run (or resume) one stage; returns where the checkpoints and exported weights are.

    `fail_at_step` (tests only): the last rank kills itself once at that step, as when a node is lost, to exercise
    `FailureConfig` recovery (`pipeline/train/loop.py: failure_drill`).
    """
    # A private local Ray gets logical CPUs for the trainers ON TOP of the machine's cores: otherwise the trainers
    # take every CPU slot and the decode tasks they wait for can never be scheduled.
    local_cpus = cfg.ray.num_cpus or (os.cpu_count() or 1) + math.ceil(cfg.num_workers * cfg.cpus_per_worker)
    run = TrainRun.of(cfg, fail_at_step=fail_at_step)
    run_dir, opts = run.paths.run_dir, run.storage_options
    # the run dir is this run's alone: refused if it holds someone else's files (writes nothing; recorded below)
    claim = OutputClaim(OutputLayout(run_dir, opts), f"train-stage{cfg.stage}",
                        {"preset": cfg.preset, "stage": cfg.stage}, cfg.input or None, append=True, data=("",),
                        legacy="config.yaml").check()
    logs = RayLogs(console=cfg.ray.console_logs)
    try:
        with ray_session(cfg.ray, logs, num_cpus=local_cpus):
            return _run(run, claim)
    finally:  # Ray's own output (progress bars, Ray Train's lines), off the console
        logs.keep(lambda data: write_bytes(join(run_dir, "_logs", time.strftime("%Y%m%dT%H%M%SZ.log", time.gmtime())),
                                           data, opts))


def joined_cluster(ray_cfg) -> bool:
    """Whether this job joins a running cluster by address (`ray.address=` / `RAY_ADDRESS`, as under `ray job
    submit`) rather than a Ray on this machine (a private one, or one this process started, as the tests')."""
    return bool(ray_cfg.address or os.environ.get("RAY_ADDRESS"))


class LocalRayTrainer(TorchTrainer):
    """`TorchTrainer` without Ray Train's placement-group cleaner, for a Ray on this machine only.

    The cleaner is a detached actor that removes the run's placement group if the controller dies without cleaning
    up, and it asks the State API whether the controller lives. On a Ray started in-process with its own temp dir
    that API does not find the cluster (each call retries the dashboard address for ~40 s), so stopping the cleaner
    at the end of every `fit()` waited out its 12-s timeout (measured: 49 s → 35 s for a 4-step tiny run). A local
    Ray's placement groups go with it; a joined cluster keeps the cleaner."""

    def _create_default_callbacks(self):
        callbacks = super()._create_default_callbacks()
        try:
            from ray.train.v2._internal.callbacks.placement_group_callback import PlacementGroupCleanerCallback
        except ImportError:  # a Ray Train without the cleaner
            return callbacks
        return [c for c in callbacks if not isinstance(c, PlacementGroupCleanerCallback)]


def _run(run: TrainRun, claim: OutputClaim) -> TrainSummary:
    """The stage on a Ray that is up: list, record the run, fit."""
    cfg, paths, opts = run.cfg, run.paths, run.storage_options
    train_urls, val_urls = resolve_inputs(run)
    claim.record()
    write_bytes(join(paths.run_dir, "config.yaml"), to_yaml(cfg).encode(), opts)
    log.info("stage %d: %d training / %d validation videos, %d steps, global batch %d, %dx%d, %d frames, %d workers",
             cfg.stage, len(train_urls), len(val_urls), cfg.steps, cfg.batch_size, run.decode.size,
             run.decode.size, run.num_frames, cfg.num_workers)
    storage_path, storage_fs = ray_storage(paths.output, opts)
    if not joined_cluster(cfg.ray):  # read by `fit()` from this process's environment (then the controller's)
        os.environ.setdefault(HEALTH_CHECK_ENV, LOCAL_HEALTH_CHECK_S)
    trainer = (TorchTrainer if joined_cluster(cfg.ray) else LocalRayTrainer)(
        train_loop_per_worker,
        # each worker builds its own data stream (pipeline/train/stream.py); the listing goes once to the object store
        train_loop_config={"run": run.with_inputs(ray.put(train_urls), val_urls)},
        scaling_config=ray.train.ScalingConfig(
            num_workers=cfg.num_workers, use_gpu=cfg.use_gpu, resources_per_worker={"CPU": cfg.cpus_per_worker},
            placement_strategy=cfg.placement_strategy),
        run_config=ray.train.RunConfig(
            name=cfg.name, storage_path=storage_path, storage_filesystem=storage_fs,
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=cfg.keep_checkpoints),
            failure_config=ray.train.FailureConfig(max_failures=cfg.max_failures)),
    )
    result = trainer.fit()
    ckpt = latest_checkpoint_dir(paths.run_dir, opts)
    return TrainSummary(paths.run_dir, ckpt, run.export, dict(result.metrics or {}), paths.init_from)
