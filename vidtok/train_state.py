"""Training state as plain dicts, and digests that prove a state was restored exactly. Pure torch (no Ray, no storage).

A training state is the rank-0 payload of a checkpoint: `model` (VidTok state dict, official `encoder.*`/`decoder.*`
names), `loss` (logvar + discriminator; the frozen LPIPS is rebuilt, not stored), `loss_extra` (LeCam EMAs),
`opt_ae`, `opt_disc` (Adam states), `step`, `clips_seen`, `preset`, `stage`. Where it is stored, and how Ray Train
hands it back, is `pipeline/train/checkpoint.py`; this module only builds and restores it, so the step tests import
nothing but `vidtok`.
"""

from __future__ import annotations

import hashlib

import torch

PERCEPTUAL_PREFIX = "perceptual_loss."  # the frozen LPIPS inside the loss: rebuilt from its weights file, never saved


def training_state(engine, opt_ae, opt_d, state, preset: str, stage: int) -> dict:
    """The payload described in the module docstring, for a `vidtok.train_step.TrainEngine` and its optimisers."""
    loss_sd = {k: v for k, v in engine.loss.state_dict().items() if not k.startswith(PERCEPTUAL_PREFIX)}
    return {
        "model": engine.model.state_dict(),
        "loss": loss_sd,
        "loss_extra": engine.loss.extra_state(),
        "opt_ae": opt_ae.state_dict(),
        "opt_disc": opt_d.state_dict(),
        "step": state.step,
        "clips_seen": state.clips_seen,
        "preset": preset,
        "stage": stage,
    }


def restore_training_state(payload: dict, engine, opt_ae, opt_d, state) -> None:
    """Load a payload into a freshly built engine, optimisers and counters (exact resume)."""
    engine.model.load_state_dict(payload["model"], strict=True)
    missing, unexpected = engine.loss.load_state_dict(payload["loss"], strict=False)
    bad = [k for k in missing if not k.startswith(PERCEPTUAL_PREFIX)] + list(unexpected)
    if bad:
        raise ValueError(f"checkpoint loss state does not match this loss config: {bad[:6]}")
    engine.loss.load_extra_state(payload.get("loss_extra", {}))
    opt_ae.load_state_dict(payload["opt_ae"])
    opt_d.load_state_dict(payload["opt_disc"])
    state.step = int(payload["step"])
    state.clips_seen = int(payload.get("clips_seen", 0))


def module_digest(module: torch.nn.Module) -> str:
    """SHA-256 of a module's state dict bytes (stage 2: proves the frozen encoder is bit-identical)."""
    h = hashlib.sha256()
    for k, v in sorted(module.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def state_digest(engine, opt_ae, opt_d) -> str:
    """SHA-256 over model, loss and both optimisers' tensors: equal digests mean an exactly restored state."""
    h = hashlib.sha256()
    h.update(module_digest(engine.model).encode())
    h.update(module_digest(engine.loss).encode())
    for opt in (opt_ae, opt_d):
        for pid, st in sorted(opt.state_dict()["state"].items()):
            for k, v in sorted(st.items()):
                h.update(f"{pid}.{k}".encode())
                t = v if torch.is_tensor(v) else torch.tensor(float(v))
                h.update(t.detach().cpu().float().numpy().tobytes())
    return h.hexdigest()
