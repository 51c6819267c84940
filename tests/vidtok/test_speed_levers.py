"""The issue-14 speed levers change no values: in-place/no-grad paths equal the autograd paths, channels-last helpers
equal the plain ops they replace, and the opt-in compiled encoder equals eager (tiny presets, CPU)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import vidtok
from tests.vidtok.test_properties import randomize, video
from vidtok import VidTok
from vidtok.modules.layers import (TemporalConv1d, alpha_blend, avg_pool_time, channels_last, repeat_time,
                                   upsample2x_conv2d, upsample2x_time_blend, zero_pad)

torch.set_num_threads(2)

FAMILIES = ["vidtok_fsq_causal_488_32768_tiny", "vidtok_kl_causal_488_4chn_v1_1_tiny",
            "vidtok_fsq_noncausal_488_262144_tiny", "vidtok_kl_causal_41616_4chn_tiny",
            "vidtok_fsq_causal_888_32768_v1_1_tiny"]


def _close(a: torch.Tensor, b: torch.Tensor, name: str, atol: float = 2e-5) -> None:
    d = (a.detach() - b.detach()).abs()
    torch.testing.assert_close(a.detach(), b.detach(), atol=atol, rtol=1e-5,
                               msg=lambda m: f"{name}: max diff {d.max():.3e}, mean {d.mean():.3e}\n{m}")


@pytest.mark.parametrize("preset", FAMILIES)
def test_inference_paths_equal_autograd_paths(preset):
    """encode/decode under inference_mode (in-place, fused paths) equal the same calls recorded by autograd."""
    model = randomize(VidTok.from_config(preset), seed=3)
    x = video(1, 16 if "noncausal" in preset else 17, 32, 32, seed=4)
    with torch.inference_mode():
        enc = model.encode(x)
        dec = model.decode(enc.latents)
    with torch.enable_grad():
        enc_g = model.encode(x)
        dec_g = model.decode(enc.latents.clone())
    assert enc_g.z.requires_grad and dec_g.requires_grad, "the grad path should record autograd history"
    _close(enc.z, enc_g.z, "z")
    _close(dec, dec_g, "decoded video")
    if enc.indices is not None:
        assert torch.equal(enc.indices, enc_g.indices)
    assert enc.z.is_contiguous() and dec.is_contiguous(), "public outputs stay in the default memory layout"


def test_channels_last_input_gives_same_outputs():
    """A channels-last input video encodes like the same video in default layout."""
    model = randomize(VidTok.from_config("vidtok_kl_causal_488_4chn_tiny"), seed=5)
    x = video(2, 17, 32, 32, seed=6)
    with torch.no_grad():
        a = model.encode(x).z
        b = model.encode(x.contiguous(memory_format=torch.channels_last_3d)).z
    _close(a, b, "z", atol=1e-6)


def test_channels_last_helpers_equal_plain_ops():
    """zero_pad, avg_pool_time, repeat_time, alpha_blend and the 5-D TemporalConv1d equal the ops they replace."""
    g = torch.Generator().manual_seed(0)
    x = channels_last(torch.randn(2, 6, 5, 4, 3, generator=g))
    with torch.no_grad():
        for pad in [(0, 0, 0, 0, 2, 0), (0, 1, 0, 1), (1, 1, 1, 1, 2, 1)]:
            assert torch.equal(zero_pad(x, pad), F.pad(x, pad)), pad
        assert torch.equal(avg_pool_time(x, 3, 2), F.avg_pool3d(x, (3, 1, 1), (2, 1, 1)))
        assert torch.equal(repeat_time(x, 2), x.repeat_interleave(2, dim=2))
        y = torch.randn(x.shape, generator=g)
        m = torch.tensor([0.7])
        a = torch.sigmoid(m)
        _close(alpha_blend(x, y.clone(), m), a * x + (1 - a) * y, "alpha_blend", atol=1e-6)
        conv = TemporalConv1d(6, 6, 3, padding=1)
        b, c, t, h, w = x.shape
        per_pixel = conv(x.permute(0, 3, 4, 1, 2).reshape(b * h * w, c, t)).reshape(b, h, w, c, t)
        _close(conv(x), per_pixel.permute(0, 3, 4, 1, 2), "TemporalConv1d", atol=1e-6)


def test_set_cudnn_benchmark_returns_previous_and_keeps_outputs():
    """The helper sets the flag, returns the old value, and changes nothing on the CPU."""
    model = randomize(VidTok.from_config("vidtok_fsq_causal_488_32768_tiny"), seed=7)
    x = video(1, 17, 32, 32, seed=8)
    with torch.no_grad():
        ref = model.encode(x).z
        old = vidtok.set_cudnn_benchmark(True)
        try:
            assert torch.backends.cudnn.benchmark is True
            assert torch.equal(model.encode(x).z, ref)
        finally:
            assert vidtok.set_cudnn_benchmark(old) is True
    assert torch.backends.cudnn.benchmark == old


def test_compile_encoder_rejects_unknown_mode():
    """A typo in the mode names the valid choices."""
    model = VidTok.from_config("vidtok_fsq_causal_488_32768_tiny")
    with pytest.raises(ValueError, match="max-autotune"):
        vidtok.compile_encoder(model, mode="fastest")


@pytest.mark.slow
def test_compile_encoder_matches_eager():
    """The inductor-compiled encoder gives the eager z (float tolerance) and the same FSQ ids on the CPU."""
    model = randomize(VidTok.from_config("vidtok_fsq_causal_488_32768_tiny"), seed=9)
    x = video(1, 17, 32, 32, seed=10)
    with torch.inference_mode():
        ref = model.encode(x)
        vidtok.compile_encoder(model, mode="default")
        out = model.encode(x)
    _close(out.z, ref.z, "compiled z", atol=1e-4)
    assert torch.equal(out.indices, ref.indices)


def test_inplace_helpers_keep_autocast_dtype_promotion():
    """A bf16 branch added to / mixed with a float32 tensor gives float32, in place or not (like `x + h`)."""
    from vidtok.modules.layers import residual_add

    x, h = torch.randn(4), torch.randn(4).bfloat16()
    with torch.no_grad():
        assert residual_add(h.clone(), x).dtype == torch.float32
        assert alpha_blend(x, h.clone(), torch.tensor([0.3])).dtype == torch.float32


@pytest.mark.parametrize("mode", ["same", "causal_zero", "causal_first"])
def test_phase_convs_equal_upsample_then_conv(mode):
    """Nearest x2 then a k3 conv, computed on the low-resolution input, equals building u and convolving it."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 6, 4, 5, 7, generator=g).contiguous(memory_format=torch.channels_last_3d)
    w, b = torch.randn(6, 6, 3, 3, 3, generator=g), torch.randn(6, generator=g)  # the blend needs Cout = C
    mix = torch.tensor([0.7])
    # spatial: per frame (N, C, H, W)
    frames = x[:, :, 0]
    ref2 = F.conv2d(F.interpolate(frames, scale_factor=2.0, mode="nearest"), w[:, :, 1], b, padding=1)
    _close(upsample2x_conv2d(frames, w[:, :, 1], b), ref2, "spatial phases", atol=1e-5)
    # temporal AlphaBlender: u = nearest x2 in time, time padding of the mode
    u = x.repeat_interleave(2, dim=2)
    if mode == "same":
        ref_conv = F.conv3d(u, w, b, padding=1)
        padded = F.pad(x, (0, 0, 0, 0, 1, 1))
    else:
        front = torch.zeros_like(x[:, :, :1]) if mode == "causal_zero" else x[:, :, :1]
        ref_conv = F.conv3d(torch.cat([front, front, u], 2), w, b, padding=(0, 1, 1))
        padded = torch.cat([front, x], 2)
    alpha = torch.sigmoid(mix)
    ref = alpha * u + (1 - alpha) * ref_conv
    out = upsample2x_time_blend(padded, x, w, b, mix, "same" if mode == "same" else "causal")
    _close(out, ref, f"temporal phases ({mode})", atol=1e-5)
    assert out.is_contiguous(memory_format=torch.channels_last_3d)


def test_phase_convs_train_like_upsample_then_conv():
    """Under autograd (training) the phase form gives the gradients of the up-sample-then-conv form."""
    g = torch.Generator().manual_seed(2)
    x0 = torch.randn(2, 4, 3, 5, 6, generator=g)
    w0, b0 = torch.randn(4, 4, 3, 3, 3, generator=g), torch.randn(4, generator=g)
    grads = []
    for phase_form in (True, False):
        x, w, b = (t.clone().requires_grad_() for t in (x0, w0, b0))
        mix = torch.tensor([0.3], requires_grad=True)
        if phase_form:
            y = upsample2x_time_blend(F.pad(x, (0, 0, 0, 0, 1, 1)), x, w, b, mix, "same")
            s = upsample2x_conv2d(x[:, :, 0], w[:, :, 1], b)
        else:
            u = x.repeat_interleave(2, dim=2)
            y = torch.lerp(F.conv3d(u, w, b, padding=1), u, torch.sigmoid(mix))
            s = F.conv2d(F.interpolate(x[:, :, 0], scale_factor=2.0), w[:, :, 1], b, padding=1)
        loss = sum((t * torch.linspace(-1, 1, t.numel()).view_as(t)).sum() for t in (y, s))
        loss.backward()
        grads.append([t.grad for t in (x, w, b, mix)])
    for name, got, want in zip("x w b mix".split(), *grads):
        _close(got, want, f"grad {name}", atol=1e-4)
