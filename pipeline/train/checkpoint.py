"""The Ray Train run-folder protocol of the training jobs: checkpoint folders, stage-2 initialisation, export.

A checkpoint is a directory that Ray Train persists under `<output>/<run name>/checkpoint_<step>/`:

* `state.pt` (rank 0): the training state of `vidtok.train_state.training_state` (model, loss, both optimisers,
  counters, preset, stage).
* `rng_rank<r>.pt` (every rank): that rank's torch / CUDA / numpy / Python RNG states, so a resumed run continues
  the same random stream on every rank.
* `data_rank<r>.json` (every rank): `{"rank", "order", "cursor", "batches_digest", "loss_extra"}`: where the rank's
  training order stands after the step (`pipeline/train/order.py: Cursor`), a running digest of the batches it
  trained on, and its own LeCam EMAs (they follow each rank's discriminator logits; `state.pt` holds rank 0's).

Export (`export_official`) writes `{"state_dict": {encoder.*, decoder.*, loss.logvar, loss.discriminator.*}, ...}`: the
layout of an official VidTok Lightning checkpoint, loadable by `VidTok.load_official_state_dict` (the tokenize job's
`checkpoint=`) and by the official `init_from_ckpt`.

Object storage: Ray gets `storage_path` without its scheme plus a pyarrow filesystem wrapping the project's fsspec
filesystem (with `s3://` in `storage_path` *and* a filesystem, Ray 2.60 fails with ArrowInvalid); users still write
`output=s3://bucket/prefix`.
"""

from __future__ import annotations

import io
import logging
import posixpath

import torch

from pipeline.storage import arrow_filesystem, join, read_bytes, url_to_fs, write_bytes

log = logging.getLogger(__name__)

STATE_FILE = "state.pt"
CKPT_PREFIX = "checkpoint_"


def export_name(cfg, step: int) -> str:
    """File name of a stage's exported weights: `<preset>_stage<stage>_step<step>.ckpt`."""
    return f"{cfg.preset}_stage{cfg.stage}_step{step:08d}.ckpt"


def ray_storage(output: str, storage_options: dict | None = None):
    """`(storage_path, storage_filesystem)` for `ray.train.RunConfig` from a user URL (s3://…, gs://…, local)."""
    return arrow_filesystem(output, storage_options)


def torch_save_url(obj, url: str, storage_options: dict | None = None) -> str:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return write_bytes(url, buf.getvalue(), storage_options)


def torch_load_url(url: str, storage_options: dict | None = None, weights_only: bool = False):
    """torch.load from a local path or object storage. `weights_only=False` is for this project's own checkpoints
    (they hold numpy RNG states); official checkpoints go through `VidTok.load_official_state_dict` instead."""
    return torch.load(io.BytesIO(read_bytes(url, storage_options)), map_location="cpu", weights_only=weights_only)


def latest_checkpoint_dir(run_url: str, storage_options: dict | None = None) -> str | None:
    """The newest `checkpoint_*` folder (by step in its name) under a run that holds a `state.pt`, or None."""
    fs, path = url_to_fs(run_url, storage_options)
    if not fs.exists(path):
        return None
    names = sorted(posixpath.basename(p.rstrip("/")) for p in fs.ls(path, detail=False))
    for name in reversed([n for n in names if n.startswith(CKPT_PREFIX)]):
        if fs.exists(posixpath.join(path, name, STATE_FILE)):
            return join(run_url, name)
    return None


def init_stage2(engine, init_from: str, storage_options: dict | None = None) -> str:
    """Initialise a stage-2 engine from a stage-1 run / checkpoint dir (model + logvar + discriminator, as the official
    `init_from_ckpt` loads the whole Lightning state dict) or an official `.ckpt` (model, plus `loss.*` if present).
    Optimisers and counters start fresh, as in the official fine-tuning. Returns what was loaded."""
    src = init_from
    fs, path = url_to_fs(init_from, storage_options)
    if fs.isdir(path):
        if fs.exists(posixpath.join(path, STATE_FILE)):
            ckpt_dir = init_from
        else:
            ckpt_dir = latest_checkpoint_dir(init_from, storage_options)
            if ckpt_dir is None:
                raise FileNotFoundError(
                    f"init_from={init_from!r} has no {CKPT_PREFIX}*/{STATE_FILE}: run stage 1 first "
                    "(python jobs/train_stage1.py) or pass an official VidTok .ckpt"
                )
        payload = torch_load_url(join(ckpt_dir, STATE_FILE), storage_options)
        engine.model.load_state_dict(payload["model"], strict=True)
        engine.loss.load_state_dict(payload["loss"], strict=False)
        return join(ckpt_dir, STATE_FILE)
    if not fs.exists(path):
        raise FileNotFoundError(f"init_from={init_from!r} does not exist (stage-1 run dir, checkpoint dir or .ckpt)")
    with fs.open(path, "rb") as f:
        obj = torch.load(io.BytesIO(f.read()), map_location="cpu", weights_only=True)
    engine.model.load_official_state_dict(obj)
    sd = obj.get("state_dict", obj) if isinstance(obj, dict) else {}
    loss_sd = {k[len("loss."):]: v for k, v in sd.items()
               if k.startswith("loss.") and not k.startswith("loss.perceptual_loss.")}
    if loss_sd:
        engine.loss.load_state_dict(loss_sd, strict=False)
    return src


def export_official(engine, url: str, step: int, storage_options: dict | None = None, extra: dict | None = None) -> str:
    """Write trained weights in the official Lightning key layout (module docstring) to `url`; returns it."""
    sd = dict(engine.model.official_state_dict())
    for k, v in engine.loss.state_dict().items():
        if not k.startswith("perceptual_loss."):
            sd[f"loss.{k}"] = v
    obj = {"state_dict": {k: v.detach().cpu().contiguous() for k, v in sd.items()}, "global_step": 2 * step,
           **(extra or {})}
    return torch_save_url(obj, url, storage_options)
