"""Configuration of the two-stage VidTok training jobs (`jobs/train_stage1.py`, `jobs/train_stage2.py`).

Loaded with `pipeline.config.load_config(TrainConfig, yaml, overrides)`: dataclass defaults <- YAML <- `key=value`.
Top-level keys the cluster guide uses: `input`, `output` (Ray `RunConfig.storage_path`: s3://, gs:// or local),
`index` (the video index folder training clips take their sources' probe results from: `pipeline/decode/index.py`),
`preset`, `steps`, `batch_size`, `num_workers`, `use_gpu`, `init_from` (stage 2). Sections: `decode.*` (the decode
settings every job shares: `pipeline.decode.DecodeConfig`), `decode_task.*`, `data.*`, `optim.*`
(`vidtok.train_step.OptimConfig`), `loss.*` (`vidtok.losses.LossConfig`), `storage.*`, `ray.*`.

`schedule` fills every schedule-dependent key left unset (`None`), so an explicit value always wins:

| schedule | stage 1 (full model)                    | stage 2 (decoder only, encoder frozen)   |
|----------|-----------------------------------------|------------------------------------------|
| paper    | 50 000 steps, global batch 16, 128×128  | 30 000 steps, global batch 8, 256×256    |
| tiny     | 8 steps, batch 2, 32×32 (CI / laptop)   | 6 steps, batch 2, 32×32                  |

Both use 3 FPS clips of 17 frames (causal) / 16 (non-causal), Adam lr 1e-5 constant (spec §12); `decode.size` is
the square crop side. `batch_size` is the
GLOBAL batch (the paper's figure); each of `num_workers` workers takes `batch_size / num_workers` clips per step.
The tiny schedule sets `loss.perceptual_weight=0` unless given: LPIPS needs the ImageNet VGG16 file, which the
embedded default cannot assume on a laptop with no downloads (docs/training.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from pipeline.config import VIDEO_EXTENSIONS, DecodeTaskConfig, RayConfig, StorageConfig, check_preset
from pipeline.decode import DecodeConfig
from pipeline.decode.index import check_index_url
from vidtok.losses.vidtok_loss import LossConfig
from vidtok.train_step import OptimConfig

PLACEMENT_STRATEGIES = ("PACK", "SPREAD", "STRICT_SPREAD", "STRICT_PACK")

SCHEDULES: dict[str, dict[int, dict]] = {
    "paper": {
        1: dict(steps=50_000, batch_size=16, size=128, checkpoint_every=5000, val_every=2000, log_every=50),
        2: dict(steps=30_000, batch_size=8, size=256, checkpoint_every=5000, val_every=2000, log_every=50),
    },
    "tiny": {
        1: dict(steps=8, batch_size=2, size=32, checkpoint_every=4, val_every=4, log_every=1, perceptual_weight=0.0,
                disc_start=5, disc_ndf=16),
        2: dict(steps=6, batch_size=2, size=32, checkpoint_every=3, val_every=3, log_every=1, perceptual_weight=0.0,
                disc_start=5, disc_ndf=16),
    },
}


@dataclass
class DataConfig:
    """The training stream (`pipeline/train/data.py`); what is decoded and how is `decode.*`."""

    clips_per_video: int = 1  # random windows drawn per decoded video per pass
    extensions: list[str] = field(default_factory=lambda: list(VIDEO_EXTENSIONS))
    prefetch_batches: int = 4  # per worker, so the step never waits on decoding in steady state
    shuffle_buffer_clips: int = 64  # per worker: the fixed training order mixes at least this many clips at a time
    #                                 (a seeded permutation per round, pipeline/train/order.py), so the clips of one
    #                                 video spread over batches; 0: no mixing
    sample_corpus_clips: int = 6  # embedded default: clips generated when `input` is empty
    frames: str = ""  # frames cache (jobs/cache_frames.py output) to read clips from; "" = decode every source
    stall_timeout_s: float = 900.0  # a rank without a batch this long fails its worker, and FailureConfig restarts
    #                                 the group from the last checkpoint (pipeline/train/stream.py: GuardedBatches);
    #                                 0 = wait forever (then torch's 30-min collective timeout ends a stalled step)


@dataclass
class TrainConfig:
    """One training stage. `None` values are filled from `schedule` (see module docstring)."""

    stage: int = 1  # 1: full model; 2: decoder only, encoder frozen
    schedule: str = "tiny"  # paper | tiny: fills every schedule key left null
    preset: str = "vidtok_fsq_causal_488_32768_tiny"  # vidtok.list_presets(); drop `_tiny` for the real model
    input: str = ""  # prefix / manifest of training videos; "" = generate the sample corpus under `output`
    val_input: str = ""  # held-out videos; "" = hold out `val_fraction` of `input` (at least one video)
    val_fraction: float = 0.1  # share of `input` held out for validation when `val_input` is empty
    output: str = "runs"  # RunConfig.storage_path (s3://bucket/prefix, gs://..., or a local folder)
    name: Optional[str] = None  # run name under `output`; null = <preset>_stage<stage>
    index: str = ""  # video index folder (e.g. a tokenize output's _index/); "" = <output>/_index, built on first use
    init_from: Optional[str] = None  # stage 2: stage-1 run dir / checkpoint dir / official .ckpt; null = <output>/<preset>_stage1
    steps: Optional[int] = None  # training steps (batches); null: the schedule's
    batch_size: Optional[int] = None  # global batch (clips per step over all workers); null: the schedule's
    num_workers: int = 2  # Ray Train workers (one per GPU when use_gpu)
    use_gpu: bool = False  # one GPU per worker
    cpus_per_worker: float = 1.0  # CPUs per training worker (torch threads on CPU)
    placement_strategy: str = "PACK"  # Ray Train workers' placement group: PACK, SPREAD, STRICT_SPREAD (one per node)
    bf16: bool = True  # bf16 autocast on CUDA (official: bf16-mixed); ignored on CPU
    seed: int = 23  # weights, data order and per-rank random streams
    checkpoint_every: Optional[int] = None  # steps between checkpoints; null: the schedule's
    keep_checkpoints: int = 3  # newest checkpoints kept (resume needs one)
    max_failures: int = 2  # restarts from the last checkpoint when a worker is lost
    val_every: Optional[int] = None  # steps between validations (0 disables); null: the schedule's
    val_clips: int = 4  # clips per validation pass (rank 0)
    preview_clips: int = 2  # reconstructions written as mp4 + PNG per validation
    log_every: Optional[int] = None  # steps between metric reports; null: the schedule's
    export: bool = True  # write official-layout weights at the end
    dry_run: bool = False  # print the resolved schedule, the inputs and the train/val split, then exit (no Ray)
    decode: DecodeConfig = field(default_factory=DecodeConfig)  # size null: the schedule's (128 stage 1, 256 stage 2)
    decode_task: DecodeTaskConfig = field(default_factory=DecodeTaskConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    ray: RayConfig = field(default_factory=RayConfig)

    def __post_init__(self):
        check_preset("preset", self.preset)
        if self.stage not in (1, 2):
            raise ValueError(f"stage={self.stage}: must be 1 (full model) or 2 (decoder only)")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule={self.schedule!r}: choose one of {sorted(SCHEDULES)}")
        sched = SCHEDULES[self.schedule][self.stage]
        for key in ("steps", "batch_size", "checkpoint_every", "val_every", "log_every"):
            if getattr(self, key) is None:
                setattr(self, key, sched[key])
        if self.decode.size is None:
            self.decode.size = sched["size"]
        for key in ("perceptual_weight", "disc_start", "disc_ndf"):  # None: the user left it to the schedule
            if key in sched and getattr(self.loss, key) is None:
                setattr(self.loss, key, sched[key])
        if self.num_workers < 1:
            raise ValueError(f"num_workers={self.num_workers}: need at least 1 training worker")
        if self.batch_size % self.num_workers:
            raise ValueError(
                f"batch_size={self.batch_size} (global) is not divisible by num_workers={self.num_workers}; "
                f"use e.g. batch_size={self.num_workers * max(1, self.batch_size // self.num_workers)}"
            )
        if self.steps < 1 or self.checkpoint_every < 1 or self.val_every < 0:
            raise ValueError("steps and checkpoint_every must be >= 1, val_every >= 0 (0 disables validation)")
        if self.placement_strategy not in PLACEMENT_STRATEGIES:
            raise ValueError(f"placement_strategy={self.placement_strategy!r}: choose one of {PLACEMENT_STRATEGIES}")
        if not self.data.stall_timeout_s >= 0:
            raise ValueError(f"data.stall_timeout_s={self.data.stall_timeout_s}: seconds >= 0 (0: wait forever)")
        if self.data.shuffle_buffer_clips < 0 or self.data.clips_per_video < 1:
            raise ValueError(f"data.shuffle_buffer_clips={self.data.shuffle_buffer_clips}, data.clips_per_video="
                             f"{self.data.clips_per_video}: need shuffle_buffer_clips >= 0 (0: no mixing) and "
                             "clips_per_video >= 1")
        if self.keep_checkpoints < 1:
            raise ValueError(f"keep_checkpoints={self.keep_checkpoints}: keep at least 1 (resume needs it)")
        if not isinstance(self.decode.size, int):
            raise ValueError(f"decode.size={self.decode.size}: training crops square clips, give one int (e.g. 128)")
        if self.name is None:
            self.name = f"{self.preset}_stage{self.stage}"
        check_index_url("index", self.index)

    @property
    def storage_options(self) -> dict:
        return self.storage.storage_options()

    @property
    def per_worker_batch(self) -> int:
        return self.batch_size // self.num_workers
