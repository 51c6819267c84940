"""The evaluation job (`jobs/evaluate.py`): reconstruction quality of a checkpoint over a set of videos.

The paper's protocol (spec §13.2) with `jobs/configs/evaluate.yaml`: frames sampled at 30 FPS, split into consecutive
non-overlapping clips of 17 (causal) / 16 (non-causal) frames at 256×256, the last partial clip padded by repeating
its last frame (`decode.tail: pad`); PSNR / SSIM / LPIPS as exact means over all frames, and with `i3d_path=` one FVD
over every clip of the set (features are collected in the same pass as the other metrics). Per-video values are
reported too (without FVD: a distribution distance over a handful of clips means nothing).
"""

from __future__ import annotations

import glob
import json
import logging
import os
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import torch

from pipeline.config import StorageConfig
from pipeline.decode import DecodeConfig, decode_windows
from pipeline.decode.synth import make_sample_corpus
from pipeline.evaluate.metrics import MetricSums, accumulate_clips, load_i3d
from pipeline.inputs import list_urls
from pipeline.storage import write_bytes
from vidtok import VidTok
from vidtok.losses import build_lpips

log = logging.getLogger(__name__)

EXTENSIONS = (".mp4", ".mkv", ".webm", ".mov", ".avi", ".mpg", ".y4m")
DEFAULT_SIZE = 256  # decode.size when null: the paper's 256 x 256


@dataclass
class EvaluateConfig:
    """`jobs/evaluate.py` settings; the paper's protocol is in jobs/configs/evaluate.yaml (decode.fps 30, tail pad)."""

    input: str = ""  # folder / prefix / manifest of videos; "" = the sample corpus under runs/
    checkpoint: str = ""  # official .ckpt or an export of this project; "" = latest export under runs/<preset>_stage*
    preset: str = "vidtok_fsq_causal_488_32768_tiny"  # must match the checkpoint
    max_clips_per_video: Optional[int] = None  # null: all clips
    batch_size: int = 1  # clips per model call
    device: str = "auto"  # auto | cpu | cuda
    bf16: bool = False  # autocast on CUDA (metrics in the paper were computed in full precision)
    lpips: bool = True  # needs the VGG16 file in the torch hub cache (or lpips_backbone_path)
    lpips_backbone_path: str = ""  # ImageNet VGG16 file; "" = torch hub cache (vidtok/losses/lpips.py)
    lpips_random_backbone: bool = False  # smoke tests only
    i3d_path: str = ""  # local I3D TorchScript for FVD; "" = no FVD
    output: str = ""  # metrics JSON path (local or s3://); "" = print only
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)  # s3 endpoint / credentials

    def __post_init__(self):
        if self.batch_size < 1:
            raise ValueError(f"batch_size={self.batch_size}: need at least 1")
        if self.max_clips_per_video is not None and self.max_clips_per_video < 1:
            raise ValueError(f"max_clips_per_video={self.max_clips_per_video}: need >= 1 or null (all)")


def default_checkpoint(preset: str, runs: str = "runs") -> str:
    """The newest export of the embedded-default runs (stage 2 preferred), or an error that says what to run."""
    for stage in (2, 1):
        found = sorted(glob.glob(os.path.join(runs, f"{preset}_stage{stage}", "export", "*.ckpt")))
        if found:
            return found[-1]
    raise FileNotFoundError(f"no checkpoint given and no export under {runs}/{preset}_stage*/export: pass checkpoint=... "
                            "(an official VidTok .ckpt) or run python jobs/train_stage1.py first")


def evaluate_video(model, url: str, decode: DecodeConfig, cfg: EvaluateConfig, device, lpips_module=None,
                   i3d=None) -> tuple[MetricSums | None, str]:
    """`(sums over the video's clips, '')`, or `(None, reason)` when the video cannot be decoded."""
    opts = cfg.storage.storage_options()
    res = decode_windows(url, decode, storage_options=opts)
    if res.status != "ok":
        return None, f"{res.status}: {res.message}"
    windows = res.windows[: cfg.max_clips_per_video] if cfg.max_clips_per_video else res.windows
    sums, _ = accumulate_clips(model, np.stack([w.frames for w in windows]), device, lpips_module, i3d,
                               cfg.batch_size, torch.bfloat16 if cfg.bf16 else None)
    return sums, ""


def run_evaluation(cfg: EvaluateConfig) -> dict:
    """Metrics of `cfg.checkpoint` over every video of `cfg.input` (exact frame-weighted means) + per-video values."""
    opts = cfg.storage.storage_options()
    source = cfg.input
    if not source:
        source = str(make_sample_corpus("runs/sample_corpus"))
    ckpt = cfg.checkpoint or default_checkpoint(cfg.preset)
    device = torch.device("cuda" if (cfg.device == "auto" and torch.cuda.is_available()) else
                          ("cpu" if cfg.device == "auto" else cfg.device))
    model = VidTok.from_pretrained(cfg.preset, ckpt).to(device).eval()
    lp = build_lpips(cfg.lpips_backbone_path or None, cfg.lpips_random_backbone).to(device) if cfg.lpips else None
    i3d = load_i3d(cfg.i3d_path, device) if cfg.i3d_path else None
    decode = cfg.decode.resolved(num_frames=model.default_num_frames, size=DEFAULT_SIZE)
    total, per_video, skipped = MetricSums(), {}, {}
    for url in list_urls(source, extensions=EXTENSIONS, storage_options=opts):
        sums, reason = evaluate_video(model, url, decode, cfg, device, lp, i3d)
        if sums is None:
            skipped[url] = reason
            continue
        per_video[url] = sums.result(with_fvd=False)
        total.merge(sums)
    summary = {"checkpoint": ckpt, "preset": cfg.preset, "input": source, "videos": len(per_video),
               "skipped": skipped, "protocol": {"fps": decode.fps, "size": decode.size,
                                                "num_frames": decode.num_frames, "tail": decode.tail},
               **total.result(), "per_video": per_video}
    if cfg.output:
        write_bytes(cfg.output, json.dumps(summary, indent=2).encode(), opts)
    return summary
