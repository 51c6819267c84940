"""`DecodeConfig`: the one set of decode settings (the `decode.*` keys of every job: tokenize, train, evaluate).

One dataclass, composed by each job's config, so the keys and defaults cannot drift between jobs. A value of `None`
means "the default of whoever uses it": the jobs fill `size` and `num_frames` from the model and their own protocol
before decoding (`resolved`), while the library (`decode_windows`) reads `size=None` as native frames and
`num_frames=None` as 17. Pure: no Ray, no torch.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Optional

from .spatial import normalize_size
from .windows import TAIL_POLICIES, WindowPlan, plan_pieces, plan_windows

BACKENDS = ("auto", "decord", "pyav")
DEVICES = ("cpu", "cuda")
LIBRARY_NUM_FRAMES = 17  # a causal VidTok window; what `decode_windows` cuts when nobody says otherwise
MODEL_SIZE = 256  # decode.size when null for tokenizing and evaluating: VidTok's 256 x 256 windows


@dataclass
class DecodeConfig:
    """Decode, resample and window settings (`decode.<field>=...` in every job)."""

    fps: float = 3.0  # sample rate by presentation timestamps (VidTok trains on 3 FPS; the paper evaluates at 30)
    size: Any = None  # int s: short side -> s, centre crop s x s; [h, w]; null: the job's default (256, training: the schedule's)
    num_frames: Optional[int] = None  # frames per window; null: the model's default (17 causal, 16 non-causal)
    stride: Optional[int] = None  # window start step in sampled frames; null: num_frames (non-overlapping)
    tail: str = "skip"  # the samples after the last full window: skip | pad | overlap (pipeline/decode/windows.py)
    timeout_s: float = 120.0  # no new frame (before the first: no probe result) for this long -> status `timeout`
    max_wall_s: Optional[float] = None  # overall decode-time cap per file; null: timeout_s + 4 s per second of video
    max_duration_s: float = 4 * 3600.0  # longer sources get status `too_large`
    max_pixels: int = 7680 * 4320  # larger source frames (w x h) get status `too_large`
    max_bytes: int = 16 << 30  # larger files get status `too_large` (bounds the local spill, never memory: source.py)
    read_block_bytes: int = 4 << 20  # range-read size for remote objects (what a reader holds of a file)
    read_cache_bytes: int = 4 << 30  # local disk for a remote input's fetched blocks: each fetched once (source.py)
    spill_bytes: int = 64 << 20  # remote objects above this reach decord via a deleted-after temp file, not memory
    backend: str = "auto"  # auto = pyav (measured fastest) | decord (where the probe trusts it, else pyav) | pyav
    threads: int = 1  # decoder threads per file (1 for one decode task per core)
    device: str = "cpu"  # cpu | cuda (torchcodec on NVDEC; without CUDA or torchcodec: a log line, then the CPU path)
    isolate: bool = True  # decode in a child process (off only for debugging: no time limit, a crash takes the caller)
    buckets: Optional[list] = None  # [[h, w], ...]: each input goes to the bucket nearest its display aspect ratio (replaces size)
    whole_clip: bool = False  # one row per clip instead of fixed windows (v1.1 presets): pieces of at most max_frames
    max_frames: int = 256  # whole_clip: longest piece in sampled frames (memory: 256 x 256 x 256 x 3 = 50 MB)
    segment_s: Optional[float] = 120.0  # tokenize: a longer input (sampled s) is cut at key frames into segments, one decode task each (decode/segments.py); null: never

    def __post_init__(self):
        if not self.fps > 0:
            raise ValueError(f"decode.fps must be > 0, found {self.fps}")
        try:
            self.size = normalize_size(self.size)
        except ValueError as e:
            raise ValueError(f"decode.size: {e} (use null, 256, or [256, 448])") from None
        if self.num_frames is not None and self.num_frames < 1:
            raise ValueError(f"decode.num_frames must be >= 1 or null (the model's default), found {self.num_frames}")
        if self.stride is not None and self.stride < 1:
            raise ValueError(f"decode.stride must be >= 1 or null (= num_frames), found {self.stride}")
        if self.tail not in TAIL_POLICIES:
            raise ValueError(f"decode.tail must be one of {TAIL_POLICIES}, found {self.tail!r}")
        if self.backend not in BACKENDS:
            raise ValueError(f"decode.backend must be one of {BACKENDS}, found {self.backend!r}")
        if self.buckets is not None:
            try:
                self.buckets = [normalize_size(tuple(b)) for b in self.buckets]
            except (TypeError, ValueError):
                raise ValueError(f"decode.buckets must be a list of [h, w] pairs, found {self.buckets!r}") from None
            if not self.buckets or not all(isinstance(b, tuple) for b in self.buckets):
                raise ValueError(f"decode.buckets must be a non-empty list of [h, w] pairs, found {self.buckets!r}")
        if self.device not in DEVICES:
            raise ValueError(f"decode.device must be one of {DEVICES}, found {self.device!r}")
        if self.segment_s is not None and not self.segment_s > 0:
            raise ValueError(f"decode.segment_s must be > 0 seconds or null (never cut), found {self.segment_s}")
        if self.max_wall_s is not None and not self.max_wall_s > 0:
            raise ValueError(f"decode.max_wall_s must be > 0 or null (scaled to the duration), found {self.max_wall_s}")
        for name in ("timeout_s", "max_pixels", "max_duration_s", "max_bytes", "read_block_bytes", "read_cache_bytes",
                     "spill_bytes", "threads", "max_frames"):
            if not getattr(self, name) > 0:
                raise ValueError(f"decode.{name} must be > 0, found {getattr(self, name)}")

    @property
    def frames_per_window(self) -> int:
        return self.num_frames if self.num_frames is not None else LIBRARY_NUM_FRAMES

    def wall_limit_s(self, duration_s: float) -> float:
        """The overall cap for a video of ``duration_s`` seconds (``max_wall_s``, or scaled to the duration)."""
        return self.max_wall_s if self.max_wall_s is not None else self.timeout_s + 4.0 * max(duration_s, 0.0)

    @property
    def window_stride(self) -> int:
        return self.stride if self.stride is not None else self.frames_per_window

    def window_plan(self, num_samples: int) -> WindowPlan:
        """The windows (spans over the sampled frames) of a video with `num_samples` samples under these settings."""
        if self.whole_clip:
            return plan_pieces(num_samples, self.max_frames)
        return plan_windows(num_samples, self.frames_per_window, self.window_stride, self.tail)

    def output_sizes(self) -> list[tuple[int, int]]:
        """Every (h, w) decoded frames can have: the buckets, or the one size."""
        return list(self.buckets) if self.buckets else [self.output_hw()]

    def for_model(self, model) -> "DecodeConfig":
        """These settings resolved for a VidTok model (a `vidtok.VidTokConfig`, pure arithmetic: no model is built):
        its window length where `num_frames` is null, `MODEL_SIZE` where `size` is, the stride where it is."""
        out = self.resolved(num_frames=model.default_num_frames, size=MODEL_SIZE)
        return out.resolved(stride=out.window_stride)

    def resolved(self, *, num_frames: int | None = None, size: Any = None, **changes) -> "DecodeConfig":
        """A copy with every `None` that the caller knows filled in (`num_frames`, `size`) plus `changes`."""
        return dataclasses.replace(self, num_frames=self.num_frames if self.num_frames is not None else num_frames,
                                   size=self.size if self.size is not None else size, **changes)

    def output_hw(self) -> tuple[int, int]:
        """(h, w) of the decoded frames; needs a concrete `size`."""
        if self.size is None:
            raise ValueError("decode.size is null here: the caller must resolve it first (DecodeConfig.resolved)")
        return (self.size, self.size) if isinstance(self.size, int) else tuple(self.size)
