"""Training and validation clips for VidTok from object storage (spec §13.1, at exact 3 FPS via `pipeline.decode`).

Training stream (Ray Data, one dataset per `TorchTrainer` worker: `pipeline/train/stream.py`):

    the rank's item ids (lazy, `pipeline.train.items`) ──map source (per-pass permutation)──▶
        map_batches(decode + random window, CPU tasks, one item each)
        ──▶ {"video": (T, H, W, 3) uint8, "item"} in item order ──▶ batches in the fixed order (`pipeline.train.order`)

* Each item names one video (pass p = item // n_videos visits every video once, in an order that changes per pass)
  and yields `clips_per_video` random windows of `num_frames` consecutive 3 FPS samples, short side resized to
  `size` and centre-cropped (`pipeline.decode.iter_windows`, isolated and time-limited; a bad video yields no
  clip and a log line, never a crash).
* Only the window is decoded: the probe's timestamps give the N sample times without decoding, the start is drawn
  from them (`pipeline.decode.windows.RandomWindows` over the stride-1 windows), and the decoder seeks to the key
  frame before the window's first sample and decodes through its last, by the same timestamp rule — the clip is
  the one whole-video decoding would cut at that start (tests/train/test_data.py). AVI / MPEG-PS carry no timestamps
  to plan from: those still decode the whole video.
* Only the window is read (H.264 / HEVC in MP4/MOV): the probe result comes from the video index (`index`, default
  `<output>/_index`, shared by both stages; `pipeline/decode/index.py`: one keyed row per video, written on its
  first clip and re-written when the object changes), and the window's packets go straight to a codec context
  (`pipeline/decode/packets.py`), so the store serves the bytes from the key frame before the window's first sample
  to its last sample's packet, once (1.00x that range on S3, tests/train/test_data.py), plus one HEAD and the index
  row. Without an index each clip probes the header again (the `moov` box and the first read block); other
  containers and codecs seek and decode through the container, reading whole read blocks.
* Window start: uniform over `[0, N − T]` of the N sampled frames; a video with fewer than T samples is padded by
  repeating its last frame (spec §13.1 step 7). This replaces the official frame-stride rule (which drifts at 25 fps
  and breaks on variable frame rate) by the project's timestamp rule; the randomness is the same in kind.
* With a frames cache (`data.frames=<url>`, built by `jobs/cache_frames.py`) the same starts are read from it instead
  of decoded (`pipeline/frames/read.py`; a 128² clip is the cached 256² window downscaled); a video the cache lacks
  is decoded from its source, logged and counted (`FramesCache.misses`).
* Clips of one video are consecutive in the stream; the training order mixes them across batches in seeded rounds
  of at least `data.shuffle_buffer_clips` clips (`pipeline.train.order`).
* A rank's dataset covers the rest of the run, so the stream never restarts between "epochs" and the decode tasks stay
  ahead of the trainers; the next positions are opened if failed videos leave it short. The ids are generated as the
  decode tasks ask for them (`pipeline.train.items`): the paper schedule's first batch comes in seconds, not the ~20
  minutes Ray Data took to create one read task per two of its 800,016 items.

Validation clips (`load_val_clips`): the first window of each held-out video, decoded once on rank 0.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from functools import partial
from typing import Iterable

import numpy as np

from pipeline.config import DecodeTaskConfig
from pipeline.decode import DecodeConfig, decode_windows, iter_windows
from pipeline.decode.index import VideoIndex, indexed_info
from pipeline.decode.windows import RandomWindows, pad_to_length
from pipeline.frames.read import cached_clips
from pipeline.train.items import item_dataset

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


def sampled_frames(source: str, decode: DecodeConfig, storage_options: dict | None):
    """All frames of `source` at `decode.fps` (timestamp rule), short side → `decode.size`, centre crop:
    `(N, size, size, 3)` uint8, or `None` (with a warning naming the reason) when the video cannot be decoded."""
    cfg = dataclasses.replace(decode, num_frames=1, stride=1, tail="skip")
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
    return pad_to_length(frames, num_frames), 0


def window_config(decode: DecodeConfig, num_frames: int) -> DecodeConfig:
    """The decode settings whose windows are the training clips: every start (stride 1), short videos padded."""
    return dataclasses.replace(decode, num_frames=num_frames, stride=1, tail="pad")


def random_clips(source: str, decode: DecodeConfig, num_frames: int, count: int, seed: tuple,
                 storage_options: dict | None, index: str = "") -> list[np.ndarray]:
    """`count` random clips `(num_frames, size, size, 3)` uint8 of `source`, decoding only their frames; the
    starts are those `random_window` draws with `np.random.default_rng(seed)` from the whole video's samples.
    `index`: a video index folder (URL) to take the probe result from, and to add it to on a miss."""
    choose = RandomWindows(tuple(seed), count)
    cfg = window_config(decode, num_frames)
    info = indexed_info(VideoIndex.at(index, storage_options), source, cfg, storage_options) if index else None
    stream = iter_windows(source, cfg, storage_options=storage_options, choose=choose, info=info)
    got = {w.index: w.frames for w in stream}
    res = stream.result
    if res.status != "ok" or not got:
        log.warning("training input skipped: %s: %s %s", source, res.status, res.message)
        return []
    return [got[w] for w in choose(res.num_windows_total)]  # draws with repeats come out as often as drawn


def _decode_items(batch: dict, *, urls: list[str], seed: int, decode: DecodeConfig, num_frames: int,
                  clips_per_video: int, storage_options: dict | None, frames: str = "", index: str = "") -> dict:
    """map_batches body: item ids -> training clips (rows: `video` uint8, `item` the id it came from); with a frames
    cache (`frames`, a URL) the clips are read from it at the same starts, and a video it lacks is decoded from its
    source, through the video index `index` (a URL; "" = probe each video)."""
    clips, items = [], []
    size = decode.size
    for item in batch["id"]:
        src = urls[source_for_item(int(item), len(urls), seed)]
        got = cached_clips(frames, storage_options, src, fps=decode.fps, num_frames=num_frames, count=clips_per_video,
                           seed=(seed, int(item), 7), size=size) if frames else None
        if got is None:
            got = random_clips(src, decode, num_frames, clips_per_video, (seed, int(item), 7), storage_options, index)
        clips += got
        items += [int(item)] * len(got)
    if not clips:
        return {"video": np.zeros((0, num_frames, size, size, 3), np.uint8), "item": np.zeros((0,), np.int64)}
    return {"video": np.stack(clips), "item": np.array(items, np.int64)}  # item: which id each clip came from


def num_train_items(steps: int, global_batch: int, clips_per_video: int) -> int:
    """Items (videos read) for a whole run: enough clips for every step, plus one batch of slack."""
    return math.ceil(steps * global_batch / clips_per_video) + global_batch


def build_train_dataset(urls: list[str], *, steps: int, global_batch: int, num_frames: int, decode: DecodeConfig,
                        clips_per_video: int, seed: int, storage_options: dict | None, decode_task=None, items=None,
                        frames: str = "", index: str = ""):
    """The streaming training dataset: rows `{"video": (num_frames, size, size, 3) uint8}` for the whole run;
    `decode_task` (`pipeline.config.DecodeTaskConfig`) sets what each decode task reserves; `frames`: a frames cache
    to read clips from (`data.frames`, pipeline/frames/); `index`: the video index folder (the `index` key; "" = no
    index, every clip probes its source). `items` (benchmarks only): a Ray Dataset of `{"id"}` rows to use instead
    of `pipeline.train.items.item_dataset`."""
    if not urls:
        raise ValueError("no training videos: check `input` (prefix or manifest) and `data.extensions`")
    n_items = num_train_items(steps, global_batch, clips_per_video)
    fn = partial(_decode_items, urls=list(urls), seed=seed, decode=decode, num_frames=num_frames,
                 clips_per_video=clips_per_video, storage_options=storage_options, frames=frames, index=index)
    # One item per decode task (the ids come one per block): short tasks, so the stream starts fast and balances.
    kwargs = {**(decode_task or DecodeTaskConfig()).ray_kwargs(), "batch_size": 1, "batch_format": "numpy"}
    return (item_dataset(n_items) if items is None else items).map_batches(fn, **kwargs)


def load_val_clips(urls: Iterable[str], *, max_clips: int, num_frames: int, decode: DecodeConfig,
                   storage_options: dict | None) -> tuple[np.ndarray, list[str]]:
    """Deterministic validation clips: the first window of each held-out video, `(K, T, H, W, 3)` uint8 + sources."""
    clips, names = [], []
    for src in urls:
        if len(clips) >= max_clips:
            break
        frames = sampled_frames(src, decode, storage_options)
        if frames is None:
            continue
        clips.append(pad_to_length(frames[:num_frames], num_frames))
        names.append(src)
    if not clips:
        return np.zeros((0, num_frames, decode.size, decode.size, 3), np.uint8), []
    return np.stack(clips), names
