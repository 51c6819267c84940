"""Configuration of the frames cache: `FramesConfig` (what a cache holds, the `frames.*` keys) and the job schema
of `jobs/cache_frames.py` (`CacheFramesJobConfig`: `input=`, `output=`, `frames.*`, `decode.*`, ...). Pure."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from pipeline.config import DecodeTaskConfig, RayConfig, StorageConfig
from pipeline.decode import DecodeConfig
from pipeline.decode.index import check_index_url
from pipeline.frames.codec import check_format
from pipeline.tokenize.config import RetryConfig


@dataclass
class FramesConfig:
    """What one cache holds: every `decode.fps` sample of each video, at `size`² (the decode stage's spatial policy)."""

    size: int = 256  # square side of the cached frames; stage 1 (128²) downscales them (docs/frames_cache.md)
    format: str = "zstd"  # zstd (lossless raw, fastest to read) | jpeg (q95, ~3x smaller; docs/frames_cache.md)
    frames_per_row: int = 32  # frames per Parquet row (one row group): a window reads one or two rows
    shard_mb: int = 256  # a shard is committed when its frames pass this size (memory per task: about this)

    def __post_init__(self):
        check_format(self.format)
        if not (isinstance(self.size, int) and self.size > 0):
            raise ValueError(f"frames.size={self.size!r}: one positive int (the square side, e.g. 256)")
        if self.frames_per_row < 1 or self.shard_mb < 1:
            raise ValueError(f"frames.frames_per_row={self.frames_per_row} and frames.shard_mb={self.shard_mb} "
                             "must be >= 1")


@dataclass
class CacheFramesJobConfig:
    """`python jobs/cache_frames.py [config.yaml] key=value ...`"""

    input: str = ""  # URL prefix (s3://, gs://, path) or manifest (.csv/.parquet/.jsonl) of the videos
    output: str = "out/frames_demo"  # the cache: shards/, index/, summary.json, resolved_config.yaml
    manifest_column: str = "path"  # path column of a manifest
    extensions: list[str] = field(default_factory=lambda: [
        ".mp4", ".mkv", ".webm", ".avi", ".mov", ".mpg", ".mpeg", ".m4v", ".ts", ".flv", ".wmv", ".ogv"])
    index: str = ""  # video index folder (probe results) read and written for the videos cached, e.g. the tokenize
    #                  job's <output>/_index; "" = <output>/_index (training's `index=` can point at it)
    append: bool = False  # add this input's videos to a cache that holds another input's (else refused)
    limit: Optional[int] = None  # cache at most this many new videos (null = all)
    videos_per_task: int = 8  # videos per Ray decode task (one index commit each)
    progress_every_s: float = 30.0  # seconds between progress lines while the job runs (the tokenize job's line)
    retry: RetryConfig = field(default_factory=RetryConfig)  # transient failures retried inside the run: the
    #                        tokenize job's `retry.*` keys and rule (pipeline/tokenize/failures.py); what still
    #                        fails is left for the next run (exit 3)
    frames: FramesConfig = field(default_factory=FramesConfig)
    decode: DecodeConfig = field(default_factory=DecodeConfig)  # fps, backend, limits; size/num_frames are frames.*
    decode_task: DecodeTaskConfig = field(default_factory=DecodeTaskConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    ray: RayConfig = field(default_factory=RayConfig)

    def __post_init__(self):
        if not self.input:
            raise ValueError("input must be set: a prefix or manifest of the videos to cache")
        if not self.output:
            raise ValueError("output must be set (a local folder or s3://bucket/prefix)")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit must be >= 1 or null (all inputs), found {self.limit}")
        if self.videos_per_task < 1:
            raise ValueError(f"videos_per_task must be >= 1, found {self.videos_per_task}")
        if not self.progress_every_s > 0:
            raise ValueError(f"progress_every_s must be > 0 seconds, found {self.progress_every_s}")
        check_index_url("index", self.index)
        if self.retry.permanent:
            raise ValueError("retry.permanent=true is not supported by the frames cache: a video's final index "
                             "row is its one row (pipeline/frames/store.py); cache such videos into a new output")
        self.extensions = [e.lower() if e.startswith(".") else "." + e.lower() for e in self.extensions]
