"""Building blocks shared by the causal and non-causal VidTok models (spec ARCHITECTURE.md §3).

VidTok factorises space and time: 2-D blocks run per frame on `(B*T, C, H, W)`, 1-D temporal blocks run per
pixel on `(B*H*W, C, T)`. Module and attribute names match the official ones (`norm1.norm`, `conv1`,
`nin_shortcut`, `downsample.conv`, ...) so official state-dict keys load without any renaming.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn


def nonlinearity(x: torch.Tensor) -> torch.Tensor:
    """SiLU, x*sigmoid(x) (§3.2)."""
    return F.silu(x)


class Normalize(nn.Module):
    """LayerNorm over the channel axis (dim 1) at every other position, eps 1e-6 (§3.1).

    The child is called `norm` because the official wrapper is, giving keys `<name>.norm.weight`.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.norm = nn.LayerNorm(channels, eps=1e-6, elementwise_affine=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.movedim(1, -1)).movedim(-1, 1)


def to_frames(x: torch.Tensor) -> torch.Tensor:
    """(B, C, T, H, W) -> (B*T, C, H, W), batch-major order b*T + t (§3.6)."""
    b, c, t, h, w = x.shape
    return x.transpose(1, 2).reshape(b * t, c, h, w)


def from_frames(x: torch.Tensor, b: int) -> torch.Tensor:
    """(B*T, C, H, W) -> (B, C, T, H, W)."""
    bt, c, h, w = x.shape
    return x.reshape(b, bt // b, c, h, w).transpose(1, 2)


def to_pixels(x: torch.Tensor) -> torch.Tensor:
    """(B, C, T, H, W) -> (B*H*W, C, T), order (b*H + y)*W + x (§3.6)."""
    b, c, t, h, w = x.shape
    return x.permute(0, 3, 4, 1, 2).reshape(b * h * w, c, t)


def from_pixels(x: torch.Tensor, b: int, h: int, w: int) -> torch.Tensor:
    """(B*H*W, C, T) -> (B, C, T, H, W)."""
    _, c, t = x.shape
    return x.reshape(b, h, w, c, t).permute(0, 3, 4, 1, 2)


def per_frame(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Apply a 2-D module to every frame of a (B, C, T, H, W) video."""
    return from_frames(module(to_frames(x)), x.shape[0])


def per_pixel(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Apply a 1-D temporal module to every pixel of a (B, C, T, H, W) video."""
    b, _, _, h, w = x.shape
    return from_pixels(module(to_pixels(x)), b, h, w)


def spatial_temporal_resblk(x: torch.Tensor, block_2d: nn.Module, block_1d: nn.Module) -> torch.Tensor:
    """One resblock step: the 2-D block per frame (may change width), then the 1-D block per pixel (§3.6)."""
    return per_pixel(block_1d, per_frame(block_2d, x))


class ResnetBlock(nn.Module):
    """Spatial 2-D ResNet block on (N, Cin, H, W) -> (N, Cout, H, W) (§3.4)."""

    def __init__(self, in_channels: int, out_channels: int, dropout: float = 0.0):
        super().__init__()
        self.norm1 = Normalize(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = Normalize(out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        if in_channels != out_channels:
            self.nin_shortcut = nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(nonlinearity(self.norm1(x)))
        h = self.conv2(self.dropout(nonlinearity(self.norm2(h))))
        if hasattr(self, "nin_shortcut"):
            x = self.nin_shortcut(x)
        return x + h


class ResnetBlock3D(nn.Module):
    """Same-width ResNet block: LN -> SiLU -> conv -> LN -> SiLU -> conv, plus the input. Mid-block 3-D ResNet on
    (B, C, T, H, W) (§3.7); `conv_factory(C)` builds each conv (3x3x3, causal or "same")."""

    def __init__(self, channels: int, conv_factory: Callable[[int], nn.Module], dropout: float = 0.0):
        super().__init__()
        self.norm1 = Normalize(channels)
        self.conv1 = conv_factory(channels)
        self.norm2 = Normalize(channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = conv_factory(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(nonlinearity(self.norm1(x)))
        h = self.conv2(self.dropout(nonlinearity(self.norm2(h))))
        return x + h


class ResnetBlock1D(ResnetBlock3D):
    """Temporal 1-D ResNet block on (N, C, T), width unchanged (§3.5): the same computation with kernel-3 1-D convs
    from `conv_factory(C)`. The official init zeroes conv2 (identity block); loading a checkpoint overwrites it."""

    def __init__(self, channels: int, conv_factory: Callable[[int], nn.Module], dropout: float = 0.0):
        super().__init__(channels, conv_factory, dropout)
        _zero_init(self.conv2)


class AttnBlock(nn.Module):
    """Mid attention: one head of width C over the H*W positions of each frame separately (§3.8).

    `conv_factory(C)` builds the 1x1x1 q/k/v/proj_out convs (CausalConv3d k1 or Conv3d k1).
    """

    def __init__(self, channels: int, conv_factory: Callable[[int], nn.Module]):
        super().__init__()
        self.norm = Normalize(channels)
        self.q = conv_factory(channels)
        self.k = conv_factory(channels)
        self.v = conv_factory(channels)
        self.proj_out = conv_factory(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(x)
        b, c, t, hh, ww = h.shape

        def tokens(y: torch.Tensor) -> torch.Tensor:  # (B, C, T, H, W) -> (B, T, H*W, C); T acts as the head axis
            return y.permute(0, 2, 3, 4, 1).reshape(b, t, hh * ww, c)

        out = F.scaled_dot_product_attention(tokens(self.q(h)), tokens(self.k(h)), tokens(self.v(h)))
        out = out.reshape(b, t, hh, ww, c).permute(0, 4, 1, 2, 3)
        return x + self.proj_out(out)


class Downsample(nn.Module):
    """Per-frame spatial /2: zero-pad one column right and one row bottom, Conv2d 3x3 stride 2 (§3.9, quirk 8)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    """Per-frame spatial x2: nearest (computed in float32, §10), then Conv2d 3x3 (§3.9)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        up = F.interpolate(x.float(), scale_factor=2.0, mode="nearest").to(x.dtype)
        return self.conv(up)


def _zero_init(module: nn.Module) -> None:
    for p in module.parameters():
        nn.init.zeros_(p)
