"""A training stage resolved once on the driver: `TrainRun`, the one object the dry run, the driver and every Ray
Train worker read (`pipeline/train/run.py`, `pipeline/train/loop.py`).

`TrainRun.of(cfg)` is pure (no listing, no Ray, no model built): the config, the run's paths (`TrainPaths`), the
decode settings with the schedule's crop size and the preset's window length filled in (`vidtok.preset_config(...)
.default_num_frames`: config arithmetic), the export URL (None when `export=false`) and the storage options.
`with_inputs` adds what the driver found: the training listing (a Ray object ref, so the list goes once to the
object store, not into every worker's config) and the validation videos; `fail_at_step` is the tests' failure drill.
Downstream code reads these fields, never `cfg.decode` or `cfg.storage_options` beside them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from pipeline.decode import DecodeConfig
from pipeline.decode.index import job_index_url
from pipeline.storage import is_remote, join, local_path
from pipeline.train.checkpoint import export_name
from pipeline.train.config import TrainConfig
from vidtok import preset_config


@dataclass(frozen=True)
class TrainPaths:
    """Where one stage reads and writes (absolute local paths: Ray workers run in another working directory)."""

    output: str  # RunConfig storage path as the user gave it (local paths made absolute)
    run_dir: str  # <output>/<name>
    init_from: str | None  # stage 2: what to start from
    index: str = ""  # the video index clips are read through: `index=`, or <output>/_index (shared by both stages)

    @classmethod
    def of(cls, cfg: TrainConfig) -> "TrainPaths":
        output = cfg.output if is_remote(cfg.output) else local_path(cfg.output)
        init_from = None
        if cfg.stage == 2:
            init_from = cfg.init_from or join(output, f"{cfg.preset}_stage1")
            init_from = init_from if is_remote(init_from) else local_path(init_from)
        return cls(output, join(output, cfg.name), init_from, job_index_url(output, cfg.index))


@dataclass(frozen=True)
class TrainRun:
    """One stage, resolved: what the driver runs and the only thing each worker receives."""

    cfg: TrainConfig
    paths: TrainPaths
    decode: DecodeConfig  # `cfg.decode` with `size` (the schedule's) and `num_frames` (the preset's) filled in
    export: str | None  # <run>/export/<preset>_stage<s>_step<steps>.ckpt; None: `export=false`
    storage_options: dict
    train_urls: Any = None  # Ray ObjectRef of the training listing (list[str]), set by `with_inputs`
    val_urls: tuple[str, ...] = ()
    fail_at_step: int | None = None  # tests only: the last rank kills itself once at this step (loop.py)

    @classmethod
    def of(cls, cfg: TrainConfig, *, fail_at_step: int | None = None) -> "TrainRun":
        paths = TrainPaths.of(cfg)
        decode = cfg.decode.resolved(num_frames=preset_config(cfg.preset).default_num_frames)
        export = join(paths.run_dir, "export", export_name(cfg, cfg.steps)) if cfg.export else None
        return cls(cfg, paths, decode, export, cfg.storage_options, fail_at_step=fail_at_step)

    def with_inputs(self, train_urls: Any, val_urls: list[str]) -> "TrainRun":
        """This run with its listing: `train_urls` an object ref (`ray.put(list)`) or the list itself."""
        return dataclasses.replace(self, train_urls=train_urls, val_urls=tuple(val_urls))

    @property
    def num_frames(self) -> int:
        return self.decode.num_frames
