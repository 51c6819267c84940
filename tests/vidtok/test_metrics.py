"""PSNR / SSIM of spec §13 against direct computations and piq, LPIPS grouping, and FVD's Fréchet distance.

SSIM reference: piq 0.8.0 `ssim(downsample=True)` (test-only dependency) uses the official rule exactly — the same
pool factor `max(1, round(min(H, W) / 256))` with `F.avg_pool2d(kernel_size=f)`, an 11×11 Gaussian with σ = 1.5,
valid convolution, k1 = 0.01, k2 = 0.03, mean over positions then channels. It requires inputs in [0, data_range],
so it gets the clamped `(x + 1) / 2` frames that the official script feeds `compute_ssim`. The original MATLAB rule
(box filter with symmetric padding, then every f-th pixel) differs and is not used as a reference.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from vidtok.losses import build_lpips
from vidtok.metrics import (FeatureStats, frechet_distance, frechet_distance_from_features, lpips_per_frame, psnr,
                            psnr_per_frame, ssim, ssim_per_frame, ssim_pool_factor)

C1, C2 = 0.01**2, 0.03**2


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


def _stats(a, b) -> str:
    d = np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))
    return f"max diff {d.max():.3e}, mean diff {d.mean():.3e}"


def _smooth_video(seed: int, t: int, h: int, w: int) -> torch.Tensor:
    """A smooth random video (B=1) plus a correlated, noisier copy: SSIM well inside (0, 1)."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(1, 3 * t, h // 16 + 1, w // 16 + 1, generator=g) * 2 - 1
    x = torch.nn.functional.interpolate(low, size=(h, w), mode="bilinear", align_corners=False)
    x = x.reshape(1, 3, t, h, w)
    y = (x + 0.3 * (torch.rand(x.shape, generator=g) * 2 - 1)).clamp(-1, 1)
    return x, y


def _ssim_numpy(a: np.ndarray, b: np.ndarray) -> float:
    """Official SSIM of one (C, H, W) frame in [0, 1], computed directly: f×f block means, then every 11×11 window."""
    f = max(1, round(min(a.shape[1:]) / 256))
    if f > 1:  # avg_pool2d(kernel=f, stride=f): non-overlapping blocks from the top-left, remainder dropped
        c, h, w = a.shape
        a = a[:, : h // f * f, : w // f * f].reshape(c, h // f, f, w // f, f).mean(axis=(2, 4))
        b = b[:, : h // f * f, : w // f * f].reshape(c, h // f, f, w // f, f).mean(axis=(2, 4))
    r = np.arange(11) - 5
    g = np.exp(-(r**2) / (2 * 1.5**2))
    win = np.outer(g, g) / np.outer(g, g).sum()
    pa = np.lib.stride_tricks.sliding_window_view(a, (11, 11), axis=(1, 2))  # (C, h-10, w-10, 11, 11)
    pb = np.lib.stride_tricks.sliding_window_view(b, (11, 11), axis=(1, 2))
    wsum = lambda p: np.einsum("chwij,ij->chw", p, win)  # noqa: E731
    ma, mb = wsum(pa), wsum(pb)
    va, vb, cov = wsum(pa * pa) - ma**2, wsum(pb * pb) - mb**2, wsum(pa * pb) - ma * mb
    return float((((2 * ma * mb + C1) * (2 * cov + C2)) / ((ma**2 + mb**2 + C1) * (va + vb + C2))).mean())


def test_ssim_pool_factor_follows_official_rounding():
    """f = max(1, round(min(H, W)/256)): 1 below 384, 2 from 384 to 640 (half to even), 3 from 641; short side counts."""
    cases = {(256, 256): 1, (383, 1000): 1, (384, 384): 2, (512, 512): 2, (640, 640): 2, (641, 641): 3,
             (720, 1280): 3, (1080, 1920): 4, (1280, 720): 3}
    got = {hw: ssim_pool_factor(*hw) for hw in cases}
    assert got == cases, f"pool factors {got} != expected {cases}"


@pytest.mark.parametrize("hw", [(256, 256), (384, 384), (512, 512), (720, 1280)])
def test_ssim_matches_direct_numpy_official_rule(hw):
    """Per-frame SSIM equals a direct numpy computation (block-mean pooling, explicit 11×11 windows) at every size."""
    x, y = _smooth_video(0, 2, *hw)
    got = ssim_per_frame(x, y).double().numpy()
    want = [_ssim_numpy(((x[0, :, f] + 1) / 2).double().numpy(), ((y[0, :, f] + 1) / 2).double().numpy())
            for f in range(2)]
    assert np.allclose(got, want, atol=2e-5), f"{hw}: {_stats(got, want)}; got {got}, want {want}"


@pytest.mark.parametrize("hw", [(256, 256), (384, 384), (512, 512), (720, 1280)])
def test_ssim_matches_piq_downsample(hw):
    """`ssim` equals piq's `ssim(downsample=True)` on the clamped (x+1)/2 frames (same rule, see module docstring)."""
    piq = pytest.importorskip("piq", reason="piq is a test-only reference (pip install -e '.[test]')")
    x, y = _smooth_video(1, 3, *hw)
    a = ((x.clamp(-1, 1) + 1) / 2)[0].permute(1, 0, 2, 3)  # (T, 3, H, W) in [0, 1]
    b = ((y.clamp(-1, 1) + 1) / 2)[0].permute(1, 0, 2, 3)
    want = piq.ssim(a, b, data_range=1.0, reduction="none", downsample=True).double().numpy()
    got = ssim_per_frame(x, y).double().numpy()
    assert np.allclose(got, want, atol=1e-5), f"{hw}: {_stats(got, want)}"
    assert abs(ssim(x, y) - float(want.mean())) < 1e-5


def test_ssim_pooling_changes_value_from_384_up_only():
    """At 256² the official value equals unpooled SSIM (piq downsample=False); at 384² pooling changes it."""
    piq = pytest.importorskip("piq", reason="piq is a test-only reference (pip install -e '.[test]')")
    for hw, same in (((256, 256), True), ((384, 384), False)):
        x, y = _smooth_video(2, 1, *hw)
        a, b = (x[0].permute(1, 0, 2, 3) + 1) / 2, (y[0].permute(1, 0, 2, 3) + 1) / 2
        unpooled = float(piq.ssim(a, b, data_range=1.0, downsample=False))
        got = ssim(x, y)
        assert (abs(got - unpooled) < 1e-5) == same, f"{hw}: official {got:.6f} vs unpooled {unpooled:.6f}"


@pytest.mark.parametrize("hw", [(64, 64), (384, 384), (720, 1280)])
def test_ssim_constant_frames_closed_form(hw):
    """Constant frames a and b (so every variance is 0): SSIM = (2ab + C1)/(a² + b² + C1); identical frames give 1.

    Tolerance 1e-4: in float32 the windowed variances are ~1e-8 instead of 0, which is 1e-5 of C2.
    """
    a01, b01 = 0.25, 0.5
    x = torch.full((1, 3, 2, *hw), a01 * 2 - 1)
    y = torch.full((1, 3, 2, *hw), b01 * 2 - 1)
    want = (2 * a01 * b01 + C1) / (a01**2 + b01**2 + C1)
    assert abs(ssim(x, y) - want) < 1e-4, (ssim(x, y), want)
    assert abs(ssim(x, x) - 1.0) < 1e-6


def test_ssim_groups_of_16_do_not_change_frame_values():
    """Computing 20 frames in groups of 16 (official) or one by one gives the same per-frame values."""
    x, y = _smooth_video(3, 20, 32, 32)
    torch.testing.assert_close(ssim_per_frame(x, y), ssim_per_frame(x, y, group=1), atol=1e-6, rtol=0)
    assert ssim_per_frame(x, y).shape == (20,)


def test_ssim_too_small_after_pooling_raises():
    """Frames smaller than the 11×11 window (after pooling) are refused with the size in the message."""
    with pytest.raises(ValueError, match="10x10"):
        ssim(torch.zeros(1, 3, 1, 10, 10), torch.zeros(1, 3, 1, 10, 10))


# --------------------------------------------------------------------------------------------------- Fréchet
def test_frechet_distance_identical_and_shifted_gaussians():
    """0 for the same features; ‖Δμ‖² for a pure mean shift of the same samples."""
    rng = np.random.default_rng(0)
    a = rng.normal(size=(400, 3))
    assert abs(frechet_distance_from_features(a, a)) < 1e-6
    shift = np.array([1.0, -2.0, 0.5])
    assert abs(frechet_distance_from_features(a, a + shift) - float((shift**2).sum())) < 1e-6


def test_frechet_distance_diagonal_closed_form():
    """Diagonal covariances: ‖Δμ‖² + Σ (√s1 − √s2)² exactly."""
    mu1, mu2 = np.array([0.0, 1.0, 2.0, -1.0]), np.array([0.5, 1.0, 0.0, 3.0])
    s1, s2 = np.array([1.0, 4.0, 0.25, 9.0]), np.array([4.0, 1.0, 1.0, 9.0])
    want = float(((mu1 - mu2) ** 2).sum() + ((np.sqrt(s1) - np.sqrt(s2)) ** 2).sum())
    got = frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2))
    assert abs(got - want) < 1e-9, (got, want)


def test_frechet_distance_singular_covariance_is_finite_and_exact():
    """Fewer samples than dims (rank-deficient covariances) still gives a finite value equal to an eigen reference."""
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(10, 64)), rng.normal(size=(12, 64)) * 1.5 + 0.2
    got = frechet_distance_from_features(a, b)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    w, v = np.linalg.eigh(s1)  # tr sqrt(S1 S2) = tr sqrt(S1^½ S2 S1^½), a symmetric PSD matrix
    r1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    tr_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh(r1 @ s2 @ r1), 0, None)).sum()
    want = float(((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * tr_sqrt)
    assert np.isfinite(got) and abs(got - want) < 1e-6 * max(1.0, abs(want)), (got, want)


def test_frechet_distance_falls_back_to_eps_when_sqrtm_is_not_finite():
    """A product without a square root (nilpotent) makes sqrtm non-finite; the eps·I retry gives a finite value."""
    nilpotent = np.array([[0.0, 1.0], [0.0, 0.0]])
    got = frechet_distance(np.zeros(2), nilpotent, np.zeros(2), np.eye(2), eps=1e-6)
    # sqrtm((N + εI)(I + εI)) = sqrt(1+ε)·[[√ε, 1/(2√ε)], [0, √ε]]: trace 2·sqrt(ε(1+ε))
    want = 0.0 + 2.0 - 2 * 2 * np.sqrt(1e-6 * (1 + 1e-6))
    assert np.isfinite(got) and abs(got - want) < 1e-6, (got, want)


def test_frechet_distance_rejects_large_imaginary_part():
    """A covariance pair whose sqrtm has a large imaginary diagonal (not PSD) raises instead of returning a number."""
    with pytest.raises(ValueError, match="imaginary"):
        frechet_distance(np.zeros(2), -np.eye(2), np.zeros(2), np.eye(2))


def test_feature_stats_merge_equals_one_pass():
    """Two workers' accumulators merged equal one accumulator over all rows, and numpy's mean / np.cov."""
    rng = np.random.default_rng(2)
    feats = rng.normal(size=(50, 7)) * 3 + 100.0  # large mean: the pairwise update avoids cancellation
    one = FeatureStats()
    for i in range(0, 50, 8):
        one.update(feats[i : i + 8])
    w1, w2 = FeatureStats().update(feats[:17]), FeatureStats().update(torch.from_numpy(feats[17:]))
    merged = FeatureStats().merge(w1).merge(w2)
    for acc in (one, merged):
        assert acc.count == 50
        assert np.allclose(acc.mean, feats.mean(0), atol=1e-10), _stats(acc.mean, feats.mean(0))
        assert np.allclose(acc.cov, np.cov(feats, rowvar=False), atol=1e-9), _stats(acc.cov, np.cov(feats, rowvar=False))
    ref = FeatureStats().update(feats[:25] + 1.0)
    assert abs(one.frechet_distance(ref) - merged.frechet_distance(ref)) < 1e-8


def _tiny_i3d() -> torch.nn.Module:
    """A random stand-in with the StyleGAN-V I3D TorchScript call convention: (B, 3, T, 224, 224) in [-1, 1] -> (B, 400)."""

    class TinyI3D(torch.nn.Module):
        def __init__(self):
            super().__init__()
            g = torch.Generator().manual_seed(0)
            self.conv = torch.nn.Conv3d(3, 8, kernel_size=(3, 7, 7), stride=(2, 4, 4))
            self.fc = torch.nn.Linear(8 * 4 * 4, 400)
            with torch.no_grad():
                for p in self.parameters():
                    p.copy_(torch.randn(p.shape, generator=g) * 0.2)

        def forward(self, x: torch.Tensor, rescale: bool = False, resize: bool = True,
                    return_features: bool = True) -> torch.Tensor:
            if rescale:
                x = x / 127.5 - 1
            if resize:
                b, c, t, h, w = x.shape
                x = torch.nn.functional.interpolate(x.transpose(1, 2).reshape(b * t, c, h, w), size=(224, 224),
                                                    mode="bilinear", align_corners=False)
                x = x.reshape(b, t, c, 224, 224).transpose(1, 2)
            h = torch.relu(self.conv(x))
            h = torch.nn.functional.adaptive_avg_pool3d(h, (1, 4, 4)).flatten(1)
            return self.fc(h)

    return TinyI3D().eval()


def test_feature_stats_with_torchscript_i3d_end_to_end(tmp_path):
    """A scripted, saved and reloaded I3D-shaped detector feeds FeatureStats batch by batch; one FVD over the set."""
    path = tmp_path / "i3d_torchscript.pt"
    torch.jit.script(_tiny_i3d()).save(str(path))
    det = torch.jit.load(str(path)).eval()
    g = torch.Generator().manual_seed(3)
    real = torch.rand(6, 3, 8, 64, 64, generator=g) * 2 - 1
    fake = (real + 0.2 * torch.randn(real.shape, generator=g)).clamp(-1, 1)
    real_stats, fake_stats, all_real, all_fake = FeatureStats(), FeatureStats(), [], []
    with torch.no_grad():
        for i in range(0, 6, 2):
            fr = det(real[i : i + 2], rescale=False, resize=True, return_features=True)
            ff = det(fake[i : i + 2], rescale=False, resize=True, return_features=True)
            assert fr.shape == (2, 400)
            real_stats.update(fr)
            fake_stats.update(ff)
            all_real.append(fr.double().numpy())
            all_fake.append(ff.double().numpy())
    fvd = real_stats.frechet_distance(fake_stats)
    want = frechet_distance_from_features(np.concatenate(all_real), np.concatenate(all_fake))
    assert np.isfinite(fvd) and fvd > 0 and abs(fvd - want) < 1e-6 * max(1.0, want), (fvd, want)
    # a singular 400-dim covariance from 6 clips: sqrtm round-off is relative to the covariance's scale
    assert abs(real_stats.frechet_distance(real_stats)) < 1e-6 * np.trace(real_stats.cov)
