"""One VidTok training step in pure PyTorch (spec §11–§12): generator update, then discriminator update, each with
its own Adam and gradient-norm clipping at 20, under optional bf16 autocast. Runs on a laptop without Ray; the Ray
Train loop (`pipeline/train/loop.py`) wraps the same `TrainEngine` in DistributedDataParallel and calls the same step.

Why one `TrainEngine` module: DDP only synchronises what runs through a wrapped module's `forward`. Putting the
model and the loss (logvar, discriminator) behind one `forward(phase=...)` lets a single DDP wrapper average every
trainable gradient — autoencoder, logvar and discriminator — with `find_unused_parameters=True` (as the official
Lightning run), because each phase touches only part of the parameters.

Counters (spec §11.6): `state.step` counts batches. The official Lightning `global_step` advanced by 2 per batch
(two optimisers), so the loss sees `lightning_global_step(step, phase)` = `2·step` (generator) / `2·step + 1`
(discriminator, after the AE optimiser stepped), and the FSQ annealing inside the model gets `2·step` (it divides by 2).

Stage 2 (`freeze_encoder=True`): encoder and regularizer get `requires_grad=False` and stay in eval mode even when
the engine is put in train mode; they are left out of the optimiser, so their weights stay bit-identical.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass

import torch
from torch import nn

from .losses.vidtok_loss import VidTokLoss

log = logging.getLogger(__name__)


def lightning_global_step(batch_step: int, phase: str) -> int:
    """The official Lightning `global_step` seen by a loss call: 2 per batch; the discriminator phase is one later."""
    return 2 * batch_step + (1 if phase == "discriminator" else 0)


class TrainEngine(nn.Module):
    """The model and its loss behind one `forward` so one DDP wrapper covers both optimiser groups.

    forward(x, batch_step, phase="generator") -> (loss, recon, logs)
    forward(x, batch_step, phase="discriminator", recon=recon) -> (d_loss, logs)
    with `x, recon: (B, 3, T, H, W)` float in [-1, 1].
    """

    def __init__(self, model: nn.Module, loss: VidTokLoss, freeze_encoder: bool = False):
        super().__init__()
        self.model = model
        self.loss = loss
        self.freeze_encoder = freeze_encoder
        if freeze_encoder:
            for mod in self.frozen_modules():
                for p in mod.parameters():
                    p.requires_grad_(False)
        self.train()

    def frozen_modules(self) -> list[nn.Module]:
        if not self.freeze_encoder:
            return []
        return [m for m in (self.model.encoder, getattr(self.model, "regularizer", None)) if m is not None]

    def train(self, mode: bool = True):
        super().train(mode)
        for mod in self.frozen_modules():
            mod.eval()  # stage 2: norms/stochastic layers of the frozen part stay in inference behaviour
        return self

    def ae_parameters(self) -> list[nn.Parameter]:
        """Autoencoder optimiser group: trainable model parameters + the learnable logvar (spec §12)."""
        params = [p for p in self.model.parameters() if p.requires_grad]
        if self.loss.logvar.requires_grad:
            params.append(self.loss.logvar)
        return params

    def disc_parameters(self) -> list[nn.Parameter]:
        return list(self.loss.discriminator.parameters())

    def forward(self, x: torch.Tensor, batch_step: int, phase: str = "generator", recon: torch.Tensor | None = None):
        if phase == "generator":
            _, recon, reg_log = self.model.training_forward(x, lightning_global_step(batch_step, "generator"))
            loss, logs = self.loss.generator_loss(
                x, recon, reg_log, lightning_global_step(batch_step, "generator"), last_layer=self.model.get_last_layer()
            )
            return loss, recon, logs
        if phase == "discriminator":
            if recon is None:
                raise ValueError("phase='discriminator' needs recon=(B, 3, T, H, W) from the generator phase")
            return self.loss.discriminator_loss(x, recon, lightning_global_step(batch_step, "discriminator"))
        raise ValueError(f"phase={phase!r}: expected 'generator' or 'discriminator'")


@dataclass
class OptimConfig:
    """Adam with PyTorch defaults for both optimisers, constant lr 1e-5, clip norm 20 per group (spec §11.6, §12)."""

    lr: float = 1e-5
    beta1: float = 0.9
    beta2: float = 0.999
    grad_clip: float = 20.0  # 0 disables clipping
    lr_g_factor: float = 1.0


def make_optimizers(engine: TrainEngine, cfg: OptimConfig) -> tuple[torch.optim.Optimizer, torch.optim.Optimizer]:
    """`(opt_ae, opt_disc)`: Adam over `engine.ae_parameters()` and over the discriminator."""
    betas = (cfg.beta1, cfg.beta2)
    opt_ae = torch.optim.Adam(engine.ae_parameters(), lr=cfg.lr * cfg.lr_g_factor, betas=betas)
    opt_d = torch.optim.Adam(engine.disc_parameters(), lr=cfg.lr, betas=betas)
    return opt_ae, opt_d


@dataclass
class TrainState:
    """Mutable counters carried in checkpoints. `step`: batches done (one generator + one discriminator update each)."""

    step: int = 0
    clips_seen: int = 0


def autocast_context(device: torch.device, dtype: torch.dtype | None):
    """bf16 autocast on CUDA when asked; a no-op elsewhere (CPU bf16 autocast is slow and not the official recipe)."""
    if dtype is None or device.type != "cuda":
        return contextlib.nullcontext()
    return torch.autocast(device_type="cuda", dtype=dtype)


def train_step(
    engine: nn.Module,
    opt_ae: torch.optim.Optimizer,
    opt_d: torch.optim.Optimizer,
    x: torch.Tensor,
    state: TrainState,
    cfg: OptimConfig,
    autocast_dtype: torch.dtype | None = None,
) -> dict[str, float]:
    """One batch: generator update then discriminator update; advances `state`. Returns float metrics.

    engine: a `TrainEngine`, or a DDP wrapper around one (gradients are then averaged across ranks).
    x: `(B, 3, T, H, W)` float in [-1, 1] on the engine's device.
    """
    inner: TrainEngine = engine.module if hasattr(engine, "module") else engine
    device = x.device
    ae_params, d_params = inner.ae_parameters(), inner.disc_parameters()

    # Generator (optimizer_idx 0).
    with autocast_context(device, autocast_dtype):
        loss, recon, g_logs = engine(x, state.step, "generator")
    opt_ae.zero_grad(set_to_none=True)
    loss.backward()
    ae_norm = _clip(ae_params, cfg.grad_clip)
    opt_ae.step()

    # Discriminator (optimizer_idx 1). Its parameters also received gradients from g_loss above: drop them.
    with autocast_context(device, autocast_dtype):
        d_loss, d_logs = engine(x, state.step, "discriminator", recon=recon.detach())
    opt_d.zero_grad(set_to_none=True)
    d_loss.backward()
    d_norm = _clip(d_params, cfg.grad_clip)
    opt_d.step()
    opt_ae.zero_grad(set_to_none=True)  # leave no stale gradients behind (frees memory between steps)

    state.step += 1
    state.clips_seen += x.shape[0]
    metrics = {k: float(v) for k, v in {**g_logs, **d_logs}.items()}
    metrics.update(grad_norm_ae=float(ae_norm), grad_norm_disc=float(d_norm), step=state.step,
                   global_step=2 * state.step)
    return metrics


def _clip(params: list[nn.Parameter], max_norm: float) -> torch.Tensor:
    params = [p for p in params if p.grad is not None]
    if not params:
        return torch.zeros(())
    if max_norm and max_norm > 0:
        return torch.nn.utils.clip_grad_norm_(params, max_norm)
    return torch.norm(torch.stack([p.grad.detach().float().norm() for p in params]))


def rng_state() -> dict:
    """Every RNG a step may draw from (torch CPU/CUDA, numpy, Python `random`) for exact resume."""
    import random

    import numpy as np

    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    import random

    import numpy as np

    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
