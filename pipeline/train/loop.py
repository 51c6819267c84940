"""The Ray Train worker of both training stages: `train_loop_per_worker` builds one `Trainer` and runs it.

A `Trainer` (as torchtitan's `Trainer`) holds one rank's whole training: the stage resolved on the driver
(`pipeline.train.setup.TrainRun`, the only thing the worker receives), the model (`vidtok`), the loss and the
pure-torch step (`vidtok.train_step`) as a `TrainEngine` wrapped in DDP (`ray.train.torch.prepare_model`,
`find_unused_parameters=True` as the official run), both optimisers, the `TrainState`, the data-wait `StepTimer`, the
validation clips and TensorBoard (rank 0), and the rank's batches in the fixed training order
(`pipeline.train.stream.RankStream`, `pipeline.train.order`) from its checkpoint's cursor; bf16 autocast on GPU.

`restore_or_init` resumes from the checkpoint Ray hands the worker (or initialises: stage 2 from `init_from`). Every
`checkpoint_every` steps all ranks report a checkpoint (rank 0 the state, each rank its RNG and its data cursor, so a
restart at step k trains on the batches an undisturbed run would have). Rank 0 validates every `val_every` steps
(PSNR / SSIM / LPIPS, previews as mp4 + PNG), writes TensorBoard events under `<run>/tensorboard` (`monitor.py`), and
at the end exports official-layout weights to `TrainRun.export`. Stage 2 freezes encoder + regularizer and checks at
the end that the encoder is bit-identical to its start.
"""

from __future__ import annotations

import json
import logging
import os
import random
import tempfile
import time

import numpy as np
import ray
import ray.train
import ray.train.torch
import torch

from pipeline.cli import LOG_FORMAT
from pipeline.evaluate.metrics import evaluate_clips, write_previews
from pipeline.storage import exists, join, read_text, write_bytes
from pipeline.train.checkpoint import CKPT_PREFIX, STATE_FILE, export_official, init_stage2
from pipeline.train.config import TrainConfig
from pipeline.train.data import load_val_clips
from pipeline.train.monitor import BatchesDigest, StepTimer, TensorBoard, scalars
from pipeline.train.order import Batch, Cursor, TrainOrder
from pipeline.train.setup import TrainRun
from pipeline.train.stream import GuardedBatches, RankStream
from vidtok import VidTok
from vidtok.losses import VidTokLoss
from vidtok.train_state import module_digest, restore_training_state, state_digest, training_state
from vidtok.train_step import TrainEngine, TrainState, make_optimizers, rng_state, set_rng_state, train_step
from vidtok.video import to_model_input

log = logging.getLogger(__name__)

DATA_PREFIX = "data_rank"  # data_rank<r>.json in a checkpoint: rank r's order key and cursor after the step
SNAPSHOT_FILE = "checkpoint_manager_snapshot.json"  # Ray Train's controller: the checkpoints it has registered


def train_loop_per_worker(config: dict) -> None:
    """Ray Train worker body: `config` is `{"run": TrainRun}` (Ray Train's `train_loop_config` is a dict)."""
    Trainer(config["run"]).train()


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def build_engine(cfg: TrainConfig):
    """Model + loss + TrainEngine for a stage (stage 2: encoder and regularizer frozen)."""
    return TrainEngine(VidTok.from_config(cfg.preset), VidTokLoss(cfg.loss), freeze_encoder=(cfg.stage == 2))


class Trainer:
    """One rank of one stage: built from a `TrainRun`, `train()` runs the remaining steps and finishes."""

    def __init__(self, run: TrainRun):
        self.run, self.cfg = run, run.cfg
        cfg = self.cfg
        ctx = ray.train.get_context()
        self.rank, self.world = ctx.get_world_rank(), ctx.get_world_size()
        # force: Ray configured this worker's root logger; the project's format lets the driver keep these lines on
        # its console while Ray's own go to the run's _logs/ (pipeline/ray_utils.py: RayLogs)
        logging.basicConfig(level=logging.INFO, format=f"[rank {self.rank}] {LOG_FORMAT}", force=True)
        if not torch.cuda.is_available():
            torch.set_num_threads(max(1, int(cfg.cpus_per_worker)))
        self.device = ray.train.torch.get_device()
        seed_everything(cfg.seed)  # same initial weights on every rank (DDP also broadcasts rank 0's)
        self.engine = build_engine(cfg)
        self.state = TrainState()
        records, source = self.restore_or_init()  # also builds the optimisers
        if self.rank == 0:
            log.info("%s; preset %s; device %s; world size %d", source, cfg.preset, self.device, self.world)
        self.encoder_digest = module_digest(self.engine.model.encoder) if cfg.stage == 2 else None
        self.ddp = ray.train.torch.prepare_model(self.engine, move_to_device=False,
                                                 parallel_strategy_kwargs={"find_unused_parameters": True})
        self.autocast = torch.bfloat16 if (cfg.bf16 and self.device.type == "cuda") else None
        self.val = None  # rank 0: validation clips (N, T, H, W, 3) uint8; None: no validation on this rank
        if self.rank == 0 and cfg.val_every > 0:
            self.val = load_val_clips(run.val_urls, max_clips=cfg.val_clips, num_frames=run.num_frames,
                                      decode=run.decode, storage_options=run.storage_options)[0]
        self.tb = TensorBoard(run.paths.run_dir, run.storage_options) if self.rank == 0 else None
        self.order = TrainOrder(cfg.seed, self.rank, self.world, cfg.per_worker_batch, cfg.data.clips_per_video,
                                cfg.data.shuffle_buffer_clips)
        self.stream = RankStream(run, self.order, self.order.resume_cursor(records, self.state.step),
                                 ray.get(run.train_urls))
        self.seen = BatchesDigest(self.order.own_record(records).get("batches_digest", "") if self.state.step else "")
        self.timer = StepTimer()

    def restore_or_init(self) -> tuple[list[dict], str]:
        """Build the optimisers and load the latest Ray checkpoint if there is one (exact resume: rank 0's state,
        then this rank's RNG and LeCam EMAs), else start fresh (stage 2: weights from `paths.init_from`).
        Returns `(every rank's data record of the checkpoint, what happened)`: the records give the data cursor."""
        cfg, run, engine, rank = self.cfg, self.run, self.engine, self.rank
        checkpoint = ray.train.get_checkpoint()
        if checkpoint is None:
            source = "fresh"
            if cfg.stage == 2:
                source = "stage 2 from " + init_stage2(engine, run.paths.init_from, run.storage_options)
            engine.to(self.device)
            self.opt_ae, self.opt_d = make_optimizers(engine, cfg.optim)
            seed_everything(cfg.seed + rank)  # per-rank streams from here (KL sampling, dropout)
            return [], source
        with checkpoint.as_directory() as d:
            payload = torch.load(os.path.join(d, STATE_FILE), map_location="cpu", weights_only=False)
            rng_path = os.path.join(d, f"rng_rank{rank}.pt")
            rng = torch.load(rng_path, map_location="cpu", weights_only=False) if os.path.exists(rng_path) else None
            records = []
            for name in sorted(n for n in os.listdir(d) if n.startswith(DATA_PREFIX)):
                with open(os.path.join(d, name)) as f:
                    records.append(json.load(f))
        engine.to(self.device)
        self.opt_ae, self.opt_d = make_optimizers(engine, cfg.optim)
        restore_training_state(payload, engine, self.opt_ae, self.opt_d, self.state)
        own = [c for c in records if int(c.get("rank", -1)) == rank and "loss_extra" in c]
        if own:  # the LeCam EMAs follow each rank's own discriminator logits: rank 0's (in state.pt) are not this rank's
            engine.loss.load_extra_state(own[0]["loss_extra"])
        if rng is not None:
            set_rng_state(rng)
        else:  # a different world size than the checkpoint: a fresh but step-dependent stream per rank
            seed_everything(cfg.seed + 1000 * rank + self.state.step)
        step = self.state.step
        if rank == 0:  # an audit record of every restart: which step, and a digest of the restored state
            rec = {"resumed_at_step": step, "state_digest": state_digest(engine, self.opt_ae, self.opt_d),
                   "time": time.time()}
            write_bytes(join(run.paths.run_dir, "resumes", f"step_{step:08d}_{int(time.time() * 1000)}.json"),
                        json.dumps(rec).encode(), run.storage_options)
        return records, f"resumed at step {step}"

    def train(self) -> None:
        """The remaining steps, one batch each, then `finish`."""
        batches = GuardedBatches(self.stream, self.cfg.data.stall_timeout_s)  # a stalled stream fails the worker
        try:
            while self.state.step < self.cfg.steps:
                t0 = time.perf_counter()
                batch = next(batches, None)
                if batch is None or batch.step != self.state.step:  # the stream never ends while any item decodes
                    raise RuntimeError(f"training stream out of step at step {self.state.step}: "
                                       f"{'ended' if batch is None else f'batch of step {batch.step}'} (a bug)")
                self.step(batch, t0)
        finally:
            batches.close()  # the stream too, from the thread that reads it
        self.finish()

    def step(self, batch: Batch, t0: float) -> None:
        """One optimisation step on `batch` (asked for at `time.perf_counter()` `t0`: the wait is data wait), then
        `after_step`."""
        if self.run.fail_at_step and self.rank == self.world - 1 and self.state.step == self.run.fail_at_step:
            self.failure_drill()
        t1 = time.perf_counter()
        clips = np.stack(batch.clips)
        self.seen.add(clips)
        x = to_model_input(clips, self.device)
        # floats: synchronises the device
        metrics = train_step(self.ddp, self.opt_ae, self.opt_d, x, self.state, self.cfg.optim, self.autocast)
        self.timer.add(self.state.step, t1 - t0, time.perf_counter() - t1)
        self.after_step(metrics, batch.after)

    def after_step(self, metrics: dict, cursor: Cursor) -> None:
        """Validate, log and checkpoint on their cadences after step `state.step` (`cursor`: the rank's data cursor
        after the step, saved with the checkpoint)."""
        cfg, step = self.cfg, self.state.step
        do_ckpt = step % cfg.checkpoint_every == 0 or step == cfg.steps
        do_val = self.val is not None and (step % cfg.val_every == 0 or step == cfg.steps)
        do_log = step % cfg.log_every == 0 or do_ckpt
        if self.rank == 0 and do_val:
            metrics.update(self.validate())
        if do_log:
            metrics.update(self.timer.metrics(cfg.per_worker_batch), clips_seen=self.state.clips_seen * self.world)
            if self.tb is not None:
                self.tb.add(metrics, step)
            if self.rank == 0:
                log.info("step %d/%d: loss %.4g (rec %.4g)%s, %.2f clips/s per worker, data wait %.0f%%", step,
                         cfg.steps, metrics.get("total_loss", float("nan")), metrics.get("rec_loss", float("nan")),
                         "".join(f", {k} {metrics[k]:.4g}" for k in ("val/psnr", "val/ssim") if k in metrics),
                         metrics["clips_per_s_per_worker"], 100 * metrics["window_data_wait_frac"])
        if do_ckpt:
            self.report_checkpoint(metrics, cursor)
        elif do_log:
            ray.train.report(scalars(metrics))

    def report_checkpoint(self, metrics: dict, cursor: Cursor) -> None:
        """All ranks report one checkpoint dir: rank 0 the training state, every rank its RNG state and a record of
        its data cursor, the digest of the batches it trained on, and its LeCam EMAs (merged by Ray)."""
        engine, rank = self.engine, self.rank
        with tempfile.TemporaryDirectory() as d:
            if rank == 0:
                torch.save(training_state(engine, self.opt_ae, self.opt_d, self.state, self.cfg.preset, self.cfg.stage),
                           os.path.join(d, STATE_FILE))
                if self.tb is not None:
                    self.tb.flush()
            torch.save(rng_state(), os.path.join(d, f"rng_rank{rank}.pt"))
            with open(os.path.join(d, f"{DATA_PREFIX}{rank}.json"), "w") as f:
                json.dump({"rank": rank, "order": self.order.key(), "cursor": cursor.to_dict(),
                           "batches_digest": self.seen.hex, "loss_extra": engine.loss.extra_state()}, f)
            ray.train.report(scalars(metrics), checkpoint=ray.train.Checkpoint.from_directory(d),
                             checkpoint_dir_name=f"{CKPT_PREFIX}{self.state.step:08d}")

    def validate(self) -> dict:
        """PSNR / SSIM / LPIPS on the held-out clips (rank 0) and preview files; returns `val/*` metrics."""
        if len(self.val) == 0:
            return {}
        run, step = self.run, self.state.step
        res, kept = evaluate_clips(self.engine.model, self.val, self.device,
                                   lpips_module=self.engine.loss.perceptual_loss, autocast_dtype=self.autocast,
                                   keep=self.cfg.preview_clips)
        try:
            write_previews(kept, join(run.paths.run_dir, "previews", f"step_{step:08d}"), run.storage_options,
                           run.decode.fps)
        except Exception as e:  # previews are a convenience; never stop training for them
            log.warning("could not write previews at step %d: %s", step, e)
        return {f"val/{k}": v for k, v in res.items()}

    def finish(self) -> None:
        """End of the stage: the frozen-encoder check (stage 2), the export (rank 0), TensorBoard closed."""
        if self.encoder_digest is not None and module_digest(self.engine.model.encoder) != self.encoder_digest:
            raise RuntimeError("stage 2 changed the frozen encoder's weights: this is a bug in the freezing code")
        if self.rank == 0 and self.run.export:
            if self.state.step != self.cfg.steps:  # a checkpoint beyond `steps` was resumed: no step trained
                log.warning("exporting the state of step %d as %s (steps=%d)", self.state.step, self.run.export,
                            self.cfg.steps)
            url = export_official(self.engine, self.run.export, self.state.step, self.run.storage_options,
                                  extra={"preset": self.cfg.preset, "stage": self.cfg.stage})
            log.info("exported official-layout weights to %s", url)
        if self.tb is not None:
            self.tb.close()

    def failure_drill(self) -> None:
        """Kill this worker process once per run, as when a node is lost, to exercise FailureConfig (tests only).

        A marker in the run dir makes the drill fire once (a restart that resumes before the drill step must not die
        again, or the run would exhaust `max_failures`). Before dying the worker waits until the controller has
        registered the checkpoint reported last (its snapshot in the run dir names it): otherwise, on a loaded
        machine, the controller can see the death before it has polled that report and restart from an older one.
        """
        step, opts, run_dir = self.state.step, self.run.storage_options, self.run.paths.run_dir
        marker = join(run_dir, "_drills", f"fail_at_step_{step:08d}")
        if exists(marker, opts):
            return
        write_bytes(marker, b"fired", opts)
        last = step - step % self.cfg.checkpoint_every
        deadline = time.monotonic() + 120
        while last and f"{CKPT_PREFIX}{last:08d}" not in (read_text(join(run_dir, SNAPSHOT_FILE), opts) or ""):
            if time.monotonic() > deadline:
                log.warning("fail_at_step=%d: checkpoint %d not registered after 120 s; failing anyway", step, last)
                break
            time.sleep(0.2)
        log.error("fail_at_step=%d: killing this worker to exercise FailureConfig recovery", step)
        os._exit(17)
