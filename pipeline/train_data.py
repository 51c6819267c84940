"""Training and validation clips for VidTok from object storage (spec §13.1, at exact 3 FPS via `pipeline.decode`).

Training stream (Ray Data, streaming into `TorchTrainer` workers):

    range(n_items) ──map source (cheap per-pass permutation)──▶ flat_map(decode + random window, CPU tasks)
                   ──▶ {"video": (T, H, W, 3) uint8} ──▶ get_dataset_shard("train").iter_torch_batches(prefetch)

* Each item names one video (pass p = item // n_videos visits every video once, in an order that changes per pass)
  and yields `clips_per_video` random windows of `num_frames` consecutive 3 FPS samples, short side resized to
  `size` and centre-cropped (the decode issue's `decode_windows`, isolated and time-limited; a bad video yields no
  clip and a log line, never a crash).
* Window start: uniform over `[0, N − T]` of the N sampled frames; a video with fewer than T samples is padded by
  repeating its last frame (spec §13.1 step 7). This replaces the official frame-stride rule (which drifts at 25 fps
  and breaks on variable frame rate) by the project's timestamp rule; the randomness is the same in kind.
* The item count covers the whole run (`steps × global batch`), so the stream never restarts between "epochs"
  and the decode tasks stay ahead of the trainers; the training loop re-iterates if failed videos leave it short.

Validation clips (`load_val_clips`): the first window of each held-out video, decoded once on rank 0.
"""

from __future__ import annotations

import logging
import math
from functools import partial
from typing import Iterable

import numpy as np

from pipeline.decode import DecodeConfig, decode_windows

log = logging.getLogger(__name__)

# Odd multipliers for the per-pass visiting order: item k of pass p reads video (k·a_p + b_p) mod n. With
# gcd(a_p, n) = 1 that is a permutation, cheap enough to compute per item for millions of videos.
_PRIMES = (1_000_003, 999_983, 1_000_033, 999_979, 1_000_037, 999_961, 1_000_039, 999_959)


def source_for_item(item: int, n: int, seed: int) -> int:
    """Index of the video that training item `item` reads: every pass of n items visits each video exactly once."""
    p, k = divmod(int(item), n)
    rng = np.random.default_rng([seed, p])
    a = _PRIMES[p % len(_PRIMES)]
    while math.gcd(a, n) != 1:
        a += 2
    return int((k * a + int(rng.integers(n))) % n)


def sampled_frames(source: str, fps: float, size: int, timeout_s: float, storage_options: dict | None):
    """All frames of `source` at `fps` (timestamp rule), short side → `size`, centre crop: `(N, size, size, 3)` uint8,
    or `None` (with a warning naming the reason) when the video cannot be decoded."""
    cfg = DecodeConfig(fps=fps, size=size, num_frames=1, stride=1, tail="skip", timeout_s=timeout_s)
    res = decode_windows(source, cfg, storage_options=storage_options)
    if res.status != "ok" or not res.windows:
        log.warning("training input skipped: %s: %s %s", source, res.status, res.message)
        return None
    return np.concatenate([w.frames for w in res.windows], axis=0)


def random_window(frames: np.ndarray, num_frames: int, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """A random run of `num_frames` consecutive samples from `(N, H, W, 3)`; short videos repeat their last frame.

    Returns `(clip (num_frames, H, W, 3) uint8, start index)`.
    """
    n = frames.shape[0]
    if n >= num_frames:
        start = int(rng.integers(0, n - num_frames + 1))
        return frames[start : start + num_frames], start
    pad = np.repeat(frames[-1:], num_frames - n, axis=0)
    return np.concatenate([frames, pad], axis=0), 0


def _decode_items(batch: dict, *, urls: list[str], seed: int, fps: float, size: int, num_frames: int,
                  clips_per_video: int, timeout_s: float, storage_options: dict | None) -> dict:
    """map_batches body: item ids -> training clips (rows of uint8 video)."""
    clips = []
    for item in batch["id"]:
        src = urls[source_for_item(int(item), len(urls), seed)]
        frames = sampled_frames(src, fps, size, timeout_s, storage_options)
        if frames is None:
            continue
        rng = np.random.default_rng([seed, int(item), 7])
        for _ in range(clips_per_video):
            clips.append(random_window(frames, num_frames, rng)[0])
    if not clips:
        return {"video": np.zeros((0, num_frames, size, size, 3), np.uint8)}
    return {"video": np.stack(clips)}


def build_train_dataset(urls: list[str], *, steps: int, global_batch: int, num_frames: int, size: int, fps: float,
                        clips_per_video: int, seed: int, timeout_s: float, storage_options: dict | None,
                        decode_num_cpus: float = 1.0, decode_concurrency: int | None = None):
    """The streaming training dataset: rows `{"video": (num_frames, size, size, 3) uint8}` for the whole run."""
    import ray

    if not urls:
        raise ValueError("no training videos: check `input` (prefix or manifest) and `data.extensions`")
    n_items = math.ceil(steps * global_batch / clips_per_video) + global_batch
    fn = partial(_decode_items, urls=list(urls), seed=seed, fps=fps, size=size, num_frames=num_frames,
                 clips_per_video=clips_per_video, timeout_s=timeout_s, storage_options=storage_options)
    # Small blocks (a few videos each) keep decode tasks short, so the stream starts fast and balances well.
    num_blocks = max(1, min(n_items, math.ceil(n_items / 2)))
    kwargs = {"num_cpus": decode_num_cpus, "batch_size": 1, "batch_format": "numpy"}
    if decode_concurrency:
        kwargs["concurrency"] = decode_concurrency
    return ray.data.range(n_items, override_num_blocks=num_blocks).map_batches(fn, **kwargs)


def load_val_clips(urls: Iterable[str], *, max_clips: int, num_frames: int, size: int, fps: float, timeout_s: float,
                   storage_options: dict | None) -> tuple[np.ndarray, list[str]]:
    """Deterministic validation clips: the first window of each held-out video, `(K, T, H, W, 3)` uint8 + sources."""
    clips, names = [], []
    for src in urls:
        if len(clips) >= max_clips:
            break
        frames = sampled_frames(src, fps, size, timeout_s, storage_options)
        if frames is None:
            continue
        clips.append(frames[:num_frames] if len(frames) >= num_frames else
                     np.concatenate([frames, np.repeat(frames[-1:], num_frames - len(frames), 0)]))
        names.append(src)
    if not clips:
        return np.zeros((0, num_frames, size, size, 3), np.uint8), []
    return np.stack(clips), names


def to_model_input(video_uint8, device=None):
    """`(B, T, H, W, 3)` uint8 (torch) -> `(B, 3, T, H, W)` float32 in [-1, 1] (`p/255`, then `(v − 0.5)/0.5`)."""
    import torch

    x = video_uint8.to(device, non_blocking=True) if device is not None else video_uint8
    return x.permute(0, 4, 1, 2, 3).float().div_(127.5).sub_(1.0).contiguous() if x.dtype == torch.uint8 else x
