"""Training checkpoints, stage-2 initialisation and export for `pipeline/train.py`.

A checkpoint is a directory that Ray Train persists under `<output>/<run name>/checkpoint_<step>/`:

* `state.pt` (rank 0): `model` (VidTok state dict, official `encoder.*`/`decoder.*` names), `loss` (logvar +
  discriminator; the frozen LPIPS is rebuilt, not stored), `opt_ae`, `opt_disc` (Adam states), `loss_extra` (LeCam
  EMAs), `step`, `clips_seen`, `preset`, `stage`.
* `rng_rank<r>.pt` (every rank): that rank's torch / CUDA / numpy / Python RNG states, so a resumed run continues
  the same random stream on every rank.

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
import os
import posixpath

import torch

log = logging.getLogger(__name__)

STATE_FILE = "state.pt"
CKPT_PREFIX = "checkpoint_"


# ---------------------------------------------------------------------------------------------------- storage
def is_remote(url: str) -> bool:
    return "://" in url and not url.startswith("file://")


def fs_and_path(url: str, storage_options: dict | None = None):
    """(fsspec filesystem, path without scheme) for a URL or local path (made absolute)."""
    import fsspec

    if not is_remote(url):
        url = os.path.abspath(url[len("file://"):] if url.startswith("file://") else url)
        return fsspec.core.url_to_fs(url)
    opts = dict(storage_options or {})
    if url.split("://", 1)[0] in ("s3", "s3a", "gs", "gcs"):
        # Checkpoints appear while a run goes on and Ray reuses processes: a cached fsspec instance with a cached
        # listing would not see them (a re-run would then miss the run's snapshot and start from scratch).
        opts = {"skip_instance_cache": True, "use_listings_cache": False, **opts}
    return fsspec.core.url_to_fs(url, **opts)


def ray_storage(output: str, storage_options: dict | None = None):
    """`(storage_path, storage_filesystem)` for `ray.train.RunConfig` from a user URL (s3://…, gs://…, local)."""
    if not is_remote(output):
        return os.path.abspath(output), None
    import pyarrow.fs as pafs

    fs, path = fs_and_path(output, storage_options)
    return path, pafs.PyFileSystem(pafs.FSSpecHandler(fs))


def join(url: str, *parts: str) -> str:
    return posixpath.join(url.rstrip("/"), *parts) if is_remote(url) else os.path.join(os.path.abspath(url), *parts)


def write_bytes(url: str, data: bytes, storage_options: dict | None = None) -> str:
    fs, path = fs_and_path(url, storage_options)
    fs.makedirs(posixpath.dirname(path), exist_ok=True)
    with fs.open(path, "wb") as f:
        f.write(data)
    return url


def torch_save_url(obj, url: str, storage_options: dict | None = None) -> str:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return write_bytes(url, buf.getvalue(), storage_options)


def torch_load_url(url: str, storage_options: dict | None = None, weights_only: bool = False):
    """torch.load from a local path or object storage. `weights_only=False` is for this project's own checkpoints
    (they hold numpy RNG states); official checkpoints go through `VidTok.load_official_state_dict` instead."""
    fs, path = fs_and_path(url, storage_options)
    with fs.open(path, "rb") as f:
        return torch.load(io.BytesIO(f.read()), map_location="cpu", weights_only=weights_only)


def latest_checkpoint_dir(run_url: str, storage_options: dict | None = None) -> str | None:
    """The newest `checkpoint_*` folder (by step in its name) under a run that holds a `state.pt`, or None."""
    fs, path = fs_and_path(run_url, storage_options)
    if not fs.exists(path):
        return None
    names = sorted(posixpath.basename(p.rstrip("/")) for p in fs.ls(path, detail=False))
    for name in reversed([n for n in names if n.startswith(CKPT_PREFIX)]):
        if fs.exists(posixpath.join(path, name, STATE_FILE)):
            return join(run_url, name)
    return None


# ---------------------------------------------------------------------------------------------------- save / load
def training_state(engine, opt_ae, opt_d, state, cfg) -> dict:
    """Rank-0 payload of a checkpoint (see module docstring)."""
    loss_sd = {k: v for k, v in engine.loss.state_dict().items() if not k.startswith("perceptual_loss.")}
    return {
        "model": engine.model.state_dict(),
        "loss": loss_sd,
        "loss_extra": engine.loss.extra_state(),
        "opt_ae": opt_ae.state_dict(),
        "opt_disc": opt_d.state_dict(),
        "step": state.step,
        "clips_seen": state.clips_seen,
        "preset": cfg.preset,
        "stage": cfg.stage,
    }


def restore_training_state(payload: dict, engine, opt_ae, opt_d, state) -> None:
    """Load a `state.pt` payload into a freshly built engine/optimisers/counters (exact resume)."""
    engine.model.load_state_dict(payload["model"], strict=True)
    missing, unexpected = engine.loss.load_state_dict(payload["loss"], strict=False)
    bad = [k for k in missing if not k.startswith("perceptual_loss.")] + list(unexpected)
    if bad:
        raise ValueError(f"checkpoint loss state does not match this loss config: {bad[:6]}")
    engine.loss.load_extra_state(payload.get("loss_extra", {}))
    opt_ae.load_state_dict(payload["opt_ae"])
    opt_d.load_state_dict(payload["opt_disc"])
    state.step = int(payload["step"])
    state.clips_seen = int(payload.get("clips_seen", 0))


def init_stage2(engine, init_from: str, storage_options: dict | None = None) -> str:
    """Initialise a stage-2 engine from a stage-1 run / checkpoint dir (model + logvar + discriminator, as the official
    `init_from_ckpt` loads the whole Lightning state dict) or an official `.ckpt` (model, plus `loss.*` if present).
    Optimisers and counters start fresh, as in the official fine-tuning. Returns what was loaded."""
    src = init_from
    fs, path = fs_and_path(init_from, storage_options)
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


def module_digest(module: torch.nn.Module) -> str:
    """SHA-256 of a module's state dict bytes (stage 2: proves the frozen encoder is bit-identical)."""
    import hashlib

    h = hashlib.sha256()
    for k, v in sorted(module.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()
