"""VidTok training losses (spec §11): formulas of each term, disc_start gating and step counting, official key layout.

LPIPS always uses a random VGG16 backbone here (passed explicitly); nothing is downloaded.
"""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vidtok.losses import (
    LeCamEMA,
    LossConfig,
    NLayerDiscriminator,
    NLayerDiscriminator3D,
    VGG16WeightsNotFound,
    VidTokLoss,
    build_lpips,
    find_vgg16_weights,
    to_frames,
)
from vidtok.train_step import lightning_global_step

torch.set_num_threads(1)


def _video(b=2, t=3, h=32, w=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 3, t, h, w, generator=g) * 2 - 1


def _official_keys(spec_dir, kind: str, prefix: str) -> dict:
    d = json.loads((spec_dir / "manifests" / "_loss_module_keys.json").read_text())[kind]["state_dict"]
    return {k[len(prefix):]: v for k, v in d.items() if k.startswith(prefix)}


@pytest.mark.parametrize("kind,cls", [("2d", NLayerDiscriminator), ("3d", NLayerDiscriminator3D)])
def test_discriminator_state_dict_matches_official(spec_dir, kind, cls):
    """2-D and 3-D PatchGAN keys and shapes equal the official `loss.discriminator.*` entries."""
    want = _official_keys(spec_dir, kind, "loss.discriminator.")
    got = {k: list(v.shape) for k, v in cls().state_dict().items()}
    assert got == want
    n = sum(p.numel() for p in cls().parameters())
    assert n == json.loads((spec_dir / "manifests" / "_loss_module_keys.json").read_text())[kind]["params_discriminator"]


def test_lpips_state_dict_matches_official_and_is_a_distance(spec_dir):
    """The LPIPS module has the official `loss.perceptual_loss.*` keys; d(x, x) = 0 < d(x, y); all frozen."""
    m = build_lpips(random_backbone=True)
    want = _official_keys(spec_dir, "2d", "loss.perceptual_loss.")
    got = {k: list(v.shape) for k, v in m.state_dict().items()}
    assert got == want
    assert not any(p.requires_grad for p in m.parameters())
    x, y = to_frames(_video()), to_frames(_video(seed=1))
    assert m(x, x).abs().max() < 1e-6
    assert (m(x, y) > 0).all()


def test_lpips_missing_backbone_says_where_to_put_it(tmp_path, monkeypatch):
    """Without a local VGG16 file the error names the torch-hub cache path; nothing is downloaded."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.delenv("VIDTOK_VGG16_PATH", raising=False)
    with pytest.raises(VGG16WeightsNotFound, match="vgg16-397923af.pth") as e:
        find_vgg16_weights()
    assert str(tmp_path) in str(e.value)


def test_lpips_loads_local_backbone_file(tmp_path):
    """A torchvision-layout VGG16 file is copied into the LPIPS trunk (relu1_2 … relu5_3 slices)."""
    import torchvision

    feats = torchvision.models.vgg16(weights=None).features
    state = {f"features.{k}": v for k, v in feats.state_dict().items()}
    path = tmp_path / "vgg16.pth"
    torch.save(state, path)
    m = build_lpips(backbone_path=path)
    torch.testing.assert_close(m.net.slice1[0].weight, state["features.0.weight"], rtol=0, atol=0)
    torch.testing.assert_close(m.net.slice5._modules["28"].bias, state["features.28.bias"], rtol=0, atol=0)


class _TinyDecoder(nn.Module):
    """A real (small) last layer so the adaptive weight has a parameter to differentiate against."""

    def __init__(self):
        super().__init__()
        self.conv_out = nn.Conv3d(4, 3, 3, padding=1)

    def forward(self, z):
        return self.conv_out(z)


def _loss(**kw) -> VidTokLoss:
    base = dict(perceptual_weight=0.0, disc_ndf=8, disc_start=5)
    base.update(kw)
    torch.manual_seed(0)
    return VidTokLoss(LossConfig(**base))


def test_generator_nll_matches_formula():
    """nll = Σ(|x−x̂|/e^logvar + logvar) / (B·T): summed over C,H,W, averaged over frames (spec §11.2)."""
    loss = _loss()
    with torch.no_grad():
        loss.logvar.fill_(0.3)
    x, r = _video(), _video(seed=1)
    total, logs = loss.generator_loss(x, r, {}, global_step=0)
    expected = ((x - r).abs() / torch.exp(torch.tensor(0.3)) + 0.3).sum() / (2 * 3)
    torch.testing.assert_close(logs["nll_loss"], expected)
    torch.testing.assert_close(total, expected)  # before disc_start and without reg terms: loss == nll


def test_generator_perceptual_term_added_per_frame():
    """With LPIPS on, rec = |x−x̂| + w·LPIPS(frame) broadcast over each frame's pixels."""
    loss = _loss(perceptual_weight=0.5, lpips_random_backbone=True).eval()
    x, r = _video(), _video(seed=1)
    _, logs = loss.generator_loss(x, r, {}, global_step=0)
    p = loss.perceptual_loss(to_frames(x), to_frames(r)).reshape(-1)
    expected = ((to_frames(x) - to_frames(r)).abs().sum(dim=(1, 2, 3)) + 0.5 * p * 3 * 32 * 32).sum() / 6
    torch.testing.assert_close(logs["nll_loss"], expected, rtol=1e-5, atol=1e-3)


def test_generator_gan_term_gated_by_disc_start_and_adaptive_weight():
    """Before disc_start the GAN term is off; from disc_start loss = nll + d_weight·g_loss with the adaptive weight."""
    loss = _loss(disc_start=5)
    dec = _TinyDecoder()
    z = torch.randn(2, 4, 3, 32, 32)
    x = _video()
    recon = dec(z)
    before, logs0 = loss.generator_loss(x, recon, {}, global_step=4, last_layer=dec.conv_out.weight)
    assert logs0["disc_factor"] == 0 and logs0["d_weight"] == 0
    torch.testing.assert_close(before, logs0["nll_loss"])

    after, logs1 = loss.generator_loss(x, recon, {}, global_step=5, last_layer=dec.conv_out.weight)
    nll = loss.nll_loss((to_frames(x) - to_frames(recon)).abs())
    logits = loss.discriminator(to_frames(recon))
    g = F.softplus(-logits.reshape(logits.shape[0], -1).mean(1)).mean()  # cross-entropy on per-sample mean logit
    gn = torch.autograd.grad(nll, dec.conv_out.weight, retain_graph=True)[0].norm()
    gg = torch.autograd.grad(g, dec.conv_out.weight, retain_graph=True)[0].norm()
    d_weight = torch.clamp(gn / (gg + 1e-4), 0, 1e4) * 0.2
    torch.testing.assert_close(logs1["g_loss"], g.detach())
    torch.testing.assert_close(logs1["d_weight"], d_weight.detach(), rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(after, (nll + d_weight * g).detach(), rtol=1e-5, atol=1e-5)


def test_regularization_weights_apply_to_reported_terms():
    """FSQ aux_loss counts ×1.0 and KL kl_loss ×1e-6 (released regularization_weights)."""
    loss = _loss()
    x, r = _video(), _video(seed=1)
    base, _ = loss.generator_loss(x, r, {}, 0)
    with_aux, logs = loss.generator_loss(x, r, {"aux_loss": torch.tensor(2.5), "indices": torch.zeros(1, 2)}, 0)
    with_kl, _ = loss.generator_loss(x, r, {"kl_loss": torch.tensor(1e6)}, 0)
    torch.testing.assert_close(with_aux - base, torch.tensor(2.5))
    torch.testing.assert_close(with_kl - base, torch.tensor(1.0), rtol=0, atol=2e-3)  # float32 on a ~1e3 sum
    assert logs["aux_loss"] == 2.5


def test_discriminator_hinge_and_lecam_ema_order():
    """d_loss = disc_factor·(0.005·LeCam + hinge); the LeCam EMA updates first, even before disc_start."""
    loss = _loss(disc_start=5)
    x, r = _video(), _video(seed=1)
    d0, logs0 = loss.discriminator_loss(x, r, global_step=0)
    assert float(d0) == 0.0
    real_ema, fake_ema = loss.lecam.logits_real_ema, loss.lecam.logits_fake_ema
    assert real_ema != 0.0 and fake_ema != 0.0  # updated although disc_factor was 0
    loss.eval()  # fixed BatchNorm statistics, so the logits below equal those inside the call
    ema = LeCamEMA()
    ema.load_state_dict(loss.lecam.state_dict())
    lr, lf = loss.discriminator(to_frames(x)), loss.discriminator(to_frames(r))
    ema.update(lr, lf)
    hinge = 0.5 * (F.relu(1 - lr).mean() + F.relu(1 + lf).mean())
    reg = F.relu(lr - ema.logits_fake_ema).pow(2).mean() + F.relu(ema.logits_real_ema - lf).pow(2).mean()
    d1, logs1 = loss.discriminator_loss(x, r, global_step=5)
    torch.testing.assert_close(d1, (0.005 * reg + hinge).detach(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(logs1["lecam_loss"], reg.detach(), rtol=1e-5, atol=1e-6)


def test_three_d_discriminator_sees_whole_clips():
    """disc_type=3d judges (B, 3, T, H, W) clips: one logit map per sample, not per frame."""
    loss = _loss(disc_type="3d")
    x, r = _video(t=5), _video(t=5, seed=1)
    total, logs = loss.generator_loss(x, r, {}, global_step=10)
    assert loss.discriminator(x).shape[0] == 2 and torch.isfinite(total)
    d, _ = loss.discriminator_loss(x, r, global_step=10)
    assert torch.isfinite(d) and d > 0


def test_step_counting_keeps_published_disc_start_meaning():
    """2 Lightning steps per batch: disc_start=20001 turns the GAN on for the generator at batch 10001 (spec §11.6)."""
    assert lightning_global_step(0, "generator") == 0
    assert lightning_global_step(0, "discriminator") == 1
    first_g = next(b for b in range(20000) if lightning_global_step(b, "generator") >= 20001)
    first_d = next(b for b in range(20000) if lightning_global_step(b, "discriminator") >= 20001)
    assert (first_g, first_d) == (10001, 10000)


def test_loss_config_rejects_unknown_choice():
    """A bad disc_type names the field and the valid choices."""
    with pytest.raises(ValueError, match="disc_type"):
        LossConfig(disc_type="4d")
