"""Configuration schema of the main job `jobs/tokenize_corpus.py` (corpus -> Parquet token shards).

Loaded with `pipeline.config.load_config(TokenizeJobConfig, yaml, overrides)`: defaults here <- 
`jobs/configs/tokenize_corpus.yaml` <- `key=value` overrides. Top-level `input`, `output`, `preset`, `checkpoint` are
the keys users set most; sections group the rest. Every field is validated in `__post_init__` with a message that names
the key and the fix. Credentials (`storage.key`, `storage.secret`, `storage.token`) are redacted by `pipeline.config.redact`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

TAIL_POLICIES = ("skip", "pad", "overlap")  # pipeline.windows


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise ValueError(msg)


@dataclass
class DecodeSection:
    """Decode + resample + window settings (mirrors `pipeline.decode.DecodeConfig`)."""

    fps: float = 3.0  # target sample rate (VidTok trains on 3 FPS)
    size: int = 256  # short side resized to `size`, then a centre crop to size x size (the tokenizer batches windows)
    num_frames: int = 0  # frames per window; 0 = the tokenizer's default (17 causal, 16 non-causal)
    stride: int = 0  # window start step in sampled frames; 0 = num_frames (non-overlapping)
    tail: str = "skip"  # what happens to a last partial window (see pipeline.decode)
    timeout_s: float = 120.0  # per-file decode limit; a file over it gets status `timeout`
    max_duration_s: float = 4 * 3600.0  # longer sources get status `too_large`
    max_pixels: int = 4096 * 4096  # larger frames get status `too_large`
    backend: str = "auto"  # auto (probe decides) | decord | pyav
    num_cpus: float = 1.0  # CPUs reserved per decode task
    inputs_per_task: int = 2  # inputs a decode task handles; small keeps decoded windows in memory bounded
    memory_mb: int = 1024  # heap reserved per decode task (one video's windows + the decoder); also keeps Ray from
    #                        fusing decode into the tokenizer actors, which would serialise decoding on the GPU actor

    def __post_init__(self):
        _check(self.fps > 0, f"decode.fps must be > 0, found {self.fps}")
        _check(self.size >= 8, f"decode.size must be >= 8 (the tokenizer batches fixed-size windows), found {self.size}")
        _check(self.num_frames >= 0, f"decode.num_frames must be >= 0 (0 = model default), found {self.num_frames}")
        _check(self.stride >= 0, f"decode.stride must be >= 0 (0 = num_frames), found {self.stride}")
        _check(self.tail in TAIL_POLICIES, f"decode.tail must be one of {TAIL_POLICIES}, found {self.tail!r}")
        _check(self.num_cpus > 0, f"decode.num_cpus must be > 0, found {self.num_cpus}")
        _check(self.memory_mb > 0, f"decode.memory_mb must be > 0, found {self.memory_mb}")
        _check(self.inputs_per_task >= 1, f"decode.inputs_per_task must be >= 1, found {self.inputs_per_task}")


@dataclass
class TokenizerSection:
    """The GPU actor pool that runs the VidTok encoder."""

    batch_size: int = 8  # windows per encoder call (17x256x256 windows: 8 fits easily in 40 GB with bf16)
    num_gpus: float = -1.0  # GPUs per actor; -1 = 1 if the cluster has GPUs, else 0 (CPU actors)
    num_cpus: float = 1.0  # CPUs per actor (feeding the GPU: uint8 -> float, host<->device copies)
    min_actors: int = 1  # actor pool lower bound
    max_actors: int = 1  # actor pool upper bound (autoscaling clusters: the number of GPUs you allow)
    precision: str = "auto"  # auto (bf16 autocast on CUDA, fp32 on CPU) | fp32 | bf16
    latent_dtype: str = "float16"  # KL latents stored as float16 | bfloat16 (FSQ writes int32 ids)

    def __post_init__(self):
        _check(self.num_cpus >= 0, f"tokenizer.num_cpus must be >= 0, found {self.num_cpus}")
        _check(self.batch_size >= 1, f"tokenizer.batch_size must be >= 1, found {self.batch_size}")
        _check(self.min_actors >= 1, f"tokenizer.min_actors must be >= 1, found {self.min_actors}")
        _check(self.max_actors >= self.min_actors,
               f"tokenizer.max_actors ({self.max_actors}) must be >= tokenizer.min_actors ({self.min_actors})")
        _check(self.precision in ("auto", "fp32", "bf16"), f"tokenizer.precision must be auto|fp32|bf16, found {self.precision!r}")
        _check(self.latent_dtype in ("float16", "bfloat16"),
               f"tokenizer.latent_dtype must be float16|bfloat16, found {self.latent_dtype!r}")


@dataclass
class OutputSection:
    """Shard sizes and how often the driver commits status rows."""

    shard_rows: int = 2048  # max windows per token shard
    shard_max_mb: float = 256.0  # max token bytes per shard (caps shard_rows for large KL latents)
    status_every_inputs: int = 256  # flush a status shard after this many finished inputs ...
    status_every_s: float = 30.0  # ... or this many seconds, whichever first (and at the end)

    def __post_init__(self):
        _check(self.shard_rows >= 1, f"output.shard_rows must be >= 1, found {self.shard_rows}")
        _check(self.shard_max_mb > 0, f"output.shard_max_mb must be > 0, found {self.shard_max_mb}")
        _check(self.status_every_inputs >= 1, f"output.status_every_inputs must be >= 1, found {self.status_every_inputs}")


@dataclass
class StorageSection:
    """fsspec storage options for s3:// (and other) URLs; empty = the standard AWS environment / profile."""

    endpoint_url: Optional[str] = None  # S3-compatible endpoint (MinIO, Ceph, a test server)
    key: Optional[str] = None  # access key id (redacted in logs and the resolved config)
    secret: Optional[str] = None  # secret access key (redacted)
    token: Optional[str] = None  # session token (redacted)
    anon: bool = False  # anonymous access to public buckets

    def storage_options(self) -> dict:
        """Options for `fsspec.url_to_fs` / s3fs (region comes from AWS_DEFAULT_REGION, see tests/conftest.py)."""
        opts: dict = {}
        if self.endpoint_url:
            opts["client_kwargs"] = {"endpoint_url": self.endpoint_url}
        if self.key:
            opts["key"] = self.key
        if self.secret:
            opts["secret"] = self.secret
        if self.token:
            opts["token"] = self.token
        if self.anon:
            opts["anon"] = True
        return opts


@dataclass
class RaySection:
    address: Optional[str] = None  # None: RAY_ADDRESS (set by `ray job submit`) or a private local Ray
    num_cpus: Optional[int] = None  # local Ray only
    object_store_mb: int = 1024  # local Ray only
    target_block_mb: int = 64  # Ray Data block size: a few 3.3 MB windows per block keeps memory bounded


@dataclass
class SampleSection:
    """The embedded default corpus (used when `input` is empty)."""

    dir: str = "sample_corpus"
    num_clips: int = 4
    seconds: float = 6.5  # 6.5 s at 3 FPS = 19 sampled frames = one 17-frame window per clip
    fps: float = 24.0
    width: int = 160
    height: int = 120


@dataclass
class TokenizeJobConfig:
    """`python jobs/tokenize_corpus.py [config.yaml] key=value ...`"""

    input: str = ""  # URL prefix (s3://, gs://, path) or manifest (.csv/.parquet/.jsonl); empty = generated sample corpus
    output: str = "out/tokens_demo"  # where tokens/, status/, summary.json, resolved_config.yaml go
    preset: str = "vidtok_fsq_causal_488_32768_tiny"  # vidtok.list_presets(); `_tiny` twins are for CI / the demo
    checkpoint: Optional[str] = None  # path/URL of official weights; None = RANDOM weights (said loudly)
    seed: int = 0  # random-weight seed (only without a checkpoint)
    manifest_column: str = "path"  # path column of a manifest (VidTok .csv meta: `videos`, relative to data_dir)
    data_dir: Optional[str] = None  # prefix for relative manifest paths (default: the manifest's folder)
    extensions: list[str] = field(default_factory=lambda: [
        ".mp4", ".mkv", ".webm", ".avi", ".mov", ".mpg", ".mpeg", ".m4v", ".ts", ".flv", ".wmv", ".ogv"])
    limit: int = 0  # process at most this many inputs (0 = all); handy for a smoke run
    decode: DecodeSection = field(default_factory=DecodeSection)
    tokenizer: TokenizerSection = field(default_factory=TokenizerSection)
    shards: OutputSection = field(default_factory=OutputSection)
    storage: StorageSection = field(default_factory=StorageSection)
    ray: RaySection = field(default_factory=RaySection)
    sample: SampleSection = field(default_factory=SampleSection)

    def __post_init__(self):
        _check(bool(self.output), "output must be set (a local folder or s3://bucket/prefix)")
        _check(bool(self.preset), "preset must name a VidTok preset (see vidtok.list_presets())")
        _check(self.limit >= 0, f"limit must be >= 0, found {self.limit}")
        self.extensions = [e.lower() if e.startswith(".") else "." + e.lower() for e in self.extensions]

    def identity(self) -> dict:
        """The settings that define what a token row means; re-running into the same output must not change them."""
        d = self.decode
        return {"preset": self.preset, "checkpoint": self.checkpoint, "seed": self.seed if not self.checkpoint else None,
                "fps": d.fps, "size": d.size, "num_frames": d.num_frames, "stride": d.stride, "tail": d.tail,
                "latent_dtype": self.tokenizer.latent_dtype}
