"""Input checks for the public `VidTok` API: every failure is a ValueError that states the rule (expected/found).

Frame-count rules (spec ARCHITECTURE.md §6):
* causal v1.0 keeps the length only for T = 1 + k*tdf (T=16 gives 13 frames);
* non-causal needs T divisible by tdf (otherwise frames are silently dropped);
* causal v1.1 accepts any T >= 1 (the engine crops back to T).
`strict=False` skips the frame-count and size rules, for reproducing official quirks on purpose.
"""

from __future__ import annotations

import torch

from vidtok.config import VidTokConfig

RANGE_TOLERANCE = 1e-3


def check_video(x: torch.Tensor, cfg: VidTokConfig, strict: bool = True) -> None:
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"expected video as a torch.Tensor (B, 3, T, H, W), found {type(x).__name__}")
    if x.dim() != 5:
        raise ValueError(f"expected video of rank 5 (B, {cfg.in_channels}, T, H, W), found shape {tuple(x.shape)}")
    if x.shape[1] != cfg.in_channels:
        raise ValueError(f"expected {cfg.in_channels} channels in dim 1 (B, C, T, H, W), found shape "
                         f"{tuple(x.shape)}; channels-last input must be permuted first")
    if not x.is_floating_point():
        raise ValueError(f"expected a floating-point video in [-1, 1], found dtype {x.dtype}; convert uint8 "
                         "frames with x.float() / 127.5 - 1")
    if x.numel() == 0:
        raise ValueError(f"expected a non-empty video, found shape {tuple(x.shape)}")
    lo, hi = torch.aminmax(x.detach())
    lo, hi = float(lo), float(hi)
    if lo < -1 - RANGE_TOLERANCE or hi > 1 + RANGE_TOLERANCE or lo != lo or hi != hi:
        raise ValueError(f"expected video values in [-1, 1] (tolerance {RANGE_TOLERANCE}), found min {lo:.4g} "
                         f"max {hi:.4g}; normalise uint8 frames as p/127.5 - 1")
    if not strict:
        return
    T, H, W = x.shape[2:]
    tdf, sf = cfg.time_downsample_factor, cfg.spatial_factor
    if cfg.family == "causal_v1_0" and T % tdf != 1 % tdf:
        raise ValueError(f"causal v1.0 models need T = 1 + k*{tdf} frames (e.g. {1 + 4 * tdf}) to keep the length, "
                         f"found T={T}; pass strict=False to get the official behaviour anyway (spec §6)")
    if cfg.family == "noncausal" and T % tdf:
        raise ValueError(f"non-causal models need T divisible by time_downsample_factor={tdf} (e.g. 16), found T={T}")
    if H % sf or W % sf:
        raise ValueError(f"expected H and W divisible by the spatial factor {sf}, found H={H} W={W}; crop or resize "
                         "(otherwise the reconstruction size differs)")


def check_latents(latents: torch.Tensor, cfg: VidTokConfig) -> None:
    if not isinstance(latents, torch.Tensor) or latents.dim() != 5 or latents.shape[1] != cfg.z_channels:
        shape = tuple(latents.shape) if isinstance(latents, torch.Tensor) else type(latents).__name__
        raise ValueError(f"expected latents of shape (B, {cfg.z_channels}, t, h, w), found {shape}")
    if not latents.is_floating_point():
        raise ValueError(f"expected floating-point latents, found dtype {latents.dtype}; for FSQ token ids use "
                         "decode_indices")


def check_indices(indices: torch.Tensor, cfg: VidTokConfig) -> None:
    if cfg.regularizer != "fsq":
        raise ValueError("decode_indices needs an FSQ model; this model uses the KL regularizer (decode latents)")
    if not isinstance(indices, torch.Tensor) or indices.dim() != 4:
        shape = tuple(indices.shape) if isinstance(indices, torch.Tensor) else type(indices).__name__
        raise ValueError(f"expected token ids of shape (B, t, h, w), found {shape}")
    if indices.is_floating_point() or indices.dtype == torch.bool:
        raise ValueError(f"expected integer token ids, found dtype {indices.dtype}")
    lo, hi = int(indices.min()), int(indices.max())
    if lo < 0 or hi >= cfg.codebook_size:
        raise ValueError(f"expected token ids in [0, {cfg.codebook_size}), found min {lo} max {hi}")
