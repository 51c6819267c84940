"""Reconstruction quality of a VidTok checkpoint: PSNR / SSIM / LPIPS (spec §13) and optional FVD, plus previews.

Used by the training loop (validation on held-out clips every N steps) and by `jobs/evaluate.py` (the paper's
protocol over a folder or URL of videos, spec §13.2: frames sampled at `fps` — 30 for the paper's table — split into
consecutive non-overlapping clips of 17 (causal) / 16 (non-causal) frames at 256×256, the last partial clip padded
by repeating its last frame; metrics in groups of 16 frames).

FVD needs an I3D feature extractor, never downloaded: pass a local TorchScript file in StyleGAN-V's `i3d_torchscript.pt`
convention (`detector(videos (B, 3, T, H, W) float in [-1, 1], rescale=False, resize=True, return_features=True)` ->
`(B, 400)` features); FVD is then the Fréchet distance between the feature Gaussians of real and reconstructed clips.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import torch

from pipeline.tokenize_config import StorageSection
from vidtok.metrics import lpips_per_frame, psnr_per_frame, ssim_per_frame

log = logging.getLogger(__name__)


@dataclass
class MetricSums:
    """Running per-frame sums, so metrics over many clips are exact means over frames (not means of means)."""

    frames: int = 0
    psnr: float = 0.0
    ssim: float = 0.0
    lpips: float = 0.0
    has_lpips: bool = False
    real_feats: list = field(default_factory=list)
    fake_feats: list = field(default_factory=list)

    def add(self, x: torch.Tensor, recon: torch.Tensor, lpips_module=None) -> None:
        """`x, recon: (B, 3, T, H, W)` float in [-1, 1] (recon is clamped inside the metrics)."""
        p = psnr_per_frame(x, recon)
        self.frames += p.numel()
        self.psnr += float(p.sum())
        self.ssim += float(ssim_per_frame(x, recon).sum()) if min(x.shape[-2:]) >= 11 else float("nan")
        if lpips_module is not None:
            self.lpips += float(lpips_per_frame(lpips_module, x, recon).sum())
            self.has_lpips = True

    def result(self) -> dict[str, float]:
        n = max(self.frames, 1)
        out = {"psnr": self.psnr / n, "ssim": self.ssim / n, "frames": float(self.frames)}
        if self.has_lpips:
            out["lpips"] = self.lpips / n
        if self.real_feats:
            out["fvd"] = frechet_distance(np.concatenate(self.real_feats), np.concatenate(self.fake_feats))
        return out


@torch.no_grad()
def reconstruct_clips(model, clips_uint8: np.ndarray | torch.Tensor, device, batch_size: int = 1,
                      autocast_dtype: torch.dtype | None = None):
    """Yield `(x, recon)` float `(B, 3, T, H, W)` in [-1, 1] for clips `(K, T, H, W, 3)` uint8; model in eval mode."""
    from pipeline.train_data import to_model_input

    clips = torch.as_tensor(clips_uint8)
    for i in range(0, clips.shape[0], batch_size):
        x = to_model_input(clips[i : i + batch_size], device)
        ctx = torch.autocast("cuda", dtype=autocast_dtype) if (autocast_dtype and x.is_cuda) else _null()
        with ctx:
            recon = model.reconstruct(x)
        yield x, recon.float()


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


def evaluate_clips(model, clips_uint8, device, lpips_module=None, i3d=None, batch_size: int = 1,
                   autocast_dtype=None, keep: int = 0) -> tuple[dict[str, float], list]:
    """Metrics over clips `(K, T, H, W, 3)` uint8; returns `(metrics, first `keep` (x, recon) pairs on CPU)`."""
    was_training = model.training
    model.eval()
    sums, kept = MetricSums(), []
    for x, recon in reconstruct_clips(model, clips_uint8, device, batch_size, autocast_dtype):
        sums.add(x, recon, lpips_module)
        if i3d is not None:
            sums.real_feats.append(i3d_features(i3d, x))
            sums.fake_feats.append(i3d_features(i3d, recon.clamp(-1, 1)))
        if len(kept) < keep:
            kept.append((x.cpu(), recon.cpu()))
    model.train(was_training)
    return sums.result(), kept


# --------------------------------------------------------------------------------------------------- FVD
def load_i3d(path: str, device) -> torch.jit.ScriptModule:
    """A local TorchScript I3D (see module docstring); raises with the fix when the file is missing."""
    import os

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


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to feature rows `a (N, D)` and `b (M, D)`."""
    from scipy import linalg

    mu1, mu2 = a.mean(0), b.mean(0)
    s1 = np.cov(a, rowvar=False) if len(a) > 1 else np.zeros((a.shape[1], a.shape[1]))
    s2 = np.cov(b, rowvar=False) if len(b) > 1 else np.zeros((b.shape[1], b.shape[1]))
    covmean = np.real(linalg.sqrtm(s1.dot(s2)))
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


# --------------------------------------------------------------------------------------------------- previews
def to_uint8_frames(video: torch.Tensor) -> np.ndarray:
    """`(3, T, H, W)` float in [-1, 1] -> `(T, H, W, 3)` uint8 (clamped, as the official writer)."""
    v = ((video.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return v.permute(1, 2, 3, 0).cpu().numpy()


def encode_mp4(frames: np.ndarray, fps: float = 3.0) -> bytes:
    """H.264 mp4 bytes of `(T, H, W, 3)` uint8 frames (PyAV; even sizes padded by the encoder's yuv420p needs)."""
    import io

    import av

    buf = io.BytesIO()
    t, h, w, _ = frames.shape
    with av.open(buf, "w", format="mp4") as out:
        st = out.add_stream("libx264", rate=max(1, round(fps)))
        st.width, st.height, st.pix_fmt = w + (w % 2), h + (h % 2), "yuv420p"
        for f in frames:
            if f.shape[0] % 2 or f.shape[1] % 2:
                f = np.pad(f, ((0, f.shape[0] % 2), (0, f.shape[1] % 2), (0, 0)), mode="edge")
            for pkt in st.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")):
                out.mux(pkt)
        for pkt in st.encode():
            out.mux(pkt)
    return buf.getvalue()


def encode_png_grid(x: torch.Tensor, recon: torch.Tensor) -> bytes:
    """PNG of two rows: input frames over reconstructed frames, for `(3, T, H, W)` clips in [-1, 1]."""
    import io

    from PIL import Image

    top, bottom = to_uint8_frames(x), to_uint8_frames(recon)
    grid = np.concatenate([np.concatenate(list(top), axis=1), np.concatenate(list(bottom), axis=1)], axis=0)
    buf = io.BytesIO()
    Image.fromarray(grid).save(buf, format="PNG")
    return buf.getvalue()


def write_previews(pairs, url_dir: str, storage_options: dict | None = None, fps: float = 3.0) -> list[str]:
    """Write `clip<i>.mp4` (input | reconstruction side by side) and `clip<i>.png` (rows) under `url_dir`."""
    from pipeline.train_checkpoint import join, write_bytes

    written = []
    for i, (x, recon) in enumerate(pairs):
        side = torch.cat([x[0], recon[0].clamp(-1, 1)], dim=-1)  # (3, T, H, 2W)
        written.append(write_bytes(join(url_dir, f"clip{i}.mp4"), encode_mp4(to_uint8_frames(side), fps), storage_options))
        written.append(write_bytes(join(url_dir, f"clip{i}.png"), encode_png_grid(x[0], recon[0]), storage_options))
    return written


# --------------------------------------------------------------------------------------------------- the job
@dataclass
class EvaluateConfig:
    """`jobs/evaluate.py` settings. Defaults follow the paper's protocol (spec §13.2): 30 FPS, 256×256, clips of
    17 (causal) / 16 (non-causal) frames, consecutive and non-overlapping, last partial clip padded."""

    input: str = ""  # folder / prefix / manifest of videos; "" = the sample corpus under runs/
    checkpoint: str = ""  # official .ckpt or an export of this project; "" = latest export under runs/<preset>_stage*
    preset: str = "vidtok_fsq_causal_488_32768_tiny"
    fps: float = 30.0
    size: int = 256
    num_frames: int = 0  # 0: the model's default
    max_clips_per_video: int = 0  # 0: all clips
    batch_size: int = 1
    device: str = "auto"  # auto | cpu | cuda
    bf16: bool = False  # autocast on CUDA (metrics in the paper were computed in full precision)
    lpips: bool = True
    lpips_backbone_path: str = ""  # ImageNet VGG16 file; "" = torch hub cache (vidtok/losses/lpips.py)
    lpips_random_backbone: bool = False  # smoke tests only
    i3d_path: str = ""  # local I3D TorchScript for FVD; "" = no FVD
    output: str = ""  # metrics JSON path; "" = print only
    storage: StorageSection = field(default_factory=StorageSection)  # s3 endpoint / credentials

    def __post_init__(self):
        if self.fps <= 0 or self.size < 8 or self.batch_size < 1:
            raise ValueError(f"fps={self.fps}, size={self.size}, batch_size={self.batch_size}: need fps>0, size>=8, batch>=1")


def default_checkpoint(preset: str, runs: str = "runs") -> str:
    """The newest export of the embedded-default runs (stage 2 preferred), or an error that says what to run."""
    import glob
    import os

    for stage in (2, 1):
        found = sorted(glob.glob(os.path.join(runs, f"{preset}_stage{stage}", "export", "*.ckpt")))
        if found:
            return found[-1]
    raise FileNotFoundError(f"no checkpoint given and no export under {runs}/{preset}_stage*/export: pass checkpoint=... "
                            "(an official VidTok .ckpt) or run python jobs/train_stage1.py first")


def run_evaluation(cfg: EvaluateConfig) -> dict:
    """Metrics of `cfg.checkpoint` over every video of `cfg.input` (exact frame-weighted means) + per-video values."""
    import json

    from pipeline.decode import DecodeConfig, decode_windows
    from pipeline.listing import iter_inputs
    from vidtok import VidTok
    from vidtok.losses import build_lpips

    opts = cfg.storage.storage_options()
    source = cfg.input
    if not source:
        from pipeline.sample_corpus import make_sample_corpus

        source = str(make_sample_corpus("runs/sample_corpus"))
    ckpt = cfg.checkpoint or default_checkpoint(cfg.preset)
    device = torch.device("cuda" if (cfg.device == "auto" and torch.cuda.is_available()) else
                          ("cpu" if cfg.device == "auto" else cfg.device))
    model = VidTok.from_pretrained(cfg.preset, ckpt).to(device).eval()
    lp = build_lpips(cfg.lpips_backbone_path or None, cfg.lpips_random_backbone).to(device) if cfg.lpips else None
    i3d = load_i3d(cfg.i3d_path, device) if cfg.i3d_path else None
    num_frames = cfg.num_frames or model.default_num_frames
    dcfg = DecodeConfig(fps=cfg.fps, size=cfg.size, num_frames=num_frames, stride=num_frames, tail="pad")
    urls = [u for t in iter_inputs(source, extensions=(".mp4", ".mkv", ".webm", ".mov", ".avi", ".mpg", ".y4m"),
                                   storage_options=opts) for u in t.column("source").to_pylist()]
    total, per_video, skipped = MetricSums(), {}, {}
    for url in urls:
        res = decode_windows(url, dcfg, storage_options=opts)
        if res.status != "ok":
            skipped[url] = f"{res.status}: {res.message}"
            continue
        windows = res.windows[: cfg.max_clips_per_video] if cfg.max_clips_per_video else res.windows
        clips = np.stack([w.frames for w in windows])
        m, _ = evaluate_clips(model, clips, device, lp, i3d, cfg.batch_size, torch.bfloat16 if cfg.bf16 else None)
        per_video[url] = m
        n = int(m["frames"])
        total.frames += n
        total.psnr += m["psnr"] * n
        total.ssim += m["ssim"] * n
        if "lpips" in m:
            total.lpips += m["lpips"] * n
            total.has_lpips = True
    if i3d is not None:  # FVD over all clips at once (a distribution distance, not a per-video mean)
        total.real_feats, total.fake_feats = _all_i3d_features(model, urls, dcfg, opts, device, i3d, cfg, skipped)
    summary = {"checkpoint": ckpt, "preset": cfg.preset, "input": source, "videos": len(per_video),
               "skipped": skipped, "protocol": {"fps": cfg.fps, "size": cfg.size, "num_frames": num_frames},
               **total.result(), "per_video": per_video}
    if cfg.output:
        from pipeline.train_checkpoint import write_bytes

        write_bytes(cfg.output, json.dumps(summary, indent=2).encode(), opts)
    return summary


def _all_i3d_features(model, urls, dcfg, opts, device, i3d, cfg, skipped):
    from pipeline.decode import decode_windows

    real, fake = [], []
    for url in urls:
        if url in skipped:
            continue
        res = decode_windows(url, dcfg, storage_options=opts)
        windows = res.windows[: cfg.max_clips_per_video] if cfg.max_clips_per_video else res.windows
        for x, recon in reconstruct_clips(model, np.stack([w.frames for w in windows]), device, cfg.batch_size):
            real.append(i3d_features(i3d, x))
            fake.append(i3d_features(i3d, recon.clamp(-1, 1)))
    return real, fake
