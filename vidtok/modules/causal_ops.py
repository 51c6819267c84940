"""Causal temporal operators of VidTok v1.0 and v1.1 (spec ARCHITECTURE.md §3.3, §3.10, §3.11, §9).

Each class takes `v1_1`:
* v1.0 (`v1_1=False`): temporal front padding with **zeros** (quirk 1); no state.
* v1.1 (`v1_1=True`): the front padding is copies of the **first frame** on the first chunk, or the tail of the
  previous chunk's cache on later chunks (temporal tiling, §9). The state lives in `StreamingState` attributes
  (`is_first_chunk`, `causal_cache`, `cache_offset`), which the engine resets/sets; `store_cache` is our own switch
  so that untiled calls do not keep a copy of every conv input alive (the official code always stores; an untiled
  call never reads it, so outputs are identical).
Parameters are wrapped exactly like the official modules (`<name>.conv.weight`), so keys load unchanged.

Speed (docs/benchmarks.md): the time padding is one `F.pad`/`cat` copy and the symmetric spatial padding is done by the conv
itself (the official code copies the input twice); `CausalConv1d` runs on the channels-last video directly
(`layers.conv_time`); the AlphaBlenders share one padded input between their branches and mix in place
(`layers.alpha_blend`); the x2 nearest temporal up-sampler convolves the low-frame-rate input in two time phases
(`layers.upsample2x_time_blend`, 1.5x fewer FLOPs) when no streaming state is involved.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vidtok.modules.layers import (alpha_blend, avg_pool_time, channels_last, conv3d, conv_time, repeat_time,
                                   upsample2x_time_blend, zero_pad)


class StreamingState:
    """Per-module state of the v1.1 streaming / tiled inference (§9, §10)."""

    def _init_state(self, v1_1: bool) -> None:
        self.v1_1 = v1_1
        self.is_first_chunk = True
        self.causal_cache: torch.Tensor | None = None
        self.cache_offset = 0
        self.store_cache = False

    @property
    def stateless(self) -> bool:
        """True when the front padding depends on `x` alone (v1.0, or an untiled v1.1 call) and no cache is kept."""
        return not self.v1_1 or (self.is_first_chunk and not self.store_cache)

    def _pad_front(self, x: torch.Tensor, n: int) -> torch.Tensor:
        """`x` with `_front(x, n)` prepended along time (dim 2), in one copy that keeps x's memory format."""
        if not self.v1_1:
            return zero_pad(x, (0, 0) * (x.dim() - 3) + (n, 0))
        # cat keeps channels-last only when every piece is channels-last (the front is small).
        return torch.cat([channels_last(self._front(x, n)), x], dim=2)

    def _front(self, x: torch.Tensor, n: int, dim: int = 2) -> torch.Tensor:
        """The `n` frames to prepend along `dim`: zeros (v1.0), first-frame copies or cached frames (v1.1)."""
        if not self.v1_1:
            shape = list(x.shape)
            shape[dim] = n
            return x.new_zeros(shape)
        if self.is_first_chunk:
            return x.narrow(dim, 0, 1).repeat_interleave(n, dim=dim)
        if self.causal_cache is None:
            raise RuntimeError("v1.1 causal module called with is_first_chunk=False but no cache; reset the model "
                               "state through VidTok.encode/decode (spec §9)")
        cache = self.causal_cache
        return cache.narrow(dim, cache.shape[dim] - n, n)

    def _remember(self, padded: torch.Tensor, dim: int = 2) -> None:
        """Store the time-padded input minus its last `cache_offset` frames (§3.3)."""
        if self.v1_1 and self.store_cache:
            keep = padded.shape[dim] - self.cache_offset
            self.causal_cache = padded.narrow(dim, 0, keep) if self.cache_offset else padded


class CausalConv3d(StreamingState, nn.Module):
    """3-D conv with causal time padding and symmetric zero spatial padding; (B, Cin, T, H, W) -> (B, Cout, T', H, W).

    time_pad = (kt-1) + (1-st) frames in front (§3.3): k3 s1 -> 2, k3 s2 -> 1, k1 -> 0.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int,
                 stride: int | tuple[int, int, int] = 1, v1_1: bool = False):
        super().__init__()
        stride = (stride,) * 3 if isinstance(stride, int) else tuple(stride)
        self.time_pad = (kernel_size - 1) + (1 - stride[0])
        # The official code computes the width padding from the height kernel; all kernels are square (§3.3).
        p = (kernel_size - 1) + (1 - stride[1])
        self.spatial_pad = (p // 2, p - p // 2, p // 2, p - p // 2)
        # Symmetric spatial zero padding (every released layer) is done inside the conv: no padded copy.
        inner = (0, p // 2, p // 2) if p % 2 == 0 else 0
        self.conv = nn.Conv3d(in_channels, out_channels, kernel_size, stride=stride, padding=inner)
        self._init_state(v1_1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.time_pad:
            x = self._pad_front(x, self.time_pad)
            self._remember(x)
        return self.conv_padded(x)

    def conv_padded(self, x: torch.Tensor) -> torch.Tensor:
        """The conv on an input that already carries its `time_pad` front frames."""
        if self.spatial_pad[0] != self.spatial_pad[1]:
            x = F.pad(x, self.spatial_pad)
        return conv3d(self.conv, x)


class CausalConv1d(StreamingState, nn.Module):
    """1-D temporal conv, kernel 3, 2 causal front frames; (N, C, T) -> (N, C, T) (§3.3)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, v1_1: bool = False):
        super().__init__()
        self.time_pad = kernel_size - 1
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size)
        self._init_state(v1_1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, T) or, per pixel, a (B, C, T, H, W) video."""
        x = self._pad_front(x, self.time_pad)
        self._remember(x)
        if x.dim() == 5:
            return conv_time(x, self.conv.weight, self.conv.bias)
        return self.conv(x)


class TimeDownsampleResCausal2x(StreamingState, nn.Module):
    """AlphaBlender temporal /2: a*avgpool(front-padded x) + (1-a)*strided causal conv(x), a=sigmoid(mix_factor).

    (B, C, T, H, W) -> (B, C, floor(T/2), H, W) (§3.10). The avg branch's extra front frame is a zero (v1.0) or
    a copy of frame 0 / the cached last padded frame of the previous chunk (v1.1).
    """

    def __init__(self, channels: int, v1_1: bool = False):
        super().__init__()
        self.mix_factor = nn.Parameter(torch.tensor([2.0]))
        self.conv = CausalConv3d(channels, channels, 3, stride=(2, 1, 1), v1_1=v1_1)
        self._init_state(v1_1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        stateless = self.stateless and self.conv.stateless
        padded = self._pad_front(x, 1)
        if self.v1_1 and self.store_cache:
            self.causal_cache = padded[:, :, -1:]
        x1 = avg_pool_time(padded, 3, 2)
        # The conv's own front frame (time_pad 1) is the same zero / first-frame copy: reuse this padded input.
        x2 = self.conv.conv_padded(padded) if stateless else self.conv(x)
        del padded
        return alpha_blend(x1, x2, self.mix_factor)


class TimeUpsampleResCausal2x(StreamingState, nn.Module):
    """AlphaBlender temporal x2: u = up2_t(x); out = a*u + (1-a)*causal_conv(u); (B,C,T,H,W) -> (B,C,2T,H,W) (§3.11).

    v1.0: nearest. v1.1 'trilinear': the first `num_temp_upsample` (= n) frames, all from latent frame 0, are
    interpolated apart from the rest on the first chunk; later chunks prepend the n cached frames, interpolate
    everything and drop the first 2n outputs. The new cache is positions -2n..-n-1 (§3.11, quirk 5).
    """

    def __init__(self, channels: int, v1_1: bool = False, interpolation_mode: str = "nearest",
                 num_temp_upsample: int = 1):
        super().__init__()
        self.mix_factor = nn.Parameter(torch.tensor([2.0]))
        self.conv = CausalConv3d(channels, channels, 3, stride=1, v1_1=v1_1)
        self.interpolation_mode = interpolation_mode if v1_1 else "nearest"
        self.num_temp_upsample = num_temp_upsample
        self._init_state(v1_1)

    @staticmethod
    def _trilinear(seg: torch.Tensor) -> torch.Tensor:
        # F.interpolate itself, per segment: a hand-written 0.25/0.75 blend differs by 1 ulp (§3.11 rounding).
        out = F.interpolate(seg.float(), scale_factor=(2.0, 1.0, 1.0), mode="trilinear", align_corners=False)
        return out.to(seg.dtype)

    def _upsample(self, x: torch.Tensor) -> torch.Tensor:
        if self.interpolation_mode == "nearest":
            return repeat_time(x, 2)  # exact nearest x2 in time, equal to the float32 interpolate
        n = self.num_temp_upsample
        if self.is_first_chunk:
            head, rest = x[:, :, :n], x[:, :, n:]
            parts = [self._trilinear(head)]
            if rest.shape[2] > 0:  # an empty remainder is skipped, not interpolated (§3.11)
                parts.append(self._trilinear(rest))
            if self.store_cache:
                self.causal_cache = x[:, :, -n:]
            return torch.cat(parts, dim=2)
        if self.causal_cache is None:
            raise RuntimeError("v1.1 temporal up-sampler called with is_first_chunk=False but no cache (spec §9)")
        seq = torch.cat([self.causal_cache, x], dim=2)
        if self.store_cache:
            self.causal_cache = seq[:, :, seq.shape[2] - 2 * n: seq.shape[2] - n]
        return self._trilinear(seq)[:, :, 2 * n:]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.interpolation_mode == "nearest" and self.stateless and self.conv.stateless:
            # u's two front frames are copies of one front frame of x: the phase form on x (layers docs)
            conv = self.conv.conv
            return upsample2x_time_blend(self._pad_front(x, 1), x, conv.weight, conv.bias, self.mix_factor, "causal")
        u = self._upsample(x)
        return alpha_blend(u, self.conv(u), self.mix_factor)
