"""Configuration of the two-stage VidTok training jobs (`jobs/train_stage1.py`, `jobs/train_stage2.py`).

Loaded with `pipeline.config.load_config(TrainConfig, yaml, overrides)`: dataclass defaults <- YAML <- `key=value`.
Top-level keys the cluster guide uses: `input`, `output` (Ray `RunConfig.storage_path`: s3://, gs:// or local),
`preset`, `steps`, `batch_size`, `num_workers`, `use_gpu`, `init_from` (stage 2).

`schedule` fills every schedule-dependent key left unset (`None`):

| schedule | stage 1 (full model)                    | stage 2 (decoder only, encoder frozen)   |
|----------|-----------------------------------------|------------------------------------------|
| paper    | 50 000 steps, global batch 16, 128×128  | 30 000 steps, global batch 8, 256×256    |
| tiny     | 8 steps, batch 2, 32×32 (CI / laptop)   | 6 steps, batch 2, 32×32                  |

Both use 3 FPS clips of 17 frames (causal) / 16 (non-causal), Adam lr 1e-5 constant (spec §12). `batch_size` is the
GLOBAL batch (the paper's figure); each of `num_workers` workers takes `batch_size / num_workers` clips per step.
The tiny schedule sets `loss.perceptual_weight=0` unless given: LPIPS needs the ImageNet VGG16 file, which the
embedded default cannot assume on a laptop with no downloads (docs/training.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from pipeline.tokenize_config import StorageSection
from vidtok.losses.vidtok_loss import LossConfig

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
    """Training/validation clips from object storage through `pipeline.decode` (spec §13.1, at exact 3 FPS)."""

    fps: float = 3.0
    num_frames: Optional[int] = None  # None: the model's default (17 causal / 16 non-causal)
    clips_per_video: int = 1  # random windows drawn per decoded video per pass
    extensions: list[str] = field(default_factory=lambda: [".mp4", ".mkv", ".webm", ".mov", ".avi", ".mpg", ".mpeg"])
    decode_concurrency: Optional[int] = None  # decode tasks in flight (None: Ray decides)
    decode_num_cpus: float = 1.0
    prefetch_batches: int = 4  # per worker, so the step never waits on decoding in steady state
    timeout_s: float = 120.0  # per video decode limit
    sample_corpus_clips: int = 6  # embedded default: clips generated when `input` is empty


@dataclass
class TrainConfig:
    """One training stage. `None` values are filled from `schedule` (see module docstring)."""

    stage: int = 1
    schedule: str = "tiny"  # "paper" | "tiny"
    preset: str = "vidtok_fsq_causal_488_32768_tiny"
    input: str = ""  # prefix / manifest of training videos; "" = generate the sample corpus under `output`
    val_input: str = ""  # held-out videos; "" = hold out `val_fraction` of `input` (at least one video)
    val_fraction: float = 0.1
    output: str = "runs"  # RunConfig.storage_path (s3://bucket/prefix, gs://..., or a local folder)
    name: str = ""  # run name under `output`; "" = <preset>_stage<stage>
    init_from: str = ""  # stage 2: stage-1 run dir / checkpoint dir / official .ckpt; "" = <output>/<preset>_stage1 (latest checkpoint)
    steps: Optional[int] = None
    batch_size: Optional[int] = None  # global batch (clips per step over all workers)
    size: Optional[int] = None  # square crop side after short-side resize
    num_workers: int = 2
    use_gpu: bool = False
    cpus_per_worker: float = 1.0
    bf16: bool = True  # bf16 autocast on CUDA (official: bf16-mixed); ignored on CPU
    lr: float = 1e-5
    grad_clip: float = 20.0
    seed: int = 23
    checkpoint_every: Optional[int] = None
    keep_checkpoints: int = 3
    max_failures: int = 2
    val_every: Optional[int] = None
    val_clips: int = 4  # clips per validation pass (rank 0)
    preview_clips: int = 2  # reconstructions written as mp4 + PNG per validation
    log_every: Optional[int] = None
    export: bool = True  # write official-layout weights at the end
    storage: StorageSection = field(default_factory=StorageSection)  # s3 endpoint/credentials (as the tokenize job)
    data: DataConfig = field(default_factory=DataConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    fail_at_step: int = 0  # failure drill: the last rank exits hard at this step, once per run (0 = never)
    ray_address: Optional[str] = None  # None: $RAY_ADDRESS or a private local Ray

    def __post_init__(self):
        if self.stage not in (1, 2):
            raise ValueError(f"stage={self.stage}: must be 1 (full model) or 2 (decoder only)")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule={self.schedule!r}: choose one of {sorted(SCHEDULES)}")
        sched = SCHEDULES[self.schedule][self.stage]
        for key in ("steps", "batch_size", "size", "checkpoint_every", "val_every", "log_every"):
            if getattr(self, key) is None:
                setattr(self, key, sched[key])
        # Schedule loss defaults apply only where the user kept the released value.
        released = LossConfig()
        for key in ("perceptual_weight", "disc_start", "disc_ndf"):
            if key in sched and getattr(self.loss, key) == getattr(released, key):
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
        if self.keep_checkpoints < 1:
            raise ValueError(f"keep_checkpoints={self.keep_checkpoints}: keep at least 1 (resume needs it)")
        if not self.name:
            self.name = f"{self.preset}_stage{self.stage}"

    @property
    def storage_options(self) -> dict:
        return self.storage.storage_options()

    @property
    def per_worker_batch(self) -> int:
        return self.batch_size // self.num_workers
