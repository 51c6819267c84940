"""The evaluation job (`jobs/evaluate.py`): reconstruction quality of a checkpoint over a set of videos.

The paper's protocol (spec §13.2) with `pipeline/configs/evaluate.yaml`: frames sampled at 30 FPS, split into consecutive
non-overlapping clips of 17 (causal) / 16 (non-causal) frames at 256×256, the last partial clip padded by repeating
its last frame (`decode.tail: pad`); PSNR / SSIM / LPIPS as exact means over all frames, and with `i3d_path=` one FVD
over every clip of the set (features are collected in the same pass as the other metrics). Per-video values are
reported too (without FVD: a distribution distance over a handful of clips means nothing).

At scale (`num_workers > 1`) videos are spread over Ray actors that each load the model once; their per-video sums
come back to the driver and are merged in listing order, so the per-video table and the aggregate are identical to
the one-process run (the same floating-point sums in the same order).
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

from pipeline.config import VIDEO_EXTENSIONS, RayConfig, StorageConfig
from pipeline.decode import DecodeConfig, decode_windows
from pipeline.decode.synth import make_sample_corpus
from pipeline.evaluate.metrics import MetricSums, accumulate_clips, load_i3d
from pipeline.inputs import list_urls
from pipeline.ray_utils import RayLogs, ray_session
from pipeline.storage import local_copy, write_bytes
from vidtok import VidTok
from vidtok.presets import preset_config
from vidtok.losses import build_lpips

log = logging.getLogger(__name__)



@dataclass
class EvaluateConfig:
    """`jobs/evaluate.py` settings; the paper's protocol is pipeline/configs/evaluate.yaml (decode.fps 30, tail pad)."""

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
    num_workers: int = 1  # > 1: spread the videos over this many Ray actors (each loads the model once)
    gpus_per_worker: float = 0.0  # GPUs per evaluation actor (num_workers > 1)
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)  # s3 endpoint / credentials
    ray: RayConfig = field(default_factory=RayConfig)

    def __post_init__(self):
        if self.batch_size < 1:
            raise ValueError(f"batch_size={self.batch_size}: need at least 1")
        if self.num_workers < 1:
            raise ValueError(f"num_workers={self.num_workers}: need at least 1")
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


def protocol_decode(cfg: EvaluateConfig) -> DecodeConfig:
    """`cfg.decode` with the model's window length and the paper's 256 filled in where they are null."""
    return cfg.decode.for_model(preset_config(cfg.preset))


class VideoEvaluator:
    """The model, LPIPS and I3D of one evaluation process, loaded once; `__call__(url)` evaluates one video.

    Used in the driver (`num_workers=1`) and as a Ray actor (`num_workers > 1`)."""

    def __init__(self, cfg: EvaluateConfig, checkpoint: str):
        opts = cfg.storage.storage_options()
        self.cfg = cfg
        self.device = torch.device("cuda" if (cfg.device == "auto" and torch.cuda.is_available()) else
                                   ("cpu" if cfg.device == "auto" else cfg.device))
        self.model = VidTok.from_pretrained(cfg.preset, local_copy(checkpoint, opts)).to(self.device).eval()
        self.lpips = (build_lpips(cfg.lpips_backbone_path or None, cfg.lpips_random_backbone).to(self.device)
                      if cfg.lpips else None)
        self.i3d = load_i3d(local_copy(cfg.i3d_path, opts), self.device) if cfg.i3d_path else None
        self.decode = protocol_decode(cfg)

    def __call__(self, url: str) -> tuple[str, MetricSums | None, str]:
        """`(url, sums over the video's clips, '')`, or `(url, None, reason)` when it cannot be decoded."""
        cfg = self.cfg
        res = decode_windows(url, self.decode, storage_options=cfg.storage.storage_options())
        if res.status != "ok":
            return url, None, f"{res.status}: {res.message}"
        windows = res.windows[: cfg.max_clips_per_video] if cfg.max_clips_per_video else res.windows
        sums, _ = accumulate_clips(self.model, np.stack([w.frames for w in windows]), self.device, self.lpips,
                                   self.i3d, cfg.batch_size, torch.bfloat16 if cfg.bf16 else None)
        return url, sums, ""


def _evaluate_all(cfg: EvaluateConfig, checkpoint: str, urls: list[str]):
    """`(url, sums | None, reason)` for every url, in listing order, in this process or on Ray actors."""
    if cfg.num_workers == 1:
        evaluator = VideoEvaluator(cfg, checkpoint)
        return [evaluator(u) for u in urls]
    import ray  # only the distributed path needs Ray
    from ray.util import ActorPool

    logs = RayLogs(console=cfg.ray.console_logs)
    try:
        with ray_session(cfg.ray, logs):
            actor = ray.remote(num_cpus=1, num_gpus=cfg.gpus_per_worker)(VideoEvaluator)
            pool = ActorPool([actor.remote(cfg, checkpoint) for _ in range(min(cfg.num_workers, max(1, len(urls))))])
            return list(pool.map(lambda a, u: a.__call__.remote(u), urls))  # map keeps the input order
    finally:
        logs.keep(None)  # no output folder: the file stays where it is, and the log says where


def run_evaluation(cfg: EvaluateConfig) -> dict:
    """Metrics of `cfg.checkpoint` over every video of `cfg.input` (exact frame-weighted means) + per-video values."""
    opts = cfg.storage.storage_options()
    source = cfg.input or str(make_sample_corpus("runs/sample_corpus"))
    ckpt = cfg.checkpoint or default_checkpoint(cfg.preset)
    urls = list_urls(source, extensions=VIDEO_EXTENSIONS, storage_options=opts)
    results, decode = _evaluate_all(cfg, ckpt, urls), protocol_decode(cfg)
    total, per_video, skipped = MetricSums(), {}, {}
    for url, sums, reason in results:  # listing order: the same sums in the same order as one process
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
