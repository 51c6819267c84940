"""Finite Scalar Quantization (FSQ) as used by VidTok (spec ARCHITECTURE.md §7.1, quirk 6).

Paper: Mentzer et al. 2023, "Finite Scalar Quantization: VQ-VAE Made Simple". The official VidTok
`FSQRegularizer` follows lucidrains' `finite_scalar_quantization.py`; this file re-implements the behaviour the spec
describes:
* bound: `tanh(z + atanh(offset/half_l)) * half_l - offset`, half_l = (L-1)(1+1e-3)/2, offset 0.5 for even L;
* straight-through `round` (ties to even), codes `q / (L//2)` (asymmetric: L=8 gives -1 .. 0.75);
* channel 0 is the least-significant digit of the int32 index;
* everything in float32 with autocast disabled, codes cast back to the input dtype.
The entropy + commitment auxiliary loss allocates an N x codebook_size matrix, so it is computed only on request
(training), never at inference. No parameters and no persistent buffers (no state-dict keys, checkpoints.md §2).
"""

from __future__ import annotations

import math

import torch
from torch import nn


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """torch.round (half to even) with a straight-through gradient."""
    return x + (torch.round(x) - x).detach()


def _entropy(prob: torch.Tensor) -> torch.Tensor:
    return -(prob * torch.log(prob.clamp(min=1e-5))).sum(dim=-1)


class FSQRegularizer(nn.Module):
    """FSQ over the channel axis of `z: (B, D, t, h, w)`, D = len(levels)."""

    def __init__(self, levels: list[int], entropy_loss_weight: float = 0.1, entropy_loss_annealing_steps: int = 2000,
                 entropy_loss_annealing_factor: float = 3.0, commitment_loss_weight: float = 0.25,
                 diversity_gamma: float = 1.0, inv_temperature: float = 100.0):
        super().__init__()
        self.levels = list(levels)
        self.dim = len(levels)
        self.codebook_size = math.prod(levels)
        self.register_buffer("_levels", torch.tensor(levels, dtype=torch.int32), persistent=False)
        basis = torch.cumprod(torch.tensor([1] + list(levels[:-1])), dim=0, dtype=torch.int32)
        self.register_buffer("_basis", basis, persistent=False)
        self.entropy_loss_weight = entropy_loss_weight
        self.entropy_loss_annealing_steps = entropy_loss_annealing_steps
        self.entropy_loss_annealing_factor = entropy_loss_annealing_factor
        self.commitment_loss_weight = commitment_loss_weight
        self.diversity_gamma = diversity_gamma
        self.inv_temperature = inv_temperature

    # ---- scalar maps, all on channel-last float32 tensors (..., D) -------------------------------
    def bound(self, z: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
        half_l = (self._levels - 1) * (1 + eps) / 2
        offset = torch.where(self._levels % 2 == 0, 0.5, 0.0)
        shift = (offset / half_l).atanh()
        return (z + shift).tanh() * half_l - offset

    def quantize(self, z: torch.Tensor) -> torch.Tensor:
        """Channel-last float32 `z (..., D)` -> codes `(..., D)` in {k / (L//2)}, straight-through."""
        return round_ste(self.bound(z)) / (self._levels // 2)

    def codes_to_indices(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes `(..., D)` -> int32 ids `(...)`; channel 0 is the least-significant digit (§7.1 step 5)."""
        self._check_last_dim(codes, "codes")
        half_width = self._levels // 2
        digits = codes.float() * half_width + half_width
        return (digits * self._basis).sum(dim=-1).round().to(torch.int32)

    def indices_to_codes(self, indices: torch.Tensor) -> torch.Tensor:
        """Integer ids `(...)` in [0, codebook_size) -> float32 codes `(..., D)` (§7.1 step 7)."""
        if indices.is_floating_point():
            raise ValueError(f"indices must be an integer tensor, found dtype {indices.dtype}")
        half_width = self._levels // 2
        digits = (indices.long()[..., None] // self._basis) % self._levels
        return (digits - half_width).float() / half_width

    def _check_last_dim(self, t: torch.Tensor, name: str) -> None:
        if t.shape[-1] != self.dim:
            raise ValueError(f"{name}: expected last dim {self.dim} (= len(levels)), found shape {tuple(t.shape)}")

    # ---- training-only auxiliary loss -----------------------------------------------------------
    def implicit_codebook(self, device: torch.device) -> torch.Tensor:
        """All codes `(codebook_size, D)` float32."""
        return self.indices_to_codes(torch.arange(self.codebook_size, device=device))

    def entropy_weight(self, n_steps: int) -> float:
        """Linear ramp from factor*w down to w over the annealing steps (n_steps = global_step // 2, §7.1, §11.6)."""
        w, f, steps = self.entropy_loss_weight, self.entropy_loss_annealing_factor, self.entropy_loss_annealing_steps
        if n_steps >= steps:
            return w
        return f * w - (n_steps / steps) * (f * w - w)

    def aux_loss(self, z: torch.Tensor, codes: torch.Tensor, n_steps: int) -> torch.Tensor:
        """Entropy + commitment loss on pre-bound `z (N, D)` float32 and `codes (N, D)`; batch tokens pooled."""
        logits = 2 * self.inv_temperature * z @ self.implicit_codebook(z.device).t()
        prob = logits.softmax(dim=-1)
        per_sample_entropy = _entropy(prob).mean()
        avg_prob = prob.mean(dim=0)
        if torch.distributed.is_available() and torch.distributed.is_initialized() \
                and torch.distributed.get_world_size() > 1:
            # The official loss averages the codebook usage across DDP ranks (§7.1).
            from torch.distributed.nn.functional import all_reduce
            avg_prob = all_reduce(avg_prob) / torch.distributed.get_world_size()
        codebook_entropy = _entropy(avg_prob)
        entropy_aux = per_sample_entropy - self.diversity_gamma * codebook_entropy
        commit = ((z - codes.detach()) ** 2).mean()
        return entropy_aux * self.entropy_weight(n_steps) + self.commitment_loss_weight * commit

    # ---- forward --------------------------------------------------------------------------------
    def forward(self, z: torch.Tensor, compute_aux: bool = False, n_steps: int = 0
                ) -> tuple[torch.Tensor, torch.Tensor, dict]:
        """z (B, D, t, h, w) -> (codes (B, D, t, h, w) in z.dtype, indices (B, t, h, w) int32, log).

        `log` holds 'aux_loss' (scalar float32) only when `compute_aux`.
        """
        if z.dim() != 5 or z.shape[1] != self.dim:
            raise ValueError(f"FSQ expects z of shape (B, {self.dim}, t, h, w), found {tuple(z.shape)}")
        with torch.autocast(device_type=z.device.type, enabled=False):
            zf = z.float().movedim(1, -1)  # (B, t, h, w, D), tokens in row-major (t, y, x)
            codes = self.quantize(zf)
            indices = self.codes_to_indices(codes)
            log = {}
            if compute_aux:
                log["aux_loss"] = self.aux_loss(zf.reshape(-1, self.dim), codes.reshape(-1, self.dim), n_steps)
        return codes.movedim(-1, 1).to(z.dtype), indices, log
