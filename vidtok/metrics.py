"""Reconstruction metrics of the VidTok evaluation (spec §13, `util.compute_psnr` / `compute_ssim`) and FVD's
Fréchet distance.

PSNR and SSIM work on `(x + 1) / 2` after clamping to [-1, 1], frame by frame:

* PSNR: `−10·log10(mse + 1e−8)` per frame (data range 1), then averaged over frames.
* SSIM: Wang et al. 2004 with an 11×11 Gaussian window (σ = 1.5), *valid* padding, C1 = 0.01², C2 = 0.03², per
  channel, averaged over channels and positions per frame, then over frames. Like the official `compute_ssim`, both
  frames are first average-pooled by `f = max(1, round(min(H, W) / 256))` (`F.avg_pool2d(x, kernel_size=f)`: stride
  f, the last `H mod f` rows / `W mod f` columns dropped, Python's round-half-to-even). So nothing changes below a
  short side of 384 (the paper's 256²), f = 2 from 384 to 640, f = 3 from 641 to 896, and so on. Frames are
  processed in groups of 16 as the official scripts do; a frame's value does not depend on its group, which only
  bounds memory. This is piq's `ssim(downsample=True)` rule, not the original MATLAB `ssim.m` (a symmetric-padded
  f×f box filter sampled at every f-th pixel from the first), which gives slightly different numbers.

LPIPS uses the loss's module (`vidtok.losses.lpips.build_lpips`) in eval mode. All video inputs are
`(B, 3, T, H, W)` float in [-1, 1] (layout of the model's input and `reconstruct` output).

FVD: `frechet_distance(mu1, sigma1, mu2, sigma2)` between two Gaussians, guarded like pytorch-fid
(`pytorch_fid/fid_score.py: calculate_frechet_distance`) against a non-finite or complex `sqrtm`, and `FeatureStats`,
a streaming, mergeable mean/covariance accumulator of feature rows (e.g. I3D's `(B, 400)`), so one evaluation gives
ONE FVD over the whole set in one pass, across workers.
"""

from __future__ import annotations

import logging
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

log = logging.getLogger(__name__)

SSIM_GROUP = 16  # frames per SSIM / LPIPS call (spec §13)


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


def ssim_pool_factor(h: int, w: int) -> int:
    """The official SSIM's average-pool factor for `h × w` frames: `max(1, round(min(h, w) / 256))`."""
    return max(1, round(min(h, w) / 256))


def _ssim_frames(a: torch.Tensor, b: torch.Tensor, window: int, sigma: float) -> torch.Tensor:
    """SSIM of already pooled frames `a, b: (N, C, h, w)` in [0, 1] -> `(N,)`."""
    n, c, h, w = a.shape
    k = _gaussian_window(window, sigma, a.device).expand(c, 1, window, window).contiguous()
    conv = lambda t: F.conv2d(t, k, groups=c)  # noqa: E731 — valid padding, per channel
    mu_a, mu_b = conv(a), conv(b)
    s_aa = conv(a * a) - mu_a**2
    s_bb = conv(b * b) - mu_b**2
    s_ab = conv(a * b) - mu_a * mu_b
    c1, c2 = 0.01**2, 0.03**2
    ssim_map = ((2 * mu_a * mu_b + c1) * (2 * s_ab + c2)) / ((mu_a**2 + mu_b**2 + c1) * (s_aa + s_bb + c2))
    return ssim_map.mean(dim=(1, 2, 3))


def ssim_per_frame(x: torch.Tensor, y: torch.Tensor, window: int = 11, sigma: float = 1.5,
                   group: int = SSIM_GROUP) -> torch.Tensor:
    """SSIM of each frame as the official `compute_ssim` computes it: `(B·T,)` float32 in [-1, 1].

    Frames are average-pooled by `ssim_pool_factor(H, W)` first (module docstring). Frames smaller than the window
    after pooling raise ValueError.
    """
    a, b = _frames01(x), _frames01(y)
    h, w = a.shape[-2:]
    f = ssim_pool_factor(h, w)
    if h // f < window or w // f < window:
        raise ValueError(f"SSIM needs frames of at least {window}x{window} after the {f}x pooling (valid padding), "
                         f"found {h}x{w}")
    out = []
    for i in range(0, a.shape[0], group):
        ga, gb = a[i : i + group], b[i : i + group]
        if f > 1:
            ga, gb = F.avg_pool2d(ga, kernel_size=f), F.avg_pool2d(gb, kernel_size=f)
        out.append(_ssim_frames(ga, gb, window, sigma))
    return torch.cat(out)


@torch.no_grad()
def lpips_per_frame(lpips_module: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
                    group: int = SSIM_GROUP) -> torch.Tensor:
    """LPIPS of each frame `(B·T,)`, computed in groups of `group` frames (spec §13) with the module in eval mode."""
    was_training = lpips_module.training
    lpips_module.eval()
    a = _frames01(x) * 2 - 1
    b = _frames01(y) * 2 - 1
    out = [lpips_module(a[i : i + group], b[i : i + group]).reshape(-1) for i in range(0, a.shape[0], group)]
    lpips_module.train(was_training)
    return torch.cat(out).float()


def psnr(x: torch.Tensor, y: torch.Tensor) -> float:
    """Mean per-frame PSNR (dB) of two videos `(B, 3, T, H, W)` in [-1, 1]."""
    return float(psnr_per_frame(x, y).mean())


def ssim(x: torch.Tensor, y: torch.Tensor) -> float:
    """Mean per-frame SSIM (official pooling rule) of two videos `(B, 3, T, H, W)` in [-1, 1]."""
    return float(ssim_per_frame(x, y).mean())


# --------------------------------------------------------------------------------------------------- Fréchet / FVD
def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray,
                     eps: float = 1e-6, imag_tol: float = 1e-3) -> float:
    """Fréchet distance `‖μ1−μ2‖² + tr(Σ1 + Σ2 − 2·(Σ1Σ2)^½)` between two Gaussians (means `(D,)`, covariances `(D, D)`).

    Guarded like pytorch-fid: if `sqrtm(Σ1Σ2)` is not finite (a product without a square root; singular covariances,
    e.g. fewer samples than dimensions, usually give a finite result with an imaginary residue), it is recomputed with `eps·I` added to both covariances; an imaginary residue (round-off: the
    product of two PSD matrices has real non-negative eigenvalues) is dropped when the largest imaginary part of its
    diagonal is below `imag_tol`, and raises ValueError otherwise.
    """
    import warnings

    from scipy import linalg

    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    d = mu1.shape[0]
    if mu2.shape != (d,) or sigma1.shape != (d, d) or sigma2.shape != (d, d):
        raise ValueError(f"Fréchet distance needs means (D,) and covariances (D, D) of one D; found mu1 {mu1.shape}, "
                         f"sigma1 {sigma1.shape}, mu2 {mu2.shape}, sigma2 {sigma2.shape}")
    diff = mu1 - mu2
    with warnings.catch_warnings():  # a singular product is expected (N < D); the checks below judge the result
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        covmean = linalg.sqrtm(sigma1 @ sigma2)
        if not np.isfinite(covmean).all():
            log.warning("Fréchet distance: sqrtm(sigma1 @ sigma2) is not finite (singular product); adding %g to "
                        "the covariance diagonals", eps)
            offset = np.eye(d) * eps
            covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if not np.isfinite(covmean).all():
        raise ValueError("Fréchet distance: sqrtm is not finite even with eps on the diagonals; check the "
                         "features for NaN/inf")
    if np.iscomplexobj(covmean):
        imag = float(np.max(np.abs(np.diagonal(covmean).imag)))
        if imag > imag_tol:
            raise ValueError(f"Fréchet distance: sqrtm has an imaginary component of {imag:.3g} on its diagonal "
                             f"(> imag_tol={imag_tol}); the covariances are not valid PSD matrices")
        covmean = covmean.real
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


class FeatureStats:
    """Streaming mean and covariance of feature rows `(N, D)`, mergeable across batches and workers.

    Keeps the count, the mean and the co-moment `M2 = Σ (f − mean)(f − mean)ᵀ` in float64 and combines two sets with
    Chan et al.'s pairwise update, which equals the one-pass result over all rows without the cancellation of
    `Σ f fᵀ − n·mean meanᵀ` when features have a large mean. `cov` is the unbiased `np.cov(rows, rowvar=False)`.
    Picklable (plain numpy), so Ray workers can return one each and the driver `merge`s them.
    """

    def __init__(self, dim: Optional[int] = None):
        self.dim = dim
        self.count = 0
        self._mean = np.zeros(dim or 0, np.float64)
        self._m2 = np.zeros((dim or 0, dim or 0), np.float64)

    def update(self, features) -> "FeatureStats":
        """Add feature rows: `(N, D)` numpy array or tensor (any float dtype; moved to the CPU as float64)."""
        if isinstance(features, torch.Tensor):
            features = features.detach().cpu().double().numpy()
        f = np.asarray(features, np.float64)
        if f.ndim != 2:
            raise ValueError(f"expected feature rows (N, D), found shape {f.shape}")
        if not np.isfinite(f).all():
            raise ValueError("features contain NaN or inf; check the feature extractor's input range")
        if f.shape[0] == 0:
            return self
        batch = FeatureStats(f.shape[1])
        batch.count = f.shape[0]
        batch._mean = f.mean(axis=0)
        centred = f - batch._mean
        batch._m2 = centred.T @ centred
        return self.merge(batch)

    def merge(self, other: "FeatureStats") -> "FeatureStats":
        """Fold another accumulator into this one (in place); returns self."""
        if other.count == 0:
            return self
        if self.count == 0:
            self.dim, self.count, self._mean, self._m2 = other.dim, other.count, other._mean.copy(), other._m2.copy()
            return self
        if other.dim != self.dim:
            raise ValueError(f"cannot merge features of dimension {other.dim} into {self.dim}")
        n = self.count + other.count
        delta = other._mean - self._mean
        self._m2 = self._m2 + other._m2 + np.outer(delta, delta) * (self.count * other.count / n)
        self._mean = self._mean + delta * (other.count / n)
        self.count = n
        return self

    @property
    def mean(self) -> np.ndarray:
        """`(D,)` float64 mean of all rows so far."""
        if self.count == 0:
            raise ValueError("no features accumulated yet")
        return self._mean.copy()

    @property
    def cov(self) -> np.ndarray:
        """`(D, D)` float64 unbiased covariance (zeros for a single row)."""
        if self.count == 0:
            raise ValueError("no features accumulated yet")
        return self._m2 / (self.count - 1) if self.count > 1 else np.zeros_like(self._m2)

    def frechet_distance(self, other: "FeatureStats") -> float:
        """Fréchet distance between this set's Gaussian and `other`'s (e.g. real vs reconstructed: FVD)."""
        return frechet_distance(self.mean, self.cov, other.mean, other.cov)


def frechet_distance_from_features(a, b) -> float:
    """Fréchet distance between Gaussians fitted to feature rows `a (N, D)` and `b (M, D)`."""
    return FeatureStats().update(a).frechet_distance(FeatureStats().update(b))
