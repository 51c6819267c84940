"""Configuration of the frames cache: the job schema of `jobs/cache_frames.py` (`CacheFramesJobConfig`: `input=`,
`output=`, `frames.*`, `decode.*`, ...); `FramesConfig` (what a cache holds, the `frames.*` keys, also the tokenize
job's side output) lives in `pipeline/frames/codec.py`, beside the formats, so the tokenize config can use it. Pure."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from pipeline.config import DecodeTaskConfig, RayConfig, StorageConfig
from pipeline.decode import DecodeConfig
from pipeline.decode.index import check_index_url
from pipeline.frames.codec import FramesConfig
from pipeline.tokenize.config import RetryConfig

__all__ = ["CacheFramesJobConfig", "FramesConfig"]


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
