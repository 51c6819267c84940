"""Reconstruction quality over clips: exact frame-weighted PSNR / SSIM / LPIPS sums, I3D features for FVD, previews.

The library that both the evaluation job (`pipeline/evaluate/run.py`) and training validation
(`pipeline/train/loop.py`) use. The per-frame formulas are `vidtok.metrics` (spec §13); this module runs the model
over uint8 clips and accumulates.

FVD needs an I3D feature extractor, never downloaded: pass a local TorchScript file in StyleGAN-V's
`i3d_torchscript.pt` convention (`detector(videos (B, 3, T, H, W) float in [-1, 1], rescale=False, resize=True,
return_features=True)` -> `(B, 400)` features); FVD is then the Fréchet distance between the feature Gaussians of
real and reconstructed clips (`vidtok.metrics.FeatureStats`: streaming, mergeable across workers, guarded sqrtm).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field

import numpy as np
import torch

from pipeline.decode.previews import grid_png, side_by_side_mp4
from pipeline.storage import join, write_bytes
from vidtok.metrics import FeatureStats, lpips_per_frame, psnr_per_frame, ssim_per_frame
from vidtok.video import to_model_input, to_uint8_frames


@dataclass
class MetricSums:
    """Running per-frame sums, so metrics over many clips are exact means over frames (not means of means)."""

    frames: int = 0
    psnr: float = 0.0
    ssim: float = 0.0
    lpips: float = 0.0
    has_lpips: bool = False
    real: FeatureStats = field(default_factory=FeatureStats)  # I3D features of the inputs (FVD)
    fake: FeatureStats = field(default_factory=FeatureStats)  # ... and of the reconstructions

    def add(self, x: torch.Tensor, recon: torch.Tensor, lpips_module=None) -> None:
        """`x, recon: (B, 3, T, H, W)` float in [-1, 1] (recon is clamped inside the metrics)."""
        p = psnr_per_frame(x, recon)
        self.frames += p.numel()
        self.psnr += float(p.sum())
        self.ssim += float(ssim_per_frame(x, recon).sum()) if min(x.shape[-2:]) >= 11 else float("nan")
        if lpips_module is not None:
            self.lpips += float(lpips_per_frame(lpips_module, x, recon).sum())
            self.has_lpips = True

    def merge(self, other: "MetricSums") -> None:
        """Add another set of sums (another video, another worker): the result is the mean over all their frames."""
        self.frames += other.frames
        self.psnr += other.psnr
        self.ssim += other.ssim
        self.lpips += other.lpips
        self.has_lpips = self.has_lpips or other.has_lpips
        self.real.merge(other.real)
        self.fake.merge(other.fake)

    def result(self, with_fvd: bool = True) -> dict[str, float]:
        """Frame means; `fvd` over every collected clip (a distribution distance: only meaningful over a whole set,
        so per-video results leave it out)."""
        n = max(self.frames, 1)
        out = {"psnr": self.psnr / n, "ssim": self.ssim / n, "frames": float(self.frames)}
        if self.has_lpips:
            out["lpips"] = self.lpips / n
        if with_fvd and self.real.count:
            out["fvd"] = self.real.frechet_distance(self.fake)
            out["fvd_clips"] = float(self.real.count)
        return out


@torch.no_grad()
def reconstruct_clips(model, clips_uint8, device, batch_size: int = 1, autocast_dtype: torch.dtype | None = None):
    """Yield `(x, recon)` float `(B, 3, T, H, W)` in [-1, 1] for clips `(K, T, H, W, 3)` uint8; model in eval mode."""
    clips = torch.as_tensor(clips_uint8)
    for i in range(0, clips.shape[0], batch_size):
        x = to_model_input(clips[i : i + batch_size], device)
        use_autocast = autocast_dtype is not None and x.is_cuda
        ctx = torch.autocast("cuda", dtype=autocast_dtype) if use_autocast else contextlib.nullcontext()
        with ctx:
            recon = model.reconstruct(x)
        yield x, recon.float()


def accumulate_clips(model, clips_uint8, device, lpips_module=None, i3d=None, batch_size: int = 1,
                     autocast_dtype=None, keep: int = 0) -> tuple[MetricSums, list]:
    """Sums (and I3D features) over clips `(K, T, H, W, 3)` uint8, one pass; returns `(sums, first `keep`
    (x, recon) pairs on CPU)`."""
    was_training = model.training
    model.eval()
    sums, kept = MetricSums(), []
    for x, recon in reconstruct_clips(model, clips_uint8, device, batch_size, autocast_dtype):
        sums.add(x, recon, lpips_module)
        if i3d is not None:
            sums.real.update(i3d_features(i3d, x))
            sums.fake.update(i3d_features(i3d, recon.clamp(-1, 1)))
        if len(kept) < keep:
            kept.append((x.cpu(), recon.cpu()))
    model.train(was_training)
    return sums, kept


def evaluate_clips(model, clips_uint8, device, lpips_module=None, i3d=None, batch_size: int = 1,
                   autocast_dtype=None, keep: int = 0) -> tuple[dict[str, float], list]:
    """Metrics over clips `(K, T, H, W, 3)` uint8; returns `(metrics, first `keep` (x, recon) pairs on CPU)`."""
    sums, kept = accumulate_clips(model, clips_uint8, device, lpips_module, i3d, batch_size, autocast_dtype, keep)
    return sums.result(), kept


# --------------------------------------------------------------------------------------------------- FVD
def load_i3d(path: str, device) -> torch.jit.ScriptModule:
    """A local TorchScript I3D (see module docstring); raises with the fix when the file is missing."""
    if not path or not os.path.isfile(path):
        raise FileNotFoundError(
            f"FVD needs a local I3D TorchScript file (i3d_torchscript.pt as used by StyleGAN-V); not found at {path!r}. "
            "Nothing is downloaded: copy the file to this machine and pass i3d_path=..., or leave i3d_path empty to skip FVD."
        )
    return torch.jit.load(path, map_location=device).eval()


@torch.no_grad()
def i3d_features(detector, video: torch.Tensor) -> np.ndarray:
    """`video (B, 3, T, H, W)` float in [-1, 1] -> `(B, D)` float64 I3D features."""
    feats = detector(video.float(), rescale=False, resize=True, return_features=True)
    return feats.detach().double().cpu().numpy()


# --------------------------------------------------------------------------------------------------- previews
def write_previews(pairs, url_dir: str, storage_options: dict | None = None, fps: float = 3.0) -> list[str]:
    """Write `clip<i>.mp4` (input | reconstruction side by side) and `clip<i>.png` (rows) under `url_dir`."""
    written = []
    for i, (x, recon) in enumerate(pairs):
        top, bottom = to_uint8_frames(x[0]), to_uint8_frames(recon[0])
        written.append(write_bytes(join(url_dir, f"clip{i}.mp4"), side_by_side_mp4(top, bottom, fps), storage_options))
        written.append(write_bytes(join(url_dir, f"clip{i}.png"), grid_png(top, bottom), storage_options))
    return written
