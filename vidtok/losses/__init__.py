"""Training losses of VidTok (spec §11): LPIPS, PatchGAN discriminators, LeCam, and the combined `VidTokLoss`."""

from .discriminator import NLayerDiscriminator, NLayerDiscriminator3D
from .lecam import LeCamEMA
from .lpips import VGG16WeightsNotFound, build_lpips, find_vgg16_weights
from .vidtok_loss import LossConfig, VidTokLoss, adopt_weight, to_frames

__all__ = [
    "LeCamEMA", "LossConfig", "NLayerDiscriminator", "NLayerDiscriminator3D", "VGG16WeightsNotFound", "VidTokLoss",
    "adopt_weight", "build_lpips", "find_vgg16_weights", "to_frames",
]
