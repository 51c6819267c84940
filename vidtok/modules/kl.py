"""KL regularizer: diagonal Gaussian posterior (spec ARCHITECTURE.md §7.2, quirk 7).

The encoder emits `2*z_channels` channels: first half mean, second half log-variance (clamped to [-30, 20]).
The official `DiagonalGaussianRegularizer` samples by default even in eval mode; here the caller chooses
(`VidTok.encode(x, sample=False)` is deterministic, `sample=True` reproduces the official path). The noise is
`torch.randn(mean.shape)` drawn on the **CPU default generator** and then moved to the device, so a
`torch.manual_seed` gives the same latents on any device. No parameters, no state-dict keys.
"""

from __future__ import annotations

import torch
from torch import nn


class DiagonalGaussianRegularizer(nn.Module):
    """z (B, 2C, t, h, w) -> latents (B, C, t, h, w): posterior mean, or a sample when `sample=True`."""

    def forward(self, z: torch.Tensor, sample: bool = False, compute_kl: bool = False
                ) -> tuple[torch.Tensor, dict]:
        if z.dim() != 5 or z.shape[1] % 2:
            raise ValueError(f"KL regularizer expects z of shape (B, 2*z_channels, t, h, w), found {tuple(z.shape)}")
        mean, logvar = torch.chunk(z, 2, dim=1)
        logvar = torch.clamp(logvar, -30.0, 20.0)
        log: dict = {}
        if sample:
            std = torch.exp(0.5 * logvar)
            # float32 noise from the CPU default generator, then moved (not cast), like the official code (§7.2).
            noise = torch.randn(mean.shape).to(device=z.device)
            out = mean + std * noise
        else:
            out = mean
        if compute_kl:
            var = torch.exp(logvar)
            kl = 0.5 * torch.sum(mean.pow(2) + var - 1.0 - logvar, dim=[1, 2, 3])
            log["kl_loss"] = torch.sum(kl) / kl.shape[0]  # summed over everything, divided by batch size (§7.2)
        return out, log
