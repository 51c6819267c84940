"""Tier-1 properties of the VidTok model on tiny presets with random weights (no spec files needed).

Causality of the causal encoders, FSQ indices <-> codes round trip, tiled == untiled v1.1 encoding, the
official_state_dict round trip, latent shapes, and gradients through the training forward.
"""

from __future__ import annotations

import pytest
import torch

from vidtok import VidTok
from vidtok.modules.fsq import FSQRegularizer
from vidtok.presets import preset_config

torch.set_num_threads(2)


def randomize(model: VidTok, seed: int) -> VidTok:
    """Redraw every weight like the golden recipe (the official init zeroes temporal conv2, hiding bugs)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("mix_factor"):
                p.copy_(torch.rand(p.shape, generator=g) * 4 - 2)
            elif ".norm." in name:
                lo = 0.5 if name.endswith("weight") else -0.5
                p.copy_(torch.rand(p.shape, generator=g) + lo)
            elif name.endswith("bias"):
                p.copy_(torch.rand(p.shape, generator=g) * 0.4 - 0.2)
            else:
                fan_in = p[0].numel()
                p.copy_(torch.randn(p.shape, generator=g) * 1.4 / fan_in ** 0.5)
    return model.eval()


def video(b: int, t: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand((b, 3, t, h, w), generator=g) * 2 - 1


@pytest.mark.parametrize("preset", ["vidtok_kl_causal_488_4chn_tiny", "vidtok_kl_causal_488_4chn_v1_1_tiny"])
def test_causal_encoder_ignores_future_frames(preset):
    """Changing frames >= 5 leaves the latents of frames 0..4 (latent frames 0, 1) unchanged, v1.0 and v1.1."""
    model = randomize(VidTok.from_config(preset), seed=1)
    x = video(1, 17, 32, 32, seed=2)
    x_future = x.clone()
    x_future[:, :, 5:] = video(1, 12, 32, 32, seed=3)
    with torch.no_grad():
        a, b = model.encode(x).z, model.encode(x_future).z
    torch.testing.assert_close(a[:, :, :2], b[:, :, :2], atol=1e-5, rtol=1e-5)
    assert (a[:, :, 2:] - b[:, :, 2:]).abs().max() > 1e-3, "later latents should depend on the changed frames"


def test_fsq_indices_codes_round_trip():
    """Every id maps to codes and back to itself, and quantized codes map to ids and back to the same codes."""
    fsq = FSQRegularizer([8, 5, 5, 3])
    ids = torch.arange(fsq.codebook_size).reshape(1, -1, 4, 3)
    codes = fsq.indices_to_codes(ids)
    assert torch.equal(fsq.codes_to_indices(codes), ids.to(torch.int32))
    z = torch.randn(2, 4, 3, 4, 4) * 3
    q, idx, _ = fsq(z)
    assert idx.dtype == torch.int32 and idx.shape == (2, 3, 4, 4)
    assert torch.equal(fsq.indices_to_codes(idx).movedim(-1, 1), q)


def test_fsq_channel_zero_is_least_significant_digit():
    """Raising channel 0 by one step adds 1 to the id; raising channel 1 adds levels[0] (§7.1 step 5)."""
    fsq = FSQRegularizer([8, 8, 8])
    base = fsq.indices_to_codes(torch.tensor([0]))
    step0, step1 = base.clone(), base.clone()
    step0[..., 0] += 0.25
    step1[..., 1] += 0.25
    assert fsq.codes_to_indices(step0).item() == 1 and fsq.codes_to_indices(step1).item() == 8


def test_fsq_round_is_half_to_even_with_straight_through_gradient():
    """Bounded values on a .5 tie round to even, and the gradient passes straight through the rounding."""
    fsq = FSQRegularizer([8])
    assert torch.equal(torch.round(torch.tensor([0.5, 1.5, -0.5])), torch.tensor([0.0, 2.0, -0.0]))
    z = torch.randn(1, 1, 2, 3, 3, requires_grad=True)
    codes, _, _ = fsq(z)
    codes.sum().backward()
    assert z.grad is not None and z.grad.abs().sum() > 0


@pytest.mark.parametrize("preset,chunk", [("vidtok_kl_causal_488_4chn_v1_1_tiny", 8),
                                          ("vidtok_fsq_causal_888_32768_v1_1_tiny", 16)])
def test_tiled_encode_equals_untiled_encode(preset, chunk):
    """v1.1 temporal tiling with chunks that are multiples of tdf gives the whole-clip latents (§9)."""
    model = randomize(VidTok.from_config(preset), seed=4)
    x = video(1, 33, 16, 16, seed=5)
    with torch.no_grad():
        whole = model.encode(x).z
        model.use_tiling, model.t_chunk_enc = True, chunk
        tiled = model.encode(x).z
    assert tiled.shape == whole.shape == (1, whole.shape[1], *model.latent_shape(33, 16, 16))
    torch.testing.assert_close(tiled, whole, atol=1e-5, rtol=1e-5)


def test_tiled_decode_keeps_length_and_overlap_changes_chunks():
    """Tiled v1.1 reconstruction keeps T frames; with overlap the chunk seams differ from untiled decoding (§9)."""
    model = randomize(VidTok.from_config("vidtok_kl_causal_488_4chn_v1_1_tiny"), seed=6)
    x = video(1, 33, 16, 16, seed=7)
    with torch.no_grad():
        whole = model.reconstruct(x)
        model.use_tiling, model.t_chunk_enc, model.use_overlap = True, 8, True
        tiled = model.reconstruct(x)
    assert tiled.shape == whole.shape == x.shape
    # 9 latents decode to 36 frames, cropped to the last 33: output frame 0 is the last frame of chunk 0 (latent 0),
    # which has no chunk seam before it; later frames come from chunks with cached left context.
    torch.testing.assert_close(tiled[:, :, :1], whole[:, :, :1], atol=1e-5, rtol=1e-5)
    assert (tiled - whole).abs().max() > 1e-4, "tiled decoding should not equal untiled decoding for tdf 4"


def test_official_state_dict_round_trip():
    """Weights exported with official_state_dict load into a fresh model and give bit-identical outputs."""
    a = randomize(VidTok.from_config("vidtok_fsq_causal_488_32768_tiny"), seed=8)
    b = VidTok.from_config("vidtok_fsq_causal_488_32768_tiny").eval()
    b.load_official_state_dict(a.official_state_dict())
    x = video(1, 9, 16, 16, seed=9)
    with torch.no_grad():
        assert torch.equal(a.encode(x).indices, b.encode(x).indices)
        assert torch.equal(a.reconstruct(x), b.reconstruct(x))


@pytest.mark.parametrize("preset,T", [("vidtok_kl_causal_288_8chn_tiny", 17), ("vidtok_kl_noncausal_41616_4chn_tiny", 16),
                                      ("vidtok_fsq_causal_888_32768_v1_1_tiny", 18), ("vidtok_kl_causal_444_4chn_tiny", 9)])
def test_latent_shape_matches_encode_and_reconstruct_keeps_size(preset, T):
    """latent_shape() predicts the encoder output and reconstruct() returns the input's shape."""
    model = VidTok.from_config(preset).eval()
    x = video(1, T, 32, 32)
    with torch.no_grad():
        enc = model.encode(x)
        rec = model.reconstruct(x)
    assert tuple(enc.latents.shape[2:]) == model.latent_shape(T, 32, 32) == preset_config(preset).latent_shape(T, 32, 32)
    assert enc.latents.shape[1] == model.config.z_channels
    assert rec.shape == x.shape


@pytest.mark.parametrize("preset", ["vidtok_fsq_causal_488_32768_tiny", "vidtok_kl_causal_488_4chn_v1_1_tiny"])
def test_training_forward_returns_losses_and_gradients(preset):
    """training_forward gives recon of the input shape, the regularizer loss, and gradients to the encoder."""
    model = randomize(VidTok.from_config(preset), seed=10).train()
    x = video(1, 9, 16, 16, seed=11)
    latents, recon, reg_log = model.training_forward(x, global_step=0)
    key = "aux_loss" if model.regularizer_kind == "fsq" else "kl_loss"
    assert recon.shape == x.shape and reg_log[key].dim() == 0
    if key == "aux_loss":
        assert reg_log["indices"].shape == (1, *model.latent_shape(9, 16, 16))
    (recon.abs().mean() + reg_log[key]).backward()
    assert model.encoder.conv_in.conv.weight.grad.abs().sum() > 0
    assert model.get_last_layer().grad is not None


def test_training_forward_frozen_encoder_gets_no_gradient():
    """With every encoder parameter frozen (stage 2), the encoder runs without autograd and only the decoder learns."""
    model = randomize(VidTok.from_config("vidtok_kl_causal_488_4chn_tiny"), seed=12).train()
    model.encoder.requires_grad_(False)
    _, recon, _ = model.training_forward(video(1, 9, 16, 16), global_step=4)
    recon.mean().backward()
    assert all(p.grad is None for p in model.encoder.parameters())
    assert model.get_last_layer().grad is not None


def test_fsq_entropy_weight_anneals_from_factor_to_base():
    """The entropy weight ramps linearly from factor*w (0.3) at step 0 to w (0.1) at the annealing step (§7.1)."""
    fsq = FSQRegularizer([8, 8])
    assert fsq.entropy_weight(0) == pytest.approx(0.3)
    assert fsq.entropy_weight(1000) == pytest.approx(0.2)
    assert fsq.entropy_weight(2000) == pytest.approx(0.1) and fsq.entropy_weight(10**6) == pytest.approx(0.1)
