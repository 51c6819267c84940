"""The Ray Train worker of both training stages: `train_loop_per_worker` and the pieces it is made of.

Each worker builds the model (`vidtok`), the loss and the pure-torch step (`vidtok.train_step`), restores the latest
checkpoint Ray hands it (or initialises: stage 2 from `init_from`), wraps the engine in DDP
(`ray.train.torch.prepare_model`, `find_unused_parameters=True` as the official run) and reads its own batches in the
fixed training order (`pipeline.train.stream.RankStream`, `pipeline.train.order`) from its checkpoint's cursor; bf16
autocast on GPU. Every `checkpoint_every` steps all ranks report a checkpoint (rank 0 the state, each rank its RNG and
its data cursor, so a restart at step k trains on the batches an undisturbed run would have). Rank 0 validates every
`val_every` steps (PSNR / SSIM / LPIPS, previews as mp4 + PNG), writes TensorBoard events under `<run>/tensorboard`, and
at the end exports official-layout weights to `<run>/export/`. Stage 2 freezes encoder + regularizer and checks at the
end that the encoder is bit-identical to its start.

Data wait: time blocked on the next batch vs. time in the step, reported as `data_wait_frac` (steady state: after
the first two steps).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import random
import tempfile
import time

import numpy as np
import ray.train
import ray.train.torch
import torch
from tensorboardX import SummaryWriter

from pipeline.cli import LOG_FORMAT
from pipeline.evaluate.metrics import evaluate_clips, write_previews
from pipeline.storage import exists, is_remote, join, write_bytes
from pipeline.train.checkpoint import CKPT_PREFIX, STATE_FILE, export_name, export_official, init_stage2
from pipeline.train.config import TrainConfig
from pipeline.train.data import load_val_clips
from pipeline.train.order import TrainOrder
from pipeline.train.stream import RankStream
from vidtok import VidTok
from vidtok.losses import VidTokLoss
from vidtok.train_state import module_digest, restore_training_state, state_digest, training_state
from vidtok.train_step import TrainEngine, TrainState, make_optimizers, rng_state, set_rng_state, train_step
from vidtok.video import to_model_input

log = logging.getLogger(__name__)

DATA_PREFIX = "data_rank"  # data_rank<r>.json in a checkpoint: rank r's order key and cursor after the step


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def build_engine(cfg: TrainConfig):
    """Model + loss + TrainEngine for a stage (stage 2: encoder and regularizer frozen)."""
    return TrainEngine(VidTok.from_config(cfg.preset), VidTokLoss(cfg.loss), freeze_encoder=(cfg.stage == 2))


def restore_or_init(cfg: TrainConfig, paths, engine, device, rank: int):
    """`(opt_ae, opt_d, state, data records, what happened)`: the latest Ray checkpoint if there is one (exact resume:
    rank 0's state, then this rank's RNG and LeCam EMAs; every rank's `data_rank<r>.json` record for the data
    cursor), else a fresh start (stage 2: weights from `paths.init_from`)."""
    state = TrainState()
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None:
        source = "fresh"
        if cfg.stage == 2:
            source = "stage 2 from " + init_stage2(engine, paths.init_from, paths.storage_options)
        engine.to(device)
        opt_ae, opt_d = make_optimizers(engine, cfg.optim)
        seed_everything(cfg.seed + rank)  # per-rank streams from here (KL sampling, dropout)
        return opt_ae, opt_d, state, [], source
    with checkpoint.as_directory() as d:
        payload = torch.load(os.path.join(d, STATE_FILE), map_location="cpu", weights_only=False)
        rng_path = os.path.join(d, f"rng_rank{rank}.pt")
        rng = torch.load(rng_path, map_location="cpu", weights_only=False) if os.path.exists(rng_path) else None
        cursors = []
        for name in sorted(n for n in os.listdir(d) if n.startswith(DATA_PREFIX)):
            with open(os.path.join(d, name)) as f:
                cursors.append(json.load(f))
    engine.to(device)
    opt_ae, opt_d = make_optimizers(engine, cfg.optim)
    restore_training_state(payload, engine, opt_ae, opt_d, state)
    own = [c for c in cursors if int(c.get("rank", -1)) == rank and "loss_extra" in c]
    if own:  # the LeCam EMAs follow each rank's own discriminator logits: rank 0's (in state.pt) are not this rank's
        engine.loss.load_extra_state(own[0]["loss_extra"])
    if rng is not None:
        set_rng_state(rng)
    else:  # a different world size than the checkpoint: a fresh but step-dependent stream per rank
        seed_everything(cfg.seed + 1000 * rank + state.step)
    if rank == 0:  # an audit record of every restart: which step, and a digest of the restored state
        rec = {"resumed_at_step": state.step, "state_digest": state_digest(engine, opt_ae, opt_d), "time": time.time()}
        write_bytes(join(paths.run_dir, "resumes", f"step_{state.step:08d}_{int(time.time() * 1000)}.json"),
                    json.dumps(rec).encode(), paths.storage_options)
    return opt_ae, opt_d, state, cursors, f"resumed at step {state.step}"


class BatchesDigest:
    """A running SHA-256 over every batch a rank trained on (its uint8 clips, in order), carried across restarts in
    the checkpoints: two runs with equal digests at a step trained on the same batches (an audit, and the tests')."""

    def __init__(self, hex: str = ""):
        self.hex = hex

    def add(self, clips: np.ndarray) -> None:
        self.hex = hashlib.sha256(self.hex.encode() + np.ascontiguousarray(clips).tobytes()).hexdigest()


class StepTimer:
    """Time blocked on data vs. time in the step: totals in steady state (after step 2) and per reporting window."""

    def __init__(self):
        self.wait_s = self.step_s = 0.0
        self.window_wait = self.window_step = 0.0
        self.window_n = 0

    def add(self, step: int, wait: float, compute: float) -> None:
        if step > 2:  # steady state: the first batches include pipeline start-up
            self.wait_s, self.step_s = self.wait_s + wait, self.step_s + compute
        self.window_wait, self.window_step, self.window_n = self.window_wait + wait, self.window_step + compute, \
            self.window_n + 1

    def metrics(self, per_worker_batch: int) -> dict:
        """The window's figures (then reset) and the steady-state data-wait fraction."""
        out = dict(data_wait_s=self.window_wait, step_s=self.window_step,
                   data_wait_frac=(self.wait_s / (self.wait_s + self.step_s)) if self.step_s else float("nan"),
                   window_data_wait_frac=self.window_wait / max(self.window_wait + self.window_step, 1e-9),
                   clips_per_s_per_worker=self.window_n * per_worker_batch / max(self.window_step + self.window_wait,
                                                                                  1e-9))
        self.window_wait = self.window_step = 0.0
        self.window_n = 0
        return out


def train_loop_per_worker(loop_cfg: dict) -> None:
    """Ray Train worker body (see module docstring)."""
    cfg: TrainConfig = loop_cfg["cfg"]
    paths = loop_cfg["paths"]
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    # force: Ray configured this worker's root logger; the project's format lets the driver keep these lines on its
    # console while Ray's own go to the run's _logs/ (pipeline/ray_utils.py: RayLogs)
    logging.basicConfig(level=logging.INFO, format=f"[rank {rank}] {LOG_FORMAT}", force=True)
    if not torch.cuda.is_available():
        torch.set_num_threads(max(1, int(cfg.cpus_per_worker)))
    device = ray.train.torch.get_device()
    seed_everything(cfg.seed)  # same initial weights on every rank (DDP also broadcasts rank 0's)
    engine = build_engine(cfg)
    opt_ae, opt_d, state, cursors, source = restore_or_init(cfg, paths, engine, device, rank)
    if rank == 0:
        log.info("%s; preset %s; device %s; world size %d", source, cfg.preset, device, world)
    encoder_digest = module_digest(engine.model.encoder) if cfg.stage == 2 else None

    ddp = ray.train.torch.prepare_model(engine, move_to_device=False,
                                        parallel_strategy_kwargs={"find_unused_parameters": True})
    autocast = torch.bfloat16 if (cfg.bf16 and device.type == "cuda") else None
    val = None
    if rank == 0 and cfg.val_every > 0:
        val = load_val_clips(loop_cfg["val_urls"], max_clips=cfg.val_clips, num_frames=loop_cfg["num_frames"],
                             decode=cfg.decode, storage_options=cfg.storage_options)[0]
    tb = TensorBoard(paths.run_dir, cfg.storage_options) if rank == 0 else None
    order = TrainOrder(cfg.seed, rank, world, cfg.per_worker_batch, cfg.data.clips_per_video,
                       cfg.data.shuffle_buffer_clips)
    cursor = order.resume_cursor(cursors, state.step)
    stream = RankStream(cfg, order, cursor, ray.get(loop_cfg["train_urls"]), loop_cfg["num_frames"], paths.index)
    seen = BatchesDigest(order.own_record(cursors).get("batches_digest", "") if state.step else "")
    batches = iter(stream)
    timer = StepTimer()
    try:
        while state.step < cfg.steps:
            t0 = time.perf_counter()
            batch = next(batches, None)
            if batch is None or batch.step != state.step:  # the stream never ends while any item decodes
                raise RuntimeError(f"training stream out of step at step {state.step}: "
                                   f"{'ended' if batch is None else f'batch of step {batch.step}'} (a bug)")
            if loop_cfg.get("fail_at_step") and rank == world - 1 and state.step == loop_cfg["fail_at_step"]:
                failure_drill(paths, state.step)
            t1 = time.perf_counter()
            clips = np.stack(batch.clips)
            seen.add(clips)
            x = to_model_input(clips, device)
            metrics = train_step(ddp, opt_ae, opt_d, x, state, cfg.optim, autocast)  # floats: synchronises the device
            timer.add(state.step, t1 - t0, time.perf_counter() - t1)
            after_step(cfg, paths, engine, opt_ae, opt_d, state, metrics, timer, val, device, autocast, rank, world, tb,
                       (order, batch.after, seen.hex))
    finally:
        batches.close()
        stream.close()
    finish(cfg, paths, engine, state, encoder_digest, rank, tb)


def after_step(cfg, paths, engine, opt_ae, opt_d, state, metrics, timer, val, device, autocast, rank, world, tb,
               data):
    """Validate, log and checkpoint on their cadences after step `state.step` (`data`: the rank's `TrainOrder`, its
    cursor after the step and its batches' digest, saved with the checkpoint)."""
    step = state.step
    do_ckpt = step % cfg.checkpoint_every == 0 or step == cfg.steps
    do_val = val is not None and (step % cfg.val_every == 0 or step == cfg.steps)
    do_log = step % cfg.log_every == 0 or do_ckpt
    if rank == 0 and do_val:
        metrics.update(validate(engine, val, device, cfg, paths, step, autocast))
    if do_log:
        metrics.update(timer.metrics(cfg.per_worker_batch), clips_seen=state.clips_seen * world)
        if tb is not None:
            tb.add(metrics, step)
        if rank == 0:
            log.info("step %d/%d: loss %.4g (rec %.4g)%s, %.2f clips/s per worker, data wait %.0f%%", step, cfg.steps,
                     metrics.get("total_loss", float("nan")), metrics.get("rec_loss", float("nan")),
                     "".join(f", {k} {metrics[k]:.4g}" for k in ("val/psnr", "val/ssim") if k in metrics),
                     metrics["clips_per_s_per_worker"], 100 * metrics["window_data_wait_frac"])
    if do_ckpt:
        report_checkpoint(engine, opt_ae, opt_d, state, cfg, metrics, rank, tb, data)
    elif do_log:
        ray.train.report(scalars(metrics))


def finish(cfg, paths, engine, state, encoder_digest, rank, tb) -> None:
    """End of the stage: the frozen-encoder check (stage 2), the export (rank 0), TensorBoard closed."""
    if encoder_digest is not None and module_digest(engine.model.encoder) != encoder_digest:
        raise RuntimeError("stage 2 changed the frozen encoder's weights: this is a bug in the freezing code")
    if rank == 0 and cfg.export:
        url = export_official(engine, join(paths.run_dir, "export", export_name(cfg, state.step)), state.step,
                              cfg.storage_options, extra={"preset": cfg.preset, "stage": cfg.stage})
        log.info("exported official-layout weights to %s", url)
    if tb is not None:
        tb.close()


def failure_drill(paths, step: int) -> None:
    """Kill this worker process once per run, as when a node is lost, to exercise FailureConfig (tests only).

    A marker in the run dir makes the drill fire once (a restart that resumes before the drill step must not die
    again, or the run would exhaust `max_failures`). Before dying the worker waits a few controller health-check
    periods so that the checkpoint reported at the previous step is registered: otherwise, on a loaded machine, the
    controller can see the death before it has polled that report and restart from scratch.
    """
    marker = join(paths.run_dir, "_drills", f"fail_at_step_{step:08d}")
    if exists(marker, paths.storage_options):
        return
    write_bytes(marker, b"fired", paths.storage_options)
    time.sleep(3 * float(os.environ.get("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "2.0")) + 2.0)
    log.error("fail_at_step=%d: killing this worker to exercise FailureConfig recovery", step)
    os._exit(17)


def scalars(metrics: dict) -> dict:
    return {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not math.isnan(float(v))}


def report_checkpoint(engine, opt_ae, opt_d, state, cfg, metrics, rank, tb, data) -> None:
    """All ranks report one checkpoint dir: rank 0 the training state, every rank its RNG state and a record of its
    data cursor, the digest of the batches it trained on, and its LeCam EMAs (merged by Ray)."""
    with tempfile.TemporaryDirectory() as d:
        if rank == 0:
            torch.save(training_state(engine, opt_ae, opt_d, state, cfg.preset, cfg.stage), os.path.join(d, STATE_FILE))
            if tb is not None:
                tb.flush()
        torch.save(rng_state(), os.path.join(d, f"rng_rank{rank}.pt"))
        order, cursor, seen = data
        with open(os.path.join(d, f"{DATA_PREFIX}{rank}.json"), "w") as f:
            json.dump({"rank": rank, "order": order.key(), "cursor": cursor.to_dict(), "batches_digest": seen,
                       "loss_extra": engine.loss.extra_state()}, f)
        ray.train.report(scalars(metrics), checkpoint=ray.train.Checkpoint.from_directory(d),
                         checkpoint_dir_name=f"{CKPT_PREFIX}{state.step:08d}")


def validate(engine, val_clips, device, cfg, paths, step, autocast) -> dict:
    """PSNR / SSIM / LPIPS on the held-out clips (rank 0) and preview files; returns `val/*` metrics."""
    if len(val_clips) == 0:
        return {}
    res, kept = evaluate_clips(engine.model, val_clips, device, lpips_module=engine.loss.perceptual_loss,
                               autocast_dtype=autocast, keep=cfg.preview_clips)
    try:
        write_previews(kept, join(paths.run_dir, "previews", f"step_{step:08d}"), cfg.storage_options, cfg.decode.fps)
    except Exception as e:  # previews are a convenience; never stop training for them
        log.warning("could not write previews at step %d: %s", step, e)
    return {f"val/{k}": v for k, v in res.items()}


class TensorBoard:
    """Rank-0 TensorBoard events (tensorboardX): written locally, mirrored to `<run>/tensorboard` on object storage."""

    def __init__(self, run_url: str, storage_options: dict | None):
        self.remote = is_remote(run_url)
        self.run_url, self.storage_options = run_url, storage_options
        self.local = tempfile.mkdtemp(prefix="vt-tb-") if self.remote else join(run_url, "tensorboard")
        self.writer = SummaryWriter(self.local)

    def add(self, metrics: dict, step: int) -> None:
        for k, v in scalars(metrics).items():
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
