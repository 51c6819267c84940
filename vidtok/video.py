"""Video tensor conventions, written once: decoded frames <-> model input.

* Decoded frames: `(B, T, H, W, 3)` (or one clip `(T, H, W, 3)`) uint8 RGB, what `pipeline.decode` returns.
* Model input / output: `(B, 3, T, H, W)` float in [-1, 1], as the official data pipeline builds it
  (`p / 255`, then `(v - 0.5) / 0.5`, which is `p / 127.5 - 1`).
* Back to pixels: clamp to [-1, 1], `(v + 1) * 127.5`, round, uint8 (the official video writer's rounding).

Used by the tokenizer stage, the training loop, evaluation and reconstruction. Pure torch + numpy.
"""

from __future__ import annotations

import numpy as np
import torch


def to_model_input(frames, device=None) -> torch.Tensor:
    """`(B, T, H, W, 3)` uint8 (numpy or torch) -> `(B, 3, T, H, W)` float32 in [-1, 1] on `device`, contiguous.

    The uint8 tensor is moved first (4x fewer bytes over PCIe than float), then converted in place."""
    x = torch.as_tensor(frames)
    if x.dim() != 5 or x.shape[-1] != 3 or x.dtype != torch.uint8:
        raise ValueError(f"expected frames (B, T, H, W, 3) uint8, found {tuple(x.shape)} {x.dtype}")
    if device is not None and torch.device(device).type == "cuda":
        x = x.pin_memory().to(device, non_blocking=True)
    elif device is not None:
        x = x.to(device)
    return x.permute(0, 4, 1, 2, 3).float().div_(127.5).sub_(1.0).contiguous()


def to_uint8_frames(video: torch.Tensor) -> np.ndarray:
    """`(B, 3, T, H, W)` or `(3, T, H, W)` float in [-1, 1] -> `(B, T, H, W, 3)` / `(T, H, W, 3)` uint8 numpy."""
    v = ((video.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    if v.dim() == 4:
        return v.permute(1, 2, 3, 0).cpu().numpy()
    if v.dim() == 5:
        return v.permute(0, 2, 3, 4, 1).cpu().numpy()
    raise ValueError(f"expected video (B, 3, T, H, W) or (3, T, H, W), found {tuple(video.shape)}")
