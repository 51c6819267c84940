"""Reconstruction metrics of the VidTok evaluation (spec §13, `util.compute_psnr` / `compute_ssim`).

Both work on `(x + 1) / 2` after clamping to [-1, 1], frame by frame:

* PSNR: `−10·log10(mse + 1e−8)` per frame (data range 1), then averaged.
* SSIM: Wang et al. 2004 with an 11×11 Gaussian window (σ = 1.5), *valid* padding, C1 = 0.01², C2 = 0.03², per
  channel, averaged over channels and positions per frame, then over frames.

LPIPS uses the loss's module (`vidtok.losses.lpips.build_lpips`) in eval mode. All inputs are `(B, 3, T, H, W)` float
in [-1, 1] (layout of the model's input and `reconstruct` output).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _frames01(video: torch.Tensor) -> torch.Tensor:
    """`(B, C, T, H, W)` in [-1, 1] -> `(B·T, C, H, W)` float32 in [0, 1] (clamped first, as the official scripts)."""
    if video.dim() != 5:
        raise ValueError(f"expected a video batch (B, C, T, H, W), found shape {tuple(video.shape)}")
    b, c, t, h, w = video.shape
    v = (video.detach().float().clamp(-1, 1) + 1) / 2
    return v.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)


def psnr_per_frame(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """PSNR in dB of each frame: `(B·T,)` float32, batch-major then time."""
    a, b = _frames01(x), _frames01(y)
    mse = ((a - b) ** 2).mean(dim=(1, 2, 3))
    return -10.0 * torch.log10(mse + 1e-8)


def _gaussian_window(size: int = 11, sigma: float = 1.5, device=None) -> torch.Tensor:
    coords = torch.arange(size, dtype=torch.float64, device=device) - (size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).float()  # (size, size), sums to 1


def ssim_per_frame(x: torch.Tensor, y: torch.Tensor, window: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """SSIM of each frame: `(B·T,)` float32 in [-1, 1]. Frames smaller than the window raise ValueError."""
    a, b = _frames01(x), _frames01(y)
    n, c, h, w = a.shape
    if h < window or w < window:
        raise ValueError(f"SSIM needs frames of at least {window}x{window} (valid padding), found {h}x{w}")
    k = _gaussian_window(window, sigma, a.device).expand(c, 1, window, window).contiguous()
    conv = lambda t: F.conv2d(t, k, groups=c)  # noqa: E731 — valid padding, per channel
    mu_a, mu_b = conv(a), conv(b)
    s_aa = conv(a * a) - mu_a**2
    s_bb = conv(b * b) - mu_b**2
    s_ab = conv(a * b) - mu_a * mu_b
    c1, c2 = 0.01**2, 0.03**2
    ssim_map = ((2 * mu_a * mu_b + c1) * (2 * s_ab + c2)) / ((mu_a**2 + mu_b**2 + c1) * (s_aa + s_bb + c2))
    return ssim_map.mean(dim=(1, 2, 3))


@torch.no_grad()
def lpips_per_frame(lpips_module: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, group: int = 16) -> torch.Tensor:
    """LPIPS of each frame `(B·T,)`, computed in groups of `group` frames (spec §13) with the module in eval mode."""
    was_training = lpips_module.training
    lpips_module.eval()
    a = _frames01(x) * 2 - 1
    b = _frames01(y) * 2 - 1
    out = [lpips_module(a[i : i + group], b[i : i + group]).reshape(-1) for i in range(0, a.shape[0], group)]
    lpips_module.train(was_training)
    return torch.cat(out).float()


def psnr(x: torch.Tensor, y: torch.Tensor) -> float:
    """Mean per-frame PSNR (dB)."""
    return float(psnr_per_frame(x, y).mean())


def ssim(x: torch.Tensor, y: torch.Tensor) -> float:
    """Mean per-frame SSIM."""
    return float(ssim_per_frame(x, y).mean())
