"""PatchGAN discriminators of the VidTok loss (spec §11.5): the 2-D `NLayerDiscriminator` the released configs use,
and the 3-D option (`NLayerDiscriminator3D`, `disc_type: 3d`).

Layer order and names follow the official module (`main.{i}`), so `loss.discriminator.*` keys of an official
Lightning checkpoint load directly. Init is pix2pix's `weights_init`: conv weights N(0, 0.02), BatchNorm weight
N(1, 0.02) and bias 0; conv biases keep PyTorch's default.
"""

from __future__ import annotations

import torch
from torch import nn


def weights_init(m: nn.Module) -> None:
    """pix2pix init applied with `module.apply` (spec §11.5)."""
    name = m.__class__.__name__
    if name.find("Conv") != -1:
        nn.init.normal_(m.weight.data, 0.0, 0.02)
    elif name.find("BatchNorm") != -1:
        nn.init.normal_(m.weight.data, 1.0, 0.02)
        nn.init.constant_(m.bias.data, 0)


class NLayerDiscriminator(nn.Module):
    """2-D PatchGAN: `x: (N, 3, H, W)` float in [-1, 1] -> patch logits `(N, 1, H', W')` (H' ≈ H/8 − 2).

    Official widths use `ndf=64`, `n_layers=3` (64→128→256→512→1); smaller `ndf` is for CI presets only.
    """

    def __init__(self, input_nc: int = 3, ndf: int = 64, n_layers: int = 3):
        super().__init__()
        kw, padw = 4, 1
        layers: list[nn.Module] = [nn.Conv2d(input_nc, ndf, kw, stride=2, padding=padw), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers):
            prev, mult = mult, min(2**n, 8)
            layers += [
                nn.Conv2d(ndf * prev, ndf * mult, kw, stride=2, padding=padw, bias=False),
                nn.BatchNorm2d(ndf * mult),
                nn.LeakyReLU(0.2, True),
            ]
        prev, mult = mult, min(2**n_layers, 8)
        layers += [
            nn.Conv2d(ndf * prev, ndf * mult, kw, stride=1, padding=padw, bias=False),
            nn.BatchNorm2d(ndf * mult),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf * mult, 1, kw, stride=1, padding=padw),
        ]
        self.main = nn.Sequential(*layers)
        self.apply(weights_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.main[0].in_channels:
            raise ValueError(f"NLayerDiscriminator expects (N, {self.main[0].in_channels}, H, W), found {tuple(x.shape)}")
        return self.main(x)


class NLayerDiscriminator3D(nn.Module):
    """3-D PatchGAN (unused by the released configs): `x: (B, 3, T, H, W)` in [-1, 1] -> logits `(B, 1, t, h, w)`.

    Kernel 3, padding 1 everywhere; strides 2, (2,2,2), (1,2,2), 1, 1 (spec §11.5).
    """

    def __init__(self, input_nc: int = 3, ndf: int = 64, n_layers: int = 3):
        super().__init__()
        kw, padw = 3, 1
        layers: list[nn.Module] = [nn.Conv3d(input_nc, ndf, kw, stride=2, padding=padw), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers):
            prev, mult = mult, min(2**n, 8)
            stride = (2, 2, 2) if n == 1 else (1, 2, 2)
            layers += [
                nn.Conv3d(ndf * prev, ndf * mult, kw, stride=stride, padding=padw, bias=False),
                nn.BatchNorm3d(ndf * mult),
                nn.LeakyReLU(0.2, True),
            ]
        prev, mult = mult, min(2**n_layers, 8)
        layers += [
            nn.Conv3d(ndf * prev, ndf * mult, kw, stride=1, padding=padw, bias=False),
            nn.BatchNorm3d(ndf * mult),
            nn.LeakyReLU(0.2, True),
            nn.Conv3d(ndf * mult, 1, kw, stride=1, padding=padw),
        ]
        self.main = nn.Sequential(*layers)
        self.apply(weights_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 5 or x.shape[1] != self.main[0].in_channels:
            raise ValueError(f"NLayerDiscriminator3D expects (B, {self.main[0].in_channels}, T, H, W), found {tuple(x.shape)}")
        return self.main(x)


DISCRIMINATORS = {"2d": NLayerDiscriminator, "3d": NLayerDiscriminator3D}
