"""Every job's `main`, its `--help` text and its defaults: the console commands (`[project.scripts]`) and the job
files (`python jobs/<job>.py`, what `ray job submit --working-dir .` runs) both call `run_command(job)` here.

    vidtok-tokenize            jobs/tokenize_corpus.py      vidtok-evaluate            jobs/evaluate.py
    vidtok-train-stage1        jobs/train_stage1.py         vidtok-reconstruct         jobs/reconstruct.py
    vidtok-train-stage2        jobs/train_stage2.py         vidtok-export-webdataset   jobs/export_webdataset.py
    vidtok-export              jobs/export.py (official layout + diffusers folder)
    vidtok-cache-frames        jobs/cache_frames.py (the training frames cache, docs/frames_cache.md)

A job's defaults are its schema's (the dataclass in `COMMANDS`), overlaid by `pipeline/configs/<job>.yaml` where one
exists: those files hold only what the job's embedded default changes (the comments on every key are in `--help`).
They ship inside the package, so a non-editable install runs every command. Each main imports its library lazily:
`--help` and a bad key never import Ray or torch.
"""

from __future__ import annotations

import importlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from pipeline.cli import run_job
from pipeline.config import ConfigError
from pipeline.errors import INCOMPLETE

CONFIGS = Path(__file__).resolve().parent / "configs"


@dataclass(frozen=True)
class Command:
    """One job: the schema its keys load into (`module:Class`), its main, its `--help` text."""

    schema: str
    main: Callable[..., int]
    doc: str

    def load_schema(self) -> type:
        module, name = self.schema.split(":")
        return getattr(importlib.import_module(module), name)


def default_yaml(job: str) -> Path | None:
    """`pipeline/configs/<job>.yaml` when the job has one (what its embedded default changes), else None."""
    path = CONFIGS / f"{job}.yaml"
    return path if path.exists() else None


def run_command(job: str, argv: Sequence[str] | None = None) -> int:
    """Run job `job` with `argv` (default: this process's arguments); returns the exit code (`pipeline.cli.run_job`)."""
    cmd = COMMANDS[job]
    return run_job(cmd.load_schema(), default_yaml(job), cmd.main, cmd.doc, argv)


# ------------------------------------------------------------------------------------------------------- tokenize
TOKENIZE_DOC = """Main job: tokenize a video corpus into Parquet token shards with Ray Data (exactly once, resumable).

    python jobs/tokenize_corpus.py                                   # embedded default: sample corpus, tiny preset
    python jobs/tokenize_corpus.py input=s3://b/videos output=s3://b/tokens preset=vidtok_fsq_causal_488_32768 \\
        checkpoint=/ckpt/vidtok_fsq_causal_488_32768.ckpt tokenizer.max_actors=8
    python jobs/tokenize_corpus.py input=s3://b/videos output=s3://b/tokens dry_run=true   # counts + estimate only
    ray job submit --working-dir . -- python jobs/tokenize_corpus.py input=... output=...

Config: the defaults below + key=value overrides (or config=my.yaml). Rerunning the same command resumes an interrupted
run; rerunning a finished one does nothing. Exit codes (pipeline/errors.py): 0 complete (or a limit= run done),
1 unexpected error, 2 configuration (also no credentials, access denied, missing input), 3 incomplete (inputs pending
after transient storage failures: re-run the same command), 4 Ray did not start, 5 broken decode environment on the
node the message names (its inputs left pending: fix or drain it, re-run). Layout: docs/tokenize.md; faults:
docs/operations.md §6.
"""


def tokenize_main(cfg) -> int:
    if cfg.dry_run:  # list, plan, estimate; no Ray, nothing written
        from pipeline.tokenize.dry_run import dry_run

        print(dry_run(cfg).text())
        return 0
    from pipeline.tokenize.run import run_tokenize, summary_text

    summary = run_tokenize(cfg)  # a broken decode environment raises MachineBroken: exit 5 (pipeline/errors.py)
    if summary.get("nothing_to_do"):
        print(f"nothing to do: {cfg.output} is complete ({summary.get('windows_total', '?')} windows); "
              "new inputs under the same input= would be picked up")
        return 0
    print(summary_text(summary))
    if summary["complete"]:
        return 0
    if summary.get("partial") and not summary.get("inputs_pending") and not summary.get("stopped"):
        print(f"PARTIAL: {summary['partial']} (the limit= you set); _SUCCESS not written. Run the same command "
              "without limit= to complete the output.", file=sys.stderr)
        return 0
    pending = summary["inputs_pending"]
    print(f"INCOMPLETE: {'all unfinished' if pending is None else pending} inputs pending after transient failures "
          f"{summary['pending_by_reason']}" + (f"; the run stopped on: {summary['stopped']}" if summary["stopped"]
                                               else "") + "; _SUCCESS not written. Re-running the same command "
          "retries them.", file=sys.stderr)
    return INCOMPLETE


# ------------------------------------------------------------------------------------------------------- training
STAGE1_DOC = """Stage 1 of VidTok training: the full model on 128×128, 3 FPS clips (paper schedule: 50 k steps, batch 16).

    python jobs/train_stage1.py                                   # embedded default: tiny preset, sample corpus, local
    python jobs/train_stage1.py schedule=paper preset=vidtok_fsq_causal_488_32768 \\
        input=s3://bucket/videos output=s3://bucket/runs num_workers=8 use_gpu=true

Re-running the same command resumes from the run's latest checkpoint. docs/training.md explains the keys.
"""

STAGE2_DOC = """Stage 2 of VidTok training: decoder-only fine-tuning on 256×256, 3 FPS clips with the encoder frozen (paper
schedule: 30 k steps, batch 8), starting from a stage-1 run or an official VidTok checkpoint.

    python jobs/train_stage2.py                  # embedded default: continues the default stage-1 run's latest checkpoint
    python jobs/train_stage2.py schedule=paper preset=vidtok_fsq_causal_488_32768 input=s3://bucket/videos \\
        output=s3://bucket/runs init_from=s3://bucket/runs/vidtok_fsq_causal_488_32768_stage1 use_gpu=true

`init_from` may be a stage-1 run dir (its latest checkpoint), one checkpoint dir, or an official `.ckpt`; null means
`<output>/<preset>_stage1`. Re-running the same command resumes stage 2 itself.
"""


def train_main(stage: int) -> Callable[..., int]:
    """The main of training stage `stage` (both stage jobs are this one function)."""

    def main(cfg) -> int:
        from pipeline.train.run import describe_run, run_training

        if cfg.stage != stage:
            raise ConfigError(f"stage={cfg.stage}: jobs/train_stage{stage}.py runs stage {stage}; use "
                              f"jobs/train_stage{cfg.stage}.py")
        if cfg.dry_run:  # schedule, inputs, split; Ray Train is not started
            print(describe_run(cfg))
            return 0
        summary = run_training(cfg)
        start = f" (initialised from {summary.init_from})" if stage == 2 else ""
        print(f"stage {stage} run:        {summary.run_dir}{start}")
        print(f"latest checkpoint:  {summary.checkpoint}")
        print(f"exported weights:   {summary.export}")
        if stage == 1:
            print(f"tensorboard:        tensorboard --logdir {summary.run_dir}/tensorboard")
            print("next: python jobs/train_stage2.py <same input/output/preset keys>")
        else:
            print(f"tokenize with them: python jobs/tokenize_corpus.py preset={cfg.preset} checkpoint={summary.export}")
        return 0

    return main


# ---------------------------------------------------------------------------------------- the other jobs
EVALUATE_DOC = """Reconstruction quality of a VidTok checkpoint over a folder / URL / manifest of videos: PSNR, SSIM, LPIPS, and FVD
when a local I3D TorchScript file is given — the paper's protocol (spec §13.2: 30 FPS sampling, 17×256×256 causal /
16×256×256 non-causal consecutive clips), so MCL-JCV plus a published checkpoint reproduces the paper's table.

    python jobs/evaluate.py                                     # latest export of the embedded-default training run
    python jobs/evaluate.py input=/data/mcl_jcv preset=vidtok_kl_causal_488_4chn \\
        checkpoint=vidtok_kl_causal_488_4chn.ckpt output=metrics.json [i3d_path=i3d_torchscript.pt]
"""


def evaluate_main(cfg) -> int:
    from pipeline.evaluate.run import run_evaluation

    summary = run_evaluation(cfg)
    headline = {k: summary[k] for k in ("psnr", "ssim", "lpips", "fvd", "frames", "videos") if k in summary}
    print(json.dumps({"checkpoint": summary["checkpoint"], **headline}, indent=2))
    if summary["skipped"]:
        print(f"skipped {len(summary['skipped'])} inputs: {summary['skipped']}")
    if cfg.output:
        print(f"full metrics (per video): {cfg.output}")
    return 0


RECONSTRUCT_DOC = """Decode chosen token windows back to video: an mp4 (input | reconstruction) and a PNG grid per clip.

    python jobs/reconstruct.py                                   # first 2 windows of out/tokens_demo
    python jobs/reconstruct.py tokens=s3://b/tokens clips='[<clip_id>,<clip_id>]' checkpoint=/ckpt/x.ckpt
"""


def reconstruct_main(cfg) -> int:
    from pipeline.tokenize.reconstruct import run_reconstruct

    print(json.dumps(run_reconstruct(cfg), indent=2))
    return 0


WEBDATASET_DOC = """Export token shards as WebDataset tar shards: one sample per window (`<clip_id>.tokens.npy` + `<clip_id>.json`).

    python jobs/export_webdataset.py                                    # out/tokens_demo -> out/tokens_demo/webdataset
    python jobs/export_webdataset.py tokens=s3://b/tokens output=s3://b/tokens-wds

One tar per token shard, named after it and skipped when it exists: re-running after a resumed tokenize run exports
only the new shards, never a sample twice. Format and rules: pipeline/tokenize/webdataset.py.
"""


def export_webdataset_main(cfg) -> int:
    from pipeline.tokenize.webdataset import export_webdataset

    print(json.dumps(export_webdataset(cfg), indent=2))
    return 0


EXPORT_DOC = """Export a VidTok checkpoint: official-layout .ckpt + .safetensors, and a diffusers AutoencoderVidTok folder.

    python jobs/export.py preset=vidtok_fsq_causal_488_32768_v1_1 checkpoint=/ckpt/x.ckpt output=/out/x
    python jobs/export.py preset=vidtok_kl_causal_488_4chn checkpoint=/ckpt/y.ckpt output=/out/y   # v1.0: no diffusers/

v1.0 causal checkpoints get only the official-layout files (docs/interop.md says why).
"""


def export_main(cfg) -> int:
    from pipeline.config import to_yaml
    from pipeline.job_record import OutputClaim
    from pipeline.storage import OutputLayout, join, write_bytes
    from vidtok.export import DiffusersExportRefused, run_export

    # the output folder is this export's alone: a folder of the user's is refused, never written into
    claim = OutputClaim(OutputLayout(cfg.output), "export", {"preset": cfg.preset}, cfg.checkpoint, append=True,
                        data=("",), legacy="export_config.yaml").check()
    claim.record()  # before the files, so an export that fails half-way leaves a folder the next try accepts
    try:
        results = run_export(cfg)
    except (DiffusersExportRefused, ValueError, FileNotFoundError) as e:
        # unknown preset, missing checkpoint, checkpoint of another preset, diffusers=require on a v1.0 model
        raise ConfigError(f"export failed: {e}") from None
    write_bytes(join(str(Path(cfg.output)), "export_config.yaml"), to_yaml(cfg).encode())
    print(json.dumps(results, indent=2))
    return 0


CACHE_FRAMES_DOC = """Job: decode a video corpus once into a frames cache that training reads (`data.frames=<output>`).

    python jobs/cache_frames.py input=s3://b/videos output=s3://b/frames256           # zstd raw 256², 3 FPS
    python jobs/cache_frames.py input=s3://b/videos output=s3://b/frames256 frames.format=jpeg
    ray job submit --working-dir . -- python jobs/cache_frames.py input=... output=...

Every 3 FPS sample of each video at `frames.size`² (the decode stage's spatial policy), in Parquet shards with an
index (pipeline/frames/store.py). Rerunning the same command resumes; a finished cache does nothing. Exit codes
(pipeline/errors.py): 0 complete, 2 configuration, 3 videos left after transient failures (re-run). docs/frames_cache.md.
"""


def cache_frames_main(cfg) -> int:
    from pipeline.frames.run import run_cache_frames

    summary = run_cache_frames(cfg)
    print(json.dumps(summary, indent=2, sort_keys=True))
    if summary["left_for_next_run"]:
        print(f"INCOMPLETE: {summary['left_for_next_run']} videos left after transient failures; re-running the "
              "same command retries them", file=sys.stderr)
        return INCOMPLETE
    return 0


COMMANDS: dict[str, Command] = {
    "tokenize_corpus": Command("pipeline.tokenize.config:TokenizeJobConfig", tokenize_main, TOKENIZE_DOC),
    "train_stage1": Command("pipeline.train.config:TrainConfig", train_main(1), STAGE1_DOC),
    "train_stage2": Command("pipeline.train.config:TrainConfig", train_main(2), STAGE2_DOC),
    "evaluate": Command("pipeline.evaluate.run:EvaluateConfig", evaluate_main, EVALUATE_DOC),
    "reconstruct": Command("pipeline.tokenize.reconstruct:ReconstructConfig", reconstruct_main, RECONSTRUCT_DOC),
    "export_webdataset": Command("pipeline.tokenize.webdataset:WebDatasetExportConfig", export_webdataset_main,
                                 WEBDATASET_DOC),
    "export": Command("vidtok.export:ExportConfig", export_main, EXPORT_DOC),
    "cache_frames": Command("pipeline.frames.config:CacheFramesJobConfig", cache_frames_main, CACHE_FRAMES_DOC),
}


# ------------------------------------------------------------------------------- the console commands (pyproject)
def tokenize() -> int:
    return run_command("tokenize_corpus")


def train_stage1() -> int:
    return run_command("train_stage1")


def train_stage2() -> int:
    return run_command("train_stage2")


def evaluate() -> int:
    return run_command("evaluate")


def reconstruct() -> int:
    return run_command("reconstruct")


def export_webdataset() -> int:
    return run_command("export_webdataset")


def export() -> int:
    return run_command("export")


def cache_frames() -> int:
    return run_command("cache_frames")
