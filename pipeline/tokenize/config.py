"""Configuration schema of the main job `jobs/tokenize_corpus.py` (corpus -> Parquet token shards).

Loaded with `pipeline.config.load_config(TokenizeJobConfig, yaml, overrides)`: defaults here <-
a YAML file given as `config=…` <- `key=value` overrides (the job has no YAML of its own: its defaults are these). Top-level `input`, `output`, `preset`, `checkpoint` are
the keys users set most; sections group the rest: `decode.*` is `pipeline.decode.DecodeConfig` (the same keys in every
job), `decode_task.*`, `storage.*` and `ray.*` are the shared sections of `pipeline.config`. Every field is validated in
`__post_init__` with a message that names the key and the fix. `None` means "the default of whoever uses it", never a
0 or -1 sentinel. Credentials (`storage.key`, `storage.secret`, `storage.token`) are redacted by `pipeline.config.redact`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from pipeline.config import VIDEO_EXTENSIONS, DecodeTaskConfig, RayConfig, StorageConfig, check_preset
from pipeline.decode import DecodeConfig
from pipeline.decode.index import check_index_url
from pipeline.decode.status import IO_ERROR, REASONS
from pipeline.frames.codec import FramesConfig
from pipeline.retry import RetryPolicy

MAX_INPUTS_PER_TASK = 256  # auto-sized decode tasks: a retried task redoes at most this many inputs
UNSIZED_INPUTS_PER_TASK = 8  # auto-sized decode tasks when no input size is known (a manifest without sizes)



@dataclass
class TokenizeDecodeTaskConfig(DecodeTaskConfig):
    """The tokenize job's `decode_task.*`: what a task reserves (`DecodeTaskConfig`) and how many inputs it takes."""

    inputs_per_task: Optional[int] = None  # inputs per decode task (one Ray task, one status commit); null = sized
    #                           by task_mb of input bytes (see `inputs_for`); memory is per input, not per task
    task_mb: int = 256  # input bytes per decode task when inputs_per_task is null: a Ray task costs ~20-50 ms, a 1-s
    #                     clip decodes in ~2 ms, an hour of 720p in minutes (benchmarks/small_clips.py)
    machine_burst: int = 8  # a decode process whose first N inputs all fail the same machine-pointing way
    #                         (unsupported_codec, decoder crash) stops the run as a broken environment, its rows
    #                         pending (pipeline/tokenize/machine.py); 0 = never

    def __post_init__(self):
        super().__post_init__()
        if not self.task_mb > 0:
            raise ValueError(f"decode_task.task_mb must be > 0, found {self.task_mb}")
        if self.inputs_per_task is not None and self.inputs_per_task < 1:
            raise ValueError(f"decode_task.inputs_per_task must be >= 1 or null, found {self.inputs_per_task}")
        if self.machine_burst < 0:
            raise ValueError(f"decode_task.machine_burst must be >= 0 (0: off), found {self.machine_burst}")

    def inputs_for(self, pending: int, pending_bytes: int, sized: int, slots: float) -> int:
        """Inputs per decode task for `pending` inputs, `sized` of them of known size summing to `pending_bytes`,
        on a cluster with `slots` decode slots now: `inputs_per_task` when set; otherwise `task_mb` of input bytes
        per task (so one-second clips share a task by the hundred and an hour-long video has one to itself),
        never so many that the cluster has fewer than 4 tasks per slot, between 1 and MAX_INPUTS_PER_TASK;
        UNSIZED_INPUTS_PER_TASK when no size is known (manifests without a size column)."""
        if self.inputs_per_task is not None:
            return self.inputs_per_task
        k = self.task_mb * 2**20 * sized / pending_bytes if sized and pending_bytes > 0 else UNSIZED_INPUTS_PER_TASK
        k = min(k, pending / (4 * max(slots, 1.0)))
        return int(max(1, min(MAX_INPUTS_PER_TASK, k)))


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise ValueError(msg)


@dataclass
class TokenizerConfig:
    """The GPU actor pool that runs the VidTok encoder."""

    batch_size: int = 8  # windows per encoder call (17x256x256 windows: 8 fits easily in 40 GB with bf16)
    num_gpus: Optional[float] = None  # GPUs per actor; null = 1 if the cluster has GPUs at start, else 0 (CPU actors)
    num_cpus: float = 1.0  # CPUs per actor (feeding the GPU: uint8 -> float, host<->device copies)
    min_actors: int = 1  # actor pool lower bound
    max_actors: int = 1  # actor pool upper bound (autoscaling clusters: the number of GPUs you allow)
    precision: str = "fp32"  # fp32 | bf16 (autocast on CUDA: ~5% of FSQ ids differ from fp32, docs/benchmarks.md) | auto (= bf16 on CUDA)
    latent_dtype: str = "float16"  # KL latents stored as float16 | bfloat16 (FSQ writes int32 ids)
    compile: Optional[str] = None  # torch.compile mode for the encoder (default | reduce-overhead | max-autotune); null = eager
    cudnn_benchmark: bool = True  # let cuDNN pick the fastest kernels for the fixed window shape (CUDA only)

    def __post_init__(self):
        _check(self.num_cpus >= 0, f"tokenizer.num_cpus must be >= 0, found {self.num_cpus}")
        _check(self.num_gpus is None or self.num_gpus >= 0,
               f"tokenizer.num_gpus must be >= 0 or null (auto), found {self.num_gpus}")
        _check(self.batch_size >= 1, f"tokenizer.batch_size must be >= 1, found {self.batch_size}")
        _check(self.min_actors >= 1, f"tokenizer.min_actors must be >= 1, found {self.min_actors}")
        _check(self.max_actors >= self.min_actors,
               f"tokenizer.max_actors ({self.max_actors}) must be >= tokenizer.min_actors ({self.min_actors})")
        _check(self.precision in ("auto", "fp32", "bf16"), f"tokenizer.precision must be auto|fp32|bf16, found {self.precision!r}")
        _check(self.latent_dtype in ("float16", "bfloat16"),
               f"tokenizer.latent_dtype must be float16|bfloat16, found {self.latent_dtype!r}")


@dataclass
class ShardsConfig:
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
class RetryConfig(RetryPolicy):
    """`retry.*`: transient failures retried inside a run (`pipeline/retry.py`; decode outcomes:
    `pipeline/tokenize/failures.py`). `attempts`, `base_s`, `max_s` and `deadline_s` apply to every input's decode
    and to every write of a shard, status shard or summary; the object-store client retries each request on its own
    first (`pipeline/storage.py`)."""

    transient: list[str] = field(default_factory=lambda: [IO_ERROR])  # reasons retried and, if still failing, left
    #                        pending (status row final=false, no _SUCCESS, non-zero exit; a re-run retries them)
    decoder_attempts: int = 2  # tries for `timeout` / a crashed decoder before that row is final (a repeated hang or
    #                        crash is the file); 1 = final at once
    permanent: bool = False  # also retry inputs whose newest status row is a final failure (corrupt, not_found, ...)

    def __post_init__(self):
        super().__post_init__()
        bad = [r for r in self.transient if r not in REASONS]
        _check(not bad, f"retry.transient: unknown reason(s) {bad}; choose from {list(REASONS)}")
        _check(self.decoder_attempts >= 1, f"retry.decoder_attempts must be >= 1, found {self.decoder_attempts}")
        self.transient = list(dict.fromkeys(self.transient))


@dataclass
class FramesOutputConfig(FramesConfig):
    """The tokenize job's `frames.*`: a frames cache written beside the tokens (`pipeline/frames/`), off by default."""

    output: str = ""  # also write every 3 FPS frame of each input decoded, at frames.size² (= decode.size), as a
    #                   frames cache here (training's data.frames=); "" = off. Decoded once for tokens and frames


@dataclass
class SampleConfig:
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
    checkpoint: Optional[str] = None  # path or URL of official weights; null = RANDOM weights (said loudly)
    seed: int = 0  # random-weight seed (only without a checkpoint)
    manifest_column: str = "path"  # path column of a manifest (VidTok .csv meta: `videos`, relative to data_dir)
    data_dir: Optional[str] = None  # prefix for relative manifest paths (default: the manifest's folder)
    extensions: list[str] = field(default_factory=lambda: list(VIDEO_EXTENSIONS))  # what is listed as a video
    append: bool = False  # add this input's videos to an output that holds another input's tokens (else refused)
    limit: Optional[int] = None  # process at most this many inputs (null = all); a smoke run: the output stays partial
    #                              (no _SUCCESS, summary "partial") until a run without limit completes it
    dry_run: bool = False  # list and plan, print counts and the estimated windows / video hours, write nothing
    dry_run_probe: int = 32  # dry run: inputs probed (container only, no decoding) to estimate windows; all if fewer
    index: str = ""  # video index folder the decode stage reads and writes probe results in (e.g. one shared with
    #                  other jobs over the same videos); "" = <output>/_index (training's `index=` can point at it)
    progress_every_s: float = 30.0  # seconds between progress lines (and Ray metric updates) while the job runs
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    frames: FramesOutputConfig = field(default_factory=FramesOutputConfig)
    decode_task: TokenizeDecodeTaskConfig = field(default_factory=TokenizeDecodeTaskConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    shards: ShardsConfig = field(default_factory=ShardsConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    retry: RetryConfig = field(default_factory=RetryConfig)
    ray: RayConfig = field(default_factory=RayConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)

    def __post_init__(self):
        _check(bool(self.output), "output must be set (a local folder or s3://bucket/prefix)")
        _check(bool(self.preset), "preset must name a VidTok preset (see vidtok.list_presets())")
        check_preset("preset", self.preset)
        _check(self.limit is None or self.limit >= 1, f"limit must be >= 1 or null (all inputs), found {self.limit}")
        _check(self.dry_run_probe >= 0, f"dry_run_probe must be >= 0 (0: no estimate), found {self.dry_run_probe}")
        check_index_url("index", self.index)
        check_index_url("frames.output", self.frames.output)
        _check(not self.frames.output or self.frames.output.rstrip("/") != self.output.rstrip("/"),
               f"frames.output={self.frames.output!r} is the token output: give the frames cache a folder of its own")
        _check(self.progress_every_s > 0, f"progress_every_s must be > 0 seconds, found {self.progress_every_s}")
        self.extensions = [e.lower() if e.startswith(".") else "." + e.lower() for e in self.extensions]

    def identity(self, decode: DecodeConfig) -> dict:
        """The settings that define what a token row means (with `decode` resolved against the model); re-running
        into the same output must not change them."""
        size = list(decode.size) if isinstance(decode.size, tuple) else decode.size
        return {"preset": self.preset, "checkpoint": self.checkpoint, "seed": self.seed if not self.checkpoint else None,
                "fps": decode.fps, "size": size, "num_frames": decode.num_frames, "stride": decode.stride,
                "tail": decode.tail, "latent_dtype": self.tokenizer.latent_dtype,
                **({"buckets": [list(b) for b in decode.buckets]} if decode.buckets else {}),
                **({"whole_clip": True, "max_frames": decode.max_frames} if decode.whole_clip else {})}
