"""Causal VidTok encoder and decoder, v1.0 and v1.1 (spec ARCHITECTURE.md §4.1, §5.1, §6).

Official classes: `vidtok.modules.model_3dcausal[_v1_1].EncoderCausal3DPadding` / `DecoderCausal3DPadding`.
v1.0 and v1.1 share parameter names and shapes (a v1.1 checkpoint loads silently into v1.0 classes, §0); they
differ only in the temporal padding semantics of `causal_ops` and in the frame-count rules of §6:
* v1.0: `tdf-1` copies of frame 0 are prepended whenever `T mod tdf != 0`; the decoder always drops its first
  `tdf-1` output frames (quirk 2: T=16 -> 13 frames).
* v1.1: `tdf - T mod tdf` copies are prepended; the decoder does not crop (the engine keeps the last T frames).
Module lists are indexed by absolute level (`down[i]`, `up[i]`, `up_temporal[i]`), as in the checkpoints.
Activations are channels-last from input to output (see `layers`); results are returned contiguous.
"""

from __future__ import annotations

import torch
from torch import nn

from vidtok.config import VidTokConfig
from vidtok.modules.causal_ops import (CausalConv1d, CausalConv3d, TimeDownsampleResCausal2x,
                                       TimeUpsampleResCausal2x)
from vidtok.modules.layers import (AttnBlock, Downsample, Normalize, ResnetBlock, ResnetBlock1D, ResnetBlock3D,
                                   Upsample, channels_last, norm_act, per_frame)


def _mid(channels: int, v1_1: bool, dropout: float) -> nn.Module:
    """Mid block: ResNet3D -> spatial attention -> ResNet3D (keys mid.block_1 / attn_1 / block_2, §3.7-3.8)."""
    mid = nn.Module()
    conv3 = lambda c: CausalConv3d(c, c, 3, v1_1=v1_1)  # noqa: E731
    mid.block_1 = ResnetBlock3D(channels, conv3, dropout)
    mid.attn_1 = AttnBlock(channels, lambda c: CausalConv3d(c, c, 1, v1_1=v1_1))
    mid.block_2 = ResnetBlock3D(channels, conv3, dropout)
    return mid


def _run_mid(mid: nn.Module, h: torch.Tensor) -> torch.Tensor:
    return mid.block_2(mid.attn_1(mid.block_1(h)))


class CausalEncoder(nn.Module):
    """(B, in_channels, T, H, W) in [-1, 1] -> z (B, 2*z_channels [KL] | z_channels [FSQ], t, h, w), unbounded."""

    def __init__(self, cfg: VidTokConfig):
        super().__init__()
        self.v1_1 = cfg.family == "causal_v1_1"
        self.time_downsample_factor = cfg.time_downsample_factor
        self.spatial_levels = cfg.encoder_spatial_levels()
        self.tempo_levels = cfg.encoder_tempo_levels()
        v1_1, ch = self.v1_1, cfg.ch
        conv1d = lambda c: CausalConv1d(c, c, 3, v1_1=v1_1)  # noqa: E731
        self.conv_in = CausalConv3d(cfg.in_channels, ch, 3, v1_1=v1_1)
        in_ch_mult = (1,) + tuple(cfg.ch_mult)
        self.down = nn.ModuleList()
        self.down_temporal = nn.ModuleList()
        block_in = ch
        for i, mult in enumerate(cfg.ch_mult):
            down, down_t = nn.Module(), nn.Module()
            down.block, down_t.block = nn.ModuleList(), nn.ModuleList()
            block_in, block_out = ch * in_ch_mult[i], ch * mult
            for _ in range(cfg.num_res_blocks):
                down.block.append(ResnetBlock(block_in, block_out, cfg.dropout))
                down_t.block.append(ResnetBlock1D(block_out, conv1d, cfg.dropout))
                block_in = block_out
            if i in self.spatial_levels:
                down.downsample = Downsample(block_in)
                if i in self.tempo_levels:  # nested: temporal ds only inside the spatial branch (§2.1)
                    down_t.downsample = TimeDownsampleResCausal2x(block_in, v1_1=v1_1)
            self.down.append(down)
            self.down_temporal.append(down_t)
        self.mid = _mid(block_in, v1_1, cfg.dropout)
        self.norm_out = Normalize(block_in)
        self.conv_out = CausalConv3d(block_in, 2 * cfg.z_channels if cfg.double_z else cfg.z_channels, 3, v1_1=v1_1)

    def pad_front(self, x: torch.Tensor) -> torch.Tensor:
        """Replicate frame 0 in front when T mod tdf != 0 (§4.1 step 1, §6 frame-count rule)."""
        tdf, t = self.time_downsample_factor, x.shape[2]
        if t % tdf == 0:
            return x
        # v1.0 always prepends tdf-1 copies (quirk 2); v1.1 rounds T up to a multiple of tdf (quirk 3).
        n = tdf - (t % tdf) if self.v1_1 else tdf - 1
        return torch.cat([x[:, :, :1].repeat_interleave(n, dim=2), x], dim=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(channels_last(self.pad_front(x)))
        for down, down_t in zip(self.down, self.down_temporal):
            for blk_2d, blk_1d in zip(down.block, down_t.block):
                h = per_frame(blk_2d, h)  # one statement per block: each input is freed as soon as it is used
                h = blk_1d(h)  # the temporal block per pixel, on the video itself (§3.6)
            if hasattr(down, "downsample"):
                h = per_frame(down.downsample, h)
            if hasattr(down_t, "downsample"):
                h = down_t.downsample(h)
        h = _run_mid(self.mid, h)
        return self.conv_out(norm_act(self.norm_out, h)).contiguous()


class CausalDecoder(nn.Module):
    """latents (B, z_channels, t, h, w) -> video (B, out_ch, T, H, W), not clamped (no tanh, §1).

    v1.0 returns `t*tdf - (tdf-1)` frames; v1.1 returns `t*tdf` (the engine crops, §6).
    """

    def __init__(self, cfg: VidTokConfig):
        super().__init__()
        self.v1_1 = cfg.family == "causal_v1_1"
        self.time_downsample_factor = cfg.time_downsample_factor
        self.spatial_levels = cfg.decoder_spatial_levels()
        self.tempo_levels = cfg.decoder_tempo_levels()
        tempo_modules = cfg.decoder_tempo_modules()
        v1_1, ch, L = self.v1_1, cfg.ch, cfg.num_levels
        conv1d = lambda c: CausalConv1d(c, c, 3, v1_1=v1_1)  # noqa: E731
        block_in = ch * cfg.ch_mult[-1]
        self.conv_in = CausalConv3d(cfg.z_channels, block_in, 3, v1_1=v1_1)
        self.mid = _mid(block_in, v1_1, cfg.dropout)
        ups: list[nn.Module] = [None] * L  # type: ignore[list-item]
        ups_t: list[nn.Module] = [None] * L  # type: ignore[list-item]
        num_temp_upsample = 1  # built from the top level down: n = 1, 2, 4 (§3.11)
        for i in reversed(range(L)):
            up, up_t = nn.Module(), nn.Module()
            up.block, up_t.block = nn.ModuleList(), nn.ModuleList()
            block_out = ch * cfg.ch_mult[i]
            for _ in range(cfg.num_res_blocks + 1):
                up.block.append(ResnetBlock(block_in, block_out, cfg.dropout))
                up_t.block.append(ResnetBlock1D(block_out, conv1d, cfg.dropout))
                block_in = block_out
            if i in self.spatial_levels:
                up.upsample = Upsample(block_in)
            if i in tempo_modules:
                up_t.upsample = TimeUpsampleResCausal2x(block_in, v1_1=v1_1, interpolation_mode=cfg.interpolation_mode,
                                                        num_temp_upsample=num_temp_upsample)
                num_temp_upsample *= 2
            ups[i], ups_t[i] = up, up_t
        self.up = nn.ModuleList(ups)
        self.up_temporal = nn.ModuleList(ups_t)
        self.norm_out = Normalize(block_in)
        self.conv_out = CausalConv3d(block_in, cfg.out_ch, 3, v1_1=v1_1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = _run_mid(self.mid, self.conv_in(channels_last(z)))
        for i in reversed(range(len(self.up))):
            up, up_t = self.up[i], self.up_temporal[i]
            for blk_2d, blk_1d in zip(up.block, up_t.block):  # 2-D before temporal (quirk 10)
                h = per_frame(blk_2d, h)
                h = blk_1d(h)
            if hasattr(up, "upsample"):
                h = per_frame(up.upsample, h)
                # A temporal up-sampler is applied only inside the spatial branch (§2.1).
                if hasattr(up_t, "upsample"):
                    h = up_t.upsample(h)
        h = self.conv_out(norm_act(self.norm_out, h))
        if not self.v1_1:
            h = h[:, :, self.time_downsample_factor - 1:]  # v1.0 always drops tdf-1 frames (§5.1, quirk 2)
        return h.contiguous()
