"""The VidTok training loss (`GeneralLPIPSWithDiscriminator`, spec §11): L1 + LPIPS reconstruction under a learnable
log-variance, a PatchGAN with hinge loss and LeCam regularisation, a cross-entropy generator loss with the adaptive
weight of taming-transformers, and the regulariser term (FSQ `aux_loss` or KL `kl_loss`).

Step counting (spec §11.6): the official run uses Lightning manual optimisation with two optimisers, so its
`global_step` advances by 2 per batch. Every `global_step` argument here is that Lightning counter, so the published
`disc_start: 20001` still means "GAN on after ~10 k batches". `vidtok.train_step.lightning_global_step` maps a batch
index to it: the generator step of batch b sees `2b`, the discriminator step (after the AE optimiser stepped) `2b+1`.

Submodule names (`logvar`, `perceptual_loss`, `discriminator`) are the official ones, so `loss.*` keys of an official
Lightning checkpoint load with `load_state_dict`.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from .discriminator import DISCRIMINATORS
from .lecam import LeCamEMA
from .lpips import build_lpips

log = logging.getLogger(__name__)


@dataclass
class LossConfig:
    """Loss hyper-parameters; defaults are the released configs' values (spec §11.1).

    `perceptual_weight`, `disc_start` and `disc_ndf` default to `None`, read as the released value (`RELEASED`), so a
    training schedule can fill what the user left unset while an explicit value, even the released one, always wins.
    """

    perceptual_weight: Optional[float] = None  # LPIPS weight; null: 1.0 (released)
    disc_start: Optional[int] = None  # Lightning global steps (2 per batch) before the GAN term; null: 20001 (~10 k batches)
    disc_weight: float = 0.2
    disc_factor: float = 1.0
    disc_type: str = "2d"  # "2d" (per-frame PatchGAN, released) | "3d"
    disc_loss: str = "hinge"  # "hinge" | "vanilla"
    disc_num_layers: int = 3
    disc_ndf: Optional[int] = None  # discriminator width; null: 64 (official); CI presets shrink it
    disc_in_channels: int = 3
    learn_logvar: bool = True
    logvar_init: float = 0.0
    gen_loss_cross_entropy: bool = True
    lecam_loss_weight: float = 0.005
    lecam_decay: float = 0.999
    regularization_weights: dict[str, float] = field(default_factory=lambda: {"aux_loss": 1.0, "kl_loss": 1e-6})
    lpips_backbone_path: str | None = None  # VGG16 file; default: torch hub cache (see vidtok/losses/lpips.py)
    lpips_random_backbone: bool = False  # smoke tests only: LPIPS values are meaningless

    def __post_init__(self):
        if self.disc_type not in DISCRIMINATORS:
            raise ValueError(f"loss.disc_type={self.disc_type!r}: choose one of {sorted(DISCRIMINATORS)}")
        if self.disc_loss not in ("hinge", "vanilla"):
            raise ValueError(f"loss.disc_loss={self.disc_loss!r}: choose 'hinge' or 'vanilla'")
        if (self.perceptual_weight is not None and self.perceptual_weight < 0) or self.disc_weight < 0:
            raise ValueError("loss.perceptual_weight and loss.disc_weight must be >= 0")

    def released(self) -> "LossConfig":
        """A copy with every `None` replaced by the released value."""
        return dataclasses.replace(self, **{k: v for k, v in RELEASED.items() if getattr(self, k) is None})


RELEASED = {"perceptual_weight": 1.0, "disc_start": 20001, "disc_ndf": 64}  # spec §11.1


def to_frames(video: torch.Tensor) -> torch.Tensor:
    """`(B, C, T, H, W)` -> per-frame images `(B·T, C, H, W)` (batch-major, then time)."""
    b, c, t, h, w = video.shape
    return video.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)


def adopt_weight(weight: float, global_step: int, threshold: int) -> float:
    """`weight` once `global_step >= threshold`, else 0 (taming's `adopt_weight`)."""
    return weight if global_step >= threshold else 0.0


class VidTokLoss(nn.Module):
    """Generator and discriminator objectives. Inputs/recons: `(B, 3, T, H, W)` float, nominally in [-1, 1]."""

    def __init__(self, cfg: LossConfig | None = None):
        super().__init__()
        self.cfg = cfg = (cfg or LossConfig()).released()
        self.logvar = nn.Parameter(torch.full((), float(cfg.logvar_init)), requires_grad=cfg.learn_logvar)
        # Built only when used: 14.7 M frozen parameters and a VGG16 file are heavy for CI presets.
        self.perceptual_loss = (
            build_lpips(cfg.lpips_backbone_path, cfg.lpips_random_backbone) if cfg.perceptual_weight > 0 else None
        )
        self.discriminator = DISCRIMINATORS[cfg.disc_type](
            input_nc=cfg.disc_in_channels, ndf=cfg.disc_ndf, n_layers=cfg.disc_num_layers
        )
        self.lecam = LeCamEMA(decay=cfg.lecam_decay) if cfg.lecam_loss_weight > 0 else None

    # ---------------------------------------------------------------------------------------------------- pieces
    def _disc_input(self, video: torch.Tensor) -> torch.Tensor:
        # The 2-D discriminator judges frames independently; the 3-D one the whole clip (spec §11.3).
        return to_frames(video).contiguous() if self.cfg.disc_type == "2d" else video.contiguous()

    def reconstruction_loss(self, inputs: torch.Tensor, recon: torch.Tensor) -> torch.Tensor:
        """Per-pixel `|x − x̂| + w·LPIPS` over frames: `(B·T, 3, H, W)` (LPIPS broadcast over pixels)."""
        x, xr = to_frames(inputs).contiguous(), to_frames(recon).contiguous()
        rec = (x - xr).abs()
        if self.perceptual_loss is not None:
            rec = rec + self.cfg.perceptual_weight * self.perceptual_loss(x, xr)
        return rec

    def nll_loss(self, rec: torch.Tensor) -> torch.Tensor:
        """`Σ(rec / e^logvar + logvar) / (B·T)`: summed over C, H, W, averaged over frames (spec §11.2 steps 3–4)."""
        nll = rec / torch.exp(self.logvar) + self.logvar
        return torch.sum(nll) / nll.shape[0]

    def generator_adversarial_loss(self, logits_fake: torch.Tensor) -> torch.Tensor:
        if self.cfg.gen_loss_cross_entropy:
            # Patch logits are averaged per sample first, then BCE(mean, 1) = softplus(−mean) (spec §11.2 step 5).
            mean_logit = logits_fake.reshape(logits_fake.shape[0], -1).mean(dim=1)
            return F.softplus(-mean_logit).mean()
        return -torch.mean(logits_fake)

    def adaptive_weight(self, nll: torch.Tensor, g_loss: torch.Tensor, last_layer: torch.Tensor) -> torch.Tensor:
        """`‖∇_W nll‖ / (‖∇_W g‖ + 1e-4)`, clamped to [0, 1e4], detached, times `disc_weight` (W = decoder conv_out)."""
        nll_grads = torch.autograd.grad(nll, last_layer, retain_graph=True)[0]
        g_grads = torch.autograd.grad(g_loss, last_layer, retain_graph=True)[0]
        d_weight = torch.norm(nll_grads.float()) / (torch.norm(g_grads.float()) + 1e-4)
        return torch.clamp(d_weight, 0.0, 1e4).detach() * self.cfg.disc_weight

    def regularization_loss(self, reg_log: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """`Σ_k regularization_weights[k]·reg_log[k]` over the scalar terms the model reported (aux_loss / kl_loss)."""
        total, parts = 0.0, {}
        for k, w in self.cfg.regularization_weights.items():
            if k in reg_log and torch.is_tensor(reg_log[k]) and reg_log[k].numel() == 1:
                parts[k] = reg_log[k]
                total = total + w * reg_log[k]
        return total, parts

    # ------------------------------------------------------------------------------------------------ objectives
    def generator_loss(
        self,
        inputs: torch.Tensor,
        recon: torch.Tensor,
        reg_log: dict,
        global_step: int,
        last_layer: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Autoencoder objective (optimizer_idx 0, spec §11.2). Returns `(loss scalar, detached log tensors)`.

        `last_layer` is the decoder's `conv_out` weight; without it (or without autograd, e.g. under no_grad) the
        adaptive weight is 0, as in the official validation step.
        """
        rec = self.reconstruction_loss(inputs, recon)
        nll = self.nll_loss(rec)
        logits_fake = self.discriminator(self._disc_input(recon))
        g_loss = self.generator_adversarial_loss(logits_fake)
        disc_factor = adopt_weight(self.cfg.disc_factor, global_step, self.cfg.disc_start)
        d_weight = torch.zeros((), device=inputs.device)
        # The weight only matters once the GAN term is on; skipping it before disc_start saves two partial
        # backward passes per step and changes no parameter update (it is multiplied by disc_factor = 0).
        if disc_factor > 0 and last_layer is not None and torch.is_grad_enabled() and nll.requires_grad:
            try:
                d_weight = self.adaptive_weight(nll, g_loss, last_layer)
            except RuntimeError:  # graph does not reach the last layer: same fallback as the official code
                d_weight = torch.zeros((), device=inputs.device)
        reg_total, reg_parts = self.regularization_loss(reg_log)
        loss = nll + d_weight * disc_factor * g_loss + reg_total
        logs = {
            "total_loss": loss.detach(),
            "nll_loss": nll.detach(),
            "rec_loss": rec.detach().mean(),
            "logvar": self.logvar.detach(),
            "g_loss": g_loss.detach(),
            "d_weight": d_weight.detach(),
            "disc_factor": torch.tensor(float(disc_factor)),
            **{k: v.detach() for k, v in reg_parts.items()},
        }
        return loss, logs

    def discriminator_loss(
        self, inputs: torch.Tensor, recon: torch.Tensor, global_step: int
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Discriminator objective (optimizer_idx 1, spec §11.3): `disc_factor·(λ·LeCam + hinge)`; recon is detached."""
        logits_real = self.discriminator(self._disc_input(inputs.detach()))
        logits_fake = self.discriminator(self._disc_input(recon.detach()))
        disc_factor = adopt_weight(self.cfg.disc_factor, global_step, self.cfg.disc_start)
        if self.cfg.disc_loss == "hinge":
            adv = 0.5 * (torch.mean(F.relu(1.0 - logits_real)) + torch.mean(F.relu(1.0 + logits_fake)))
        else:
            adv = 0.5 * (torch.mean(F.softplus(-logits_real)) + torch.mean(F.softplus(logits_fake)))
        reg = torch.zeros((), device=inputs.device)
        if self.lecam is not None:
            # EMA first, then the penalty; updated even while disc_factor is still 0 (spec §11.3).
            self.lecam.update(logits_real.detach().float(), logits_fake.detach().float())
            reg = self.lecam.penalty(logits_real.float(), logits_fake.float())
        d_loss = disc_factor * (self.cfg.lecam_loss_weight * reg + adv)
        logs = {
            "disc_loss": d_loss.detach(),
            "disc_adv": adv.detach(),
            "lecam_loss": reg.detach(),
            "logits_real": logits_real.detach().float().mean(),
            "logits_fake": logits_fake.detach().float().mean(),
        }
        return d_loss, logs

    # ---------------------------------------------------------------------------------------------- state
    def extra_state(self) -> dict:
        """Non-tensor training state (LeCam EMAs) for checkpoints."""
        return {"lecam": self.lecam.state_dict() if self.lecam is not None else None}

    def load_extra_state(self, state: dict) -> None:
        if self.lecam is not None and state.get("lecam"):
            self.lecam.load_state_dict(state["lecam"])
