"""PSNR / SSIM of spec §13 against direct computations, and LPIPS grouping."""

from __future__ import annotations

import math

import numpy as np
import torch

from vidtok.losses import build_lpips
from vidtok.metrics import lpips_per_frame, psnr, psnr_per_frame, ssim, ssim_per_frame


def _video(seed=0, b=1, t=2, h=24, w=24):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 3, t, h, w, generator=g) * 2 - 1


def test_psnr_known_mse_and_identity():
    """A uniform offset of 0.1 in [0,1] gives 20 dB; identical clips give −10·log10(1e−8) = 80 dB."""
    x = torch.zeros(1, 3, 2, 8, 8)
    y = x + 0.2  # 0.1 in [0, 1] units
    assert abs(psnr(x, y) - 20.0) < 1e-3
    assert abs(psnr(x, x) - 80.0) < 1e-6
    # clamping happens before the error: values beyond [-1, 1] do not count
    assert abs(psnr(x.clamp(-1, 1), torch.full_like(x, 5.0).clamp(-1, 1)) - psnr(x, torch.ones_like(x))) < 1e-6


def _ssim_reference(a: np.ndarray, b: np.ndarray) -> float:
    """Direct SSIM of one (C, H, W) image in [0, 1]: explicit 11×11 Gaussian windows, valid positions only."""
    r = np.arange(11) - 5
    g = np.exp(-(r**2) / (2 * 1.5**2))
    g /= g.sum()
    win = np.outer(g, g)
    c1, c2 = 0.01**2, 0.03**2
    vals = []
    for ch in range(a.shape[0]):
        for i in range(a.shape[1] - 10):
            for j in range(a.shape[2] - 10):
                pa, pb = a[ch, i : i + 11, j : j + 11], b[ch, i : i + 11, j : j + 11]
                ma, mb = (win * pa).sum(), (win * pb).sum()
                va, vb = (win * pa * pa).sum() - ma**2, (win * pb * pb).sum() - mb**2
                cov = (win * pa * pb).sum() - ma * mb
                vals.append(((2 * ma * mb + c1) * (2 * cov + c2)) / ((ma**2 + mb**2 + c1) * (va + vb + c2)))
    return float(np.mean(vals))


def test_ssim_matches_direct_windowed_computation():
    """Per-frame SSIM equals an explicit-loop Gaussian-window SSIM (valid padding) on [0,1] images."""
    x, y = _video(0), _video(1)
    y = 0.7 * x + 0.3 * y  # correlated, so SSIM is far from 0
    got = ssim_per_frame(x, y)
    for f in range(2):
        a = ((x[0, :, f] + 1) / 2).double().numpy()
        b = ((y[0, :, f] + 1) / 2).double().numpy()
        assert abs(float(got[f]) - _ssim_reference(a, b)) < 1e-4, (float(got[f]), _ssim_reference(a, b))
    assert abs(ssim(x, x) - 1.0) < 1e-5


def test_psnr_per_frame_is_frame_major_within_batch():
    """Per-frame values come out batch-major then time, one per frame."""
    x = torch.zeros(2, 3, 3, 8, 8)
    y = x.clone()
    y[1, :, 2] += 0.2
    v = psnr_per_frame(x, y)
    assert v.shape == (6,)
    assert abs(float(v[5]) - 20.0) < 1e-3 and all(abs(float(v[i]) - 80) < 1e-6 for i in range(5))
    assert math.isclose(float(v.mean()), (5 * 80 + 20) / 6, rel_tol=1e-5)


def test_lpips_per_frame_groups_match_single_call():
    """Grouping frames in 16s (spec §13) gives the same values as one call, with dropout off (eval)."""
    m = build_lpips(random_backbone=True).train()  # train mode on purpose: the metric must switch to eval
    x, y = _video(0, b=1, t=5, h=16, w=16), _video(1, b=1, t=5, h=16, w=16)
    a = lpips_per_frame(m, x, y, group=2)
    b = lpips_per_frame(m, x, y, group=16)
    torch.testing.assert_close(a, b)
    assert m.training and a.shape == (5,)


def test_frechet_distance_of_shifted_gaussians():
    """FVD's Fréchet distance: 0 for the same features; ‖Δμ‖² for a pure mean shift of the same samples."""
    from pipeline.evaluate.metrics import frechet_distance

    rng = np.random.default_rng(0)
    a = rng.normal(size=(400, 3))
    assert abs(frechet_distance(a, a)) < 1e-6
    shift = np.array([1.0, -2.0, 0.5])
    assert abs(frechet_distance(a, a + shift) - float((shift**2).sum())) < 1e-6
