"""Non-causal VidTok encoder and decoder (spec ARCHITECTURE.md §2.1, §3.10-3.11, §4.2, §5.2).

Official classes: `vidtok.modules.model_3dnoncausal.Encoder3D` / `Decoder3D`. "Same" convolutions everywhere
(Conv3d k3 p1, Conv1d k3 p1). Down-sampling levels are hard-coded: spatial at every level but the last, temporal at
[L-2, L-3]; up-sampling spatial at every level but 0, temporal at [1, 2]. `spatial_ds`/`tempo_ds` config keys and
`time_downsample_factor` are ignored, like the official code. Keys have no inner `.conv` (e.g. `conv_in.weight`).
Activations are channels-last from input to output (see `layers`); results are returned contiguous.
"""

from __future__ import annotations

import torch
from torch import nn

from vidtok.config import VidTokConfig
from vidtok.modules.layers import (AttnBlock, Downsample, Normalize, ResnetBlock, ResnetBlock1D, ResnetBlock3D,
                                   TemporalConv1d, Upsample, alpha_blend, avg_pool_time, channels_last, conv3d,
                                   norm_act, per_frame, upsample2x_time_blend, zero_pad)


def _conv3(c: int) -> nn.Module:
    return nn.Conv3d(c, c, 3, padding=1)


def _conv1d(c: int) -> nn.Module:
    return TemporalConv1d(c, c, 3, padding=1)


def _mid(channels: int, dropout: float) -> nn.Module:
    mid = nn.Module()
    mid.block_1 = ResnetBlock3D(channels, _conv3, dropout)
    mid.attn_1 = AttnBlock(channels, lambda c: nn.Conv3d(c, c, 1))
    mid.block_2 = ResnetBlock3D(channels, _conv3, dropout)
    return mid


class TimeDownsampleRes2x(nn.Module):
    """Temporal /2: append one zero frame at the END, a*avgpool + (1-a)*Conv3d(k3, stride (2,1,1), pad (0,1,1)).

    (B, C, T, H, W) -> (B, C, floor(T/2), H, W) (§3.10, quirk 4).
    """

    def __init__(self, channels: int):
        super().__init__()
        self.mix_factor = nn.Parameter(torch.tensor([2.0]))
        self.conv = nn.Conv3d(channels, channels, 3, stride=(2, 1, 1), padding=(0, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        padded = zero_pad(x, (0, 0, 0, 0, 0, 1))
        x1 = avg_pool_time(padded, 3, 2)
        return alpha_blend(x1, conv3d(self.conv, padded), self.mix_factor)


class TimeUpsampleRes2x(nn.Module):
    """Temporal x2: u = nearest x2 in time; a*u + (1-a)*Conv3d k3 p1 (u); (B,C,T,H,W) -> (B,C,2T,H,W) (§3.11)."""

    def __init__(self, channels: int):
        super().__init__()
        self.mix_factor = nn.Parameter(torch.tensor([2.0]))
        self.conv = nn.Conv3d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        padded = zero_pad(channels_last(x), (0, 0, 0, 0, 1, 1))  # u's zero frame each side = one of x's
        return upsample2x_time_blend(padded, x, self.conv.weight, self.conv.bias, self.mix_factor, "same")


class NonCausalEncoder(nn.Module):
    """(B, in_channels, T, H, W) in [-1, 1] -> z (B, 2*z_channels | z_channels, floor(T/tdf), h, w)."""

    def __init__(self, cfg: VidTokConfig):
        super().__init__()
        ch, L = cfg.ch, cfg.num_levels
        self.conv_in = nn.Conv3d(cfg.in_channels, ch, 3, padding=1)
        in_ch_mult = (1,) + tuple(cfg.ch_mult)
        tempo = cfg.encoder_tempo_levels()
        self.down, self.down_temporal = nn.ModuleList(), nn.ModuleList()
        block_in = ch
        for i, mult in enumerate(cfg.ch_mult):
            down, down_t = nn.Module(), nn.Module()
            down.block, down_t.block = nn.ModuleList(), nn.ModuleList()
            block_in, block_out = ch * in_ch_mult[i], ch * mult
            for _ in range(cfg.num_res_blocks):
                down.block.append(ResnetBlock(block_in, block_out, cfg.dropout))
                down_t.block.append(ResnetBlock1D(block_out, _conv1d, cfg.dropout))
                block_in = block_out
            if i != L - 1:
                down.downsample = Downsample(block_in)
            if i in tempo:
                down_t.downsample = TimeDownsampleRes2x(block_in)
            self.down.append(down)
            self.down_temporal.append(down_t)
        self.mid = _mid(block_in, cfg.dropout)
        self.norm_out = Normalize(block_in)
        self.conv_out = nn.Conv3d(block_in, 2 * cfg.z_channels if cfg.double_z else cfg.z_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = conv3d(self.conv_in, channels_last(x))
        for down, down_t in zip(self.down, self.down_temporal):
            for blk_2d, blk_1d in zip(down.block, down_t.block):
                h = per_frame(blk_2d, h)
                h = blk_1d(h)
            if hasattr(down, "downsample"):
                h = per_frame(down.downsample, h)
            if hasattr(down_t, "downsample"):
                h = down_t.downsample(h)
        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(h)))
        return self.conv_out(norm_act(self.norm_out, h)).contiguous()


class NonCausalDecoder(nn.Module):
    """latents (B, z_channels, t, h, w) -> video (B, out_ch, t*tdf, H, W), not clamped, no crop (§5.2)."""

    def __init__(self, cfg: VidTokConfig):
        super().__init__()
        ch, L = cfg.ch, cfg.num_levels
        block_in = ch * cfg.ch_mult[-1]
        self.conv_in = nn.Conv3d(cfg.z_channels, block_in, 3, padding=1)
        self.mid = _mid(block_in, cfg.dropout)
        tempo = cfg.decoder_tempo_levels()
        ups: list = [None] * L
        ups_t: list = [None] * L
        for i in reversed(range(L)):
            up, up_t = nn.Module(), nn.Module()
            up.block, up_t.block = nn.ModuleList(), nn.ModuleList()
            block_out = ch * cfg.ch_mult[i]
            for _ in range(cfg.num_res_blocks + 1):
                up.block.append(ResnetBlock(block_in, block_out, cfg.dropout))
                up_t.block.append(ResnetBlock1D(block_out, _conv1d, cfg.dropout))
                block_in = block_out
            if i != 0:
                up.upsample = Upsample(block_in)
            if i in tempo:
                up_t.upsample = TimeUpsampleRes2x(block_in)
            ups[i], ups_t[i] = up, up_t
        self.up, self.up_temporal = nn.ModuleList(ups), nn.ModuleList(ups_t)
        self.norm_out = Normalize(block_in)
        self.conv_out = nn.Conv3d(block_in, cfg.out_ch, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = conv3d(self.conv_in, channels_last(z))
        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(h)))
        for i in reversed(range(len(self.up))):
            up, up_t = self.up[i], self.up_temporal[i]
            for blk_2d, blk_1d in zip(up.block, up_t.block):
                h = per_frame(blk_2d, h)
                h = blk_1d(h)
            if hasattr(up, "upsample"):
                h = per_frame(up.upsample, h)
            if hasattr(up_t, "upsample"):
                h = up_t.upsample(h)
        return self.conv_out(norm_act(self.norm_out, h)).contiguous()
