"""Two-stage VidTok training on Ray Train — the ONE library function both stage jobs call: `run_training(cfg)`.

Driver: lists the inputs (or writes the sample corpus), holds out validation videos, builds the streaming Ray Data
training set (`pipeline/train_data.py`) and runs a Train V2 `TorchTrainer` with `RunConfig(storage_path, name)`,
`CheckpointConfig(num_to_keep)` and `FailureConfig(max_failures)`. Re-running the same command resumes: Ray Train
finds the run's checkpoints under `<output>/<name>` and `ray.train.get_checkpoint()` hands the latest to every worker.

Worker (`train_loop_per_worker`): builds the model (`vidtok`), the loss and the pure-torch step (`vidtok.train_step`);
wraps the engine in DDP (`ray.train.torch.prepare_model`, `find_unused_parameters=True` as the official run); reads
`get_dataset_shard("train").iter_torch_batches(prefetch_batches=…)`; bf16 autocast on GPU. Every `checkpoint_every`
steps all ranks report a checkpoint (rank 0 the state, each rank its RNG). Rank 0 validates every `val_every` steps
(PSNR / SSIM / LPIPS, previews as mp4 + PNG), writes TensorBoard events under `<output>/<name>/tensorboard`, and at
the end exports official-layout weights to `<output>/<name>/export/`. Stage 2 freezes encoder + regularizer and
checks at the end that the encoder is bit-identical to its start.

Data wait: time blocked on the next batch vs. time in the step, reported as `data_wait_frac` (steady state: after
the first two steps).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import random
import tempfile
import time
from dataclasses import dataclass

import numpy as np
import torch

from pipeline.train_checkpoint import (
    CKPT_PREFIX, STATE_FILE, export_official, fs_and_path, init_stage2, is_remote, join, latest_checkpoint_dir,
    module_digest, ray_storage, restore_training_state, torch_load_url, training_state, write_bytes,
)
from pipeline.train_config import TrainConfig

log = logging.getLogger(__name__)


@dataclass
class TrainSummary:
    """Where a finished run put things, and its last metrics."""

    run_dir: str
    checkpoint: str | None
    export: str | None
    metrics: dict


# ------------------------------------------------------------------------------------------------------ driver
def resolve_inputs(cfg: TrainConfig) -> tuple[list[str], list[str]]:
    """(train urls, val urls): list `input` (prefix or manifest) or generate the sample corpus; hold out val videos."""
    from pipeline.listing import iter_inputs

    source = cfg.input
    if not source:
        from pipeline.sample_corpus import make_sample_corpus

        base = cfg.output if not is_remote(cfg.output) else "runs"
        source = str(make_sample_corpus(os.path.join(base, "sample_corpus"), num_clips=cfg.data.sample_corpus_clips))
        log.info("no input given: training on the generated sample corpus %s", source)
    urls = [u for t in iter_inputs(source, extensions=cfg.data.extensions, storage_options=cfg.storage_options)
            for u in t.column("source").to_pylist()]
    if not urls:
        raise ValueError(f"no videos under input={source!r} with extensions {cfg.data.extensions}")
    if cfg.val_input:
        val = [u for t in iter_inputs(cfg.val_input, extensions=cfg.data.extensions,
                                      storage_options=cfg.storage_options) for u in t.column("source").to_pylist()]
        return urls, val
    if len(urls) == 1:
        log.warning("only one input video: validating on the training video")
        return urls, urls
    k = max(1, int(round(len(urls) * cfg.val_fraction)))
    return urls[:-k], urls[-k:]


def run_dir(cfg: TrainConfig) -> str:
    return join(cfg.output, cfg.name)


def run_training(cfg: TrainConfig) -> TrainSummary:
    """Run (or resume) one stage; returns where the checkpoints and exported weights are."""
    import ray.train
    from ray.train.torch import TorchTrainer

    from pipeline.config import to_yaml
    from pipeline.ray_utils import init_ray
    from pipeline.train_data import build_train_dataset
    from vidtok import preset_config

    # A private local Ray gets logical CPUs for the trainers ON TOP of the machine's cores: otherwise the trainers
    # take every CPU slot and the decode tasks they wait for can never be scheduled.
    local_cpus = (os.cpu_count() or 1) + math.ceil(cfg.num_workers * cfg.cpus_per_worker)
    started = init_ray(cfg.ray_address, num_cpus=local_cpus)
    try:
        # Workers run in Ray's own working directory: hand them absolute local paths.
        if not is_remote(cfg.output):
            cfg.output = os.path.abspath(cfg.output)
        if cfg.init_from and not is_remote(cfg.init_from):
            cfg.init_from = os.path.abspath(cfg.init_from)
        if cfg.stage == 2 and not cfg.init_from:
            cfg.init_from = join(cfg.output, cfg.name.replace("_stage2", "_stage1"))
        train_urls, val_urls = resolve_inputs(cfg)
        num_frames = cfg.data.num_frames or preset_config(cfg.preset).default_num_frames
        write_bytes(join(run_dir(cfg), "config.yaml"), to_yaml(cfg).encode(), cfg.storage_options)
        log.info("stage %d: %d training / %d validation videos, %d steps, global batch %d, %dx%d, %d frames, %d workers",
                 cfg.stage, len(train_urls), len(val_urls), cfg.steps, cfg.batch_size, cfg.size, cfg.size,
                 num_frames, cfg.num_workers)
        ds = build_train_dataset(
            train_urls, steps=cfg.steps, global_batch=cfg.batch_size, num_frames=num_frames, size=cfg.size,
            fps=cfg.data.fps, clips_per_video=cfg.data.clips_per_video, seed=cfg.seed, timeout_s=cfg.data.timeout_s,
            storage_options=cfg.storage_options, decode_num_cpus=cfg.data.decode_num_cpus,
            decode_concurrency=cfg.data.decode_concurrency)
        storage_path, storage_fs = ray_storage(cfg.output, cfg.storage_options)
        trainer = TorchTrainer(
            train_loop_per_worker,
            train_loop_config={"cfg": cfg, "val_urls": val_urls, "num_frames": num_frames},
            scaling_config=ray.train.ScalingConfig(
                num_workers=cfg.num_workers, use_gpu=cfg.use_gpu, resources_per_worker={"CPU": cfg.cpus_per_worker}),
            run_config=ray.train.RunConfig(
                name=cfg.name, storage_path=storage_path, storage_filesystem=storage_fs,
                checkpoint_config=ray.train.CheckpointConfig(num_to_keep=cfg.keep_checkpoints),
                failure_config=ray.train.FailureConfig(max_failures=cfg.max_failures)),
            datasets={"train": ds},
        )
        result = trainer.fit()
        ckpt = latest_checkpoint_dir(run_dir(cfg), cfg.storage_options)
        export = join(run_dir(cfg), "export", export_name(cfg, cfg.steps)) if cfg.export else None
        return TrainSummary(run_dir(cfg), ckpt, export, dict(result.metrics or {}))
    finally:
        if started:
            import ray

            ray.shutdown()


def export_name(cfg: TrainConfig, step: int) -> str:
    return f"{cfg.preset}_stage{cfg.stage}_step{step:08d}.ckpt"


# ------------------------------------------------------------------------------------------------------ worker
def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def build_engine(cfg: TrainConfig):
    """Model + loss + TrainEngine for a stage (stage 2: encoder and regularizer frozen)."""
    from vidtok import VidTok
    from vidtok.losses import VidTokLoss
    from vidtok.train_step import TrainEngine

    model = VidTok.from_config(cfg.preset)
    loss = VidTokLoss(dataclasses.replace(cfg.loss))
    return TrainEngine(model, loss, freeze_encoder=(cfg.stage == 2))


def train_loop_per_worker(loop_cfg: dict) -> None:
    """Ray Train worker body (see module docstring)."""
    import ray.train
    import ray.train.torch

    from pipeline.train_data import load_val_clips, to_model_input
    from vidtok.train_step import OptimConfig, TrainState, make_optimizers, set_rng_state, train_step

    cfg: TrainConfig = loop_cfg["cfg"]
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    logging.basicConfig(level=logging.INFO, format=f"[rank {rank}] %(levelname)s %(name)s: %(message)s")
    if not torch.cuda.is_available():
        torch.set_num_threads(max(1, int(cfg.cpus_per_worker)))
    device = ray.train.torch.get_device()
    _seed_everything(cfg.seed)  # same initial weights on every rank (DDP also broadcasts rank 0's)
    engine = build_engine(cfg)
    optim = OptimConfig(lr=cfg.lr, grad_clip=cfg.grad_clip)
    state = TrainState()

    checkpoint = ray.train.get_checkpoint()
    source = "fresh"
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            payload = torch.load(os.path.join(d, STATE_FILE), map_location="cpu", weights_only=False)
            rng_path = os.path.join(d, f"rng_rank{rank}.pt")
            rng = torch.load(rng_path, map_location="cpu", weights_only=False) if os.path.exists(rng_path) else None
        engine.to(device)
        opt_ae, opt_d = make_optimizers(engine, optim)
        restore_training_state(payload, engine, opt_ae, opt_d, state)
        if rng is not None:
            set_rng_state(rng)
        else:  # a different world size than the checkpoint: a fresh but step-dependent stream per rank
            _seed_everything(cfg.seed + 1000 * rank + state.step)
        source = f"resumed at step {state.step}"
        if rank == 0:  # an audit record of every restart: which step, and a digest of the restored state
            _write_resume_record(cfg, state.step, engine, opt_ae, opt_d)
    else:
        if cfg.stage == 2:
            source = "stage 2 from " + init_stage2(engine, cfg.init_from, cfg.storage_options)
        engine.to(device)
        opt_ae, opt_d = make_optimizers(engine, optim)
        _seed_everything(cfg.seed + rank)  # per-rank streams from here (KL sampling, dropout)
    if rank == 0:
        log.info("%s; preset %s; device %s; world size %d", source, cfg.preset, device, world)
    encoder_digest = module_digest(engine.model.encoder) if cfg.stage == 2 else None

    ddp = ray.train.torch.prepare_model(engine, move_to_device=False,
                                        parallel_strategy_kwargs={"find_unused_parameters": True})
    autocast = torch.bfloat16 if (cfg.bf16 and device.type == "cuda") else None
    val = None
    if rank == 0 and cfg.val_every > 0:
        val = load_val_clips(loop_cfg["val_urls"], max_clips=cfg.val_clips, num_frames=loop_cfg["num_frames"],
                             size=cfg.size, fps=cfg.data.fps, timeout_s=cfg.data.timeout_s,
                             storage_options=cfg.storage_options)[0]
    tb = _TensorBoard(run_dir(cfg), cfg.storage_options) if rank == 0 else None

    shard = ray.train.get_dataset_shard("train")
    wait_s = step_s = 0.0
    window_wait = window_step = 0.0
    window_n = 0
    metrics: dict = {}
    while state.step < cfg.steps:
        batches = shard.iter_torch_batches(batch_size=cfg.per_worker_batch, prefetch_batches=cfg.data.prefetch_batches,
                                           drop_last=True, dtypes={"video": torch.uint8})
        it, got_any = iter(batches), False
        while state.step < cfg.steps:
            t0 = time.perf_counter()
            try:
                batch = next(it)
            except StopIteration:
                break
            got_any = True
            if cfg.fail_at_step and rank == world - 1 and state.step == cfg.fail_at_step:
                _failure_drill(cfg, state.step)
            t1 = time.perf_counter()
            x = to_model_input(batch["video"], device)
            metrics = train_step(ddp, opt_ae, opt_d, x, state, optim, autocast)  # floats: synchronises the device
            t2 = time.perf_counter()
            if state.step > 2:  # steady state: the first batches include pipeline start-up
                wait_s, step_s = wait_s + (t1 - t0), step_s + (t2 - t1)
            window_wait, window_step, window_n = window_wait + (t1 - t0), window_step + (t2 - t1), window_n + 1
            step = state.step
            do_ckpt = step % cfg.checkpoint_every == 0 or step == cfg.steps
            do_val = val is not None and (step % cfg.val_every == 0 or step == cfg.steps)
            do_log = step % cfg.log_every == 0 or do_ckpt
            if rank == 0 and do_val:
                metrics.update(_validate(engine, val, device, cfg, step, autocast))
            if do_log or do_ckpt:
                metrics.update(
                    data_wait_s=window_wait, step_s=window_step,
                    data_wait_frac=(wait_s / (wait_s + step_s)) if step_s else float("nan"),
                    window_data_wait_frac=window_wait / max(window_wait + window_step, 1e-9),
                    clips_per_s_per_worker=window_n * cfg.per_worker_batch / max(window_step + window_wait, 1e-9),
                    clips_seen=state.clips_seen * world)
                window_wait = window_step = 0.0
                window_n = 0
                if tb is not None:
                    tb.add(metrics, step)
            if do_ckpt:
                _report_checkpoint(engine, opt_ae, opt_d, state, cfg, metrics, rank, tb)
            elif do_log:
                ray.train.report(_scalars(metrics))
        if not got_any:
            raise RuntimeError("the training stream produced no batch: every input failed to decode or is shorter "
                               "than one clip (see the 'training input skipped' warnings)")
    if encoder_digest is not None and module_digest(engine.model.encoder) != encoder_digest:
        raise RuntimeError("stage 2 changed the frozen encoder's weights: this is a bug in the freezing code")
    if rank == 0 and cfg.export:
        url = export_official(engine, join(run_dir(cfg), "export", export_name(cfg, state.step)), state.step,
                              cfg.storage_options, extra={"preset": cfg.preset, "stage": cfg.stage})
        log.info("exported official-layout weights to %s", url)
    if tb is not None:
        tb.close()


def _failure_drill(cfg, step: int) -> None:
    """`fail_at_step`: kill this worker process once per run, as when a node is lost, to exercise FailureConfig.

    A marker in the run dir makes the drill fire once (a restart that resumes before the drill step must not die
    again, or the run would exhaust `max_failures`). Before dying the worker waits a few controller health-check
    periods so that the checkpoint reported at the previous step is registered: otherwise, on a loaded machine, the
    controller can see the death before it has polled that report and restart from scratch.
    """
    marker = join(run_dir(cfg), "_drills", f"fail_at_step_{step:08d}")
    fs, path = fs_and_path(marker, cfg.storage_options)
    if fs.exists(path):
        return
    write_bytes(marker, b"fired", cfg.storage_options)
    time.sleep(3 * float(os.environ.get("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "2.0")) + 2.0)
    log.error("fail_at_step=%d: killing this worker to exercise FailureConfig recovery", step)
    os._exit(17)


def state_digest(engine, opt_ae, opt_d) -> str:
    """SHA-256 over model, loss and both optimisers' tensors: equal digests mean an exactly restored state."""
    import hashlib

    h = hashlib.sha256()
    h.update(module_digest(engine.model).encode())
    h.update(module_digest(engine.loss).encode())
    for opt in (opt_ae, opt_d):
        for pid, st in sorted(opt.state_dict()["state"].items()):
            for k, v in sorted(st.items()):
                h.update(f"{pid}.{k}".encode())
                t = v if torch.is_tensor(v) else torch.tensor(float(v))
                h.update(t.detach().cpu().float().numpy().tobytes())
    return h.hexdigest()


def _write_resume_record(cfg, step, engine, opt_ae, opt_d) -> None:
    import json

    rec = {"resumed_at_step": step, "state_digest": state_digest(engine, opt_ae, opt_d), "time": time.time()}
    write_bytes(join(run_dir(cfg), "resumes", f"step_{step:08d}_{int(time.time() * 1000)}.json"),
                json.dumps(rec).encode(), cfg.storage_options)


def _scalars(metrics: dict) -> dict:
    return {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not math.isnan(float(v))}


def _report_checkpoint(engine, opt_ae, opt_d, state, cfg, metrics, rank, tb) -> None:
    """All ranks report one checkpoint dir: rank 0 the training state, every rank its RNG state (merged by Ray)."""
    import ray.train

    from vidtok.train_step import rng_state

    with tempfile.TemporaryDirectory() as d:
        if rank == 0:
            torch.save(training_state(engine, opt_ae, opt_d, state, cfg), os.path.join(d, STATE_FILE))
            if tb is not None:
                tb.flush()
        torch.save(rng_state(), os.path.join(d, f"rng_rank{rank}.pt"))
        ray.train.report(_scalars(metrics), checkpoint=ray.train.Checkpoint.from_directory(d),
                         checkpoint_dir_name=f"{CKPT_PREFIX}{state.step:08d}")


def _validate(engine, val_clips, device, cfg, step, autocast) -> dict:
    """PSNR / SSIM / LPIPS on the held-out clips (rank 0) and preview files; returns `val/*` metrics."""
    from pipeline.evaluate import evaluate_clips, write_previews

    if len(val_clips) == 0:
        return {}
    lp = engine.loss.perceptual_loss
    res, kept = evaluate_clips(engine.model, val_clips, device, lpips_module=lp, autocast_dtype=autocast,
                               keep=cfg.preview_clips)
    try:
        write_previews(kept, join(run_dir(cfg), "previews", f"step_{step:08d}"), cfg.storage_options, cfg.data.fps)
    except Exception as e:  # previews are a convenience; never stop training for them
        log.warning("could not write previews at step %d: %s", step, e)
    return {f"val/{k}": v for k, v in res.items()}


class _TensorBoard:
    """Rank-0 TensorBoard events (tensorboardX): written locally, mirrored to `<run>/tensorboard` on object storage."""

    def __init__(self, run_url: str, storage_options: dict | None):
        from tensorboardX import SummaryWriter

        self.remote = is_remote(run_url)
        self.run_url, self.storage_options = run_url, storage_options
        self.local = tempfile.mkdtemp(prefix="vt-tb-") if self.remote else join(run_url, "tensorboard")
        self.writer = SummaryWriter(self.local)

    def add(self, metrics: dict, step: int) -> None:
        for k, v in _scalars(metrics).items():
            self.writer.add_scalar(k if "/" in k else f"train/{k}", v, step)

    def flush(self) -> None:
        self.writer.flush()
        if self.remote:
            for name in os.listdir(self.local):
                with open(os.path.join(self.local, name), "rb") as f:
                    write_bytes(join(self.run_url, "tensorboard", name), f.read(), self.storage_options)

    def close(self) -> None:
        self.flush()
        self.writer.close()


def latest_state(run_url: str, storage_options: dict | None = None) -> dict | None:
    """The newest checkpoint's `state.pt` of a run (tests, tools), or None."""
    d = latest_checkpoint_dir(run_url, storage_options)
    return torch_load_url(join(d, STATE_FILE), storage_options) if d else None
