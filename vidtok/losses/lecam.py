"""LeCam regularisation for the discriminator (Tseng et al. 2021, "Regularizing GANs under limited data"), as the
official `LeCAM_EMA` does it (spec §11.3): EMAs of mean D(real) and mean D(fake) kept as Python floats (decay 0.999,
init 0), updated at every discriminator step *before* the penalty is computed, and even before `disc_start`.

The EMAs are training state: `state_dict()` / `load_state_dict()` let checkpoints carry them so a resumed run computes
the same penalty.
"""

from __future__ import annotations

import torch


class LeCamEMA:
    """`update(real_logits, fake_logits)` then `penalty(real_logits, fake_logits)`; logits of any shape."""

    def __init__(self, decay: float = 0.999, init: float = 0.0):
        self.decay = decay
        self.logits_real_ema = float(init)
        self.logits_fake_ema = float(init)

    def update(self, logits_real: torch.Tensor, logits_fake: torch.Tensor) -> None:
        d = self.decay
        self.logits_real_ema = self.logits_real_ema * d + torch.mean(logits_real).item() * (1 - d)
        self.logits_fake_ema = self.logits_fake_ema * d + torch.mean(logits_fake).item() * (1 - d)

    def penalty(self, logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
        """`mean(relu(D(x) − ema_fake)²) + mean(relu(ema_real − D(x̂))²)`, a scalar tensor."""
        return torch.mean(torch.relu(logits_real - self.logits_fake_ema).pow(2)) + torch.mean(
            torch.relu(self.logits_real_ema - logits_fake).pow(2)
        )

    def state_dict(self) -> dict[str, float]:
        return {"decay": self.decay, "logits_real_ema": self.logits_real_ema, "logits_fake_ema": self.logits_fake_ema}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.decay = float(state["decay"])
        self.logits_real_ema = float(state["logits_real_ema"])
        self.logits_fake_ema = float(state["logits_fake_ema"])
