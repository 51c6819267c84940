"""Reading and writing official VidTok checkpoints safely (spec checkpoints.md §1-§3).

Released files are PyTorch-Lightning checkpoints: a dict whose `state_dict` holds `encoder.*`, `decoder.*` and the
training-only `loss.*` tensors (possibly `model_ema.*`). The official loader accepts a Lightning dict, a bare
state dict, or a `.safetensors` file; so does `load_checkpoint_file`. Unlike the official `torch.load(path)`,
files are read with `weights_only=True`; anything that needs full unpickling is refused unless the caller opts in
with `allow_unsafe_pickle=True` (arbitrary code execution: trusted files only). `save_checkpoint_file` writes the
same two layouts back (a `{'state_dict': ...}` `.ckpt`, a bare `.safetensors`), so the official loader reads them.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
from pathlib import Path
from typing import Any, Mapping

import torch

log = logging.getLogger(__name__)

INFERENCE_PREFIXES = ("encoder.", "decoder.")
IGNORED_PREFIXES = ("loss.", "model_ema.", "regularization.")


def file_sha256(path: str | Path, chunk_size: int = 1 << 20) -> str:
    """Hex SHA-256 of a file (labels tokens with the exact checkpoint that produced them)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk_size), b""):
            digest.update(block)
    return digest.hexdigest()


def load_checkpoint_file(path: str | Path, allow_unsafe_pickle: bool = False) -> Any:
    """Load a `.ckpt`/`.pt`/`.pth` (torch.load, weights_only) or `.safetensors` file onto the CPU."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist; download the official .ckpt first "
                                "(nothing is fetched at run time)")
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError as err:
            raise ImportError(f"{path} is a .safetensors file but the 'safetensors' package is not installed; "
                              "add it to the environment or convert the file to .pt") from err
        return load_file(str(path), device="cpu")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if not allow_unsafe_pickle:
            raise ValueError(
                f"refusing to fully unpickle {path}: it contains objects that torch.load(weights_only=True) does "
                f"not allow ({str(err).splitlines()[0][:200]}). If you trust the file, pass "
                "allow_unsafe_pickle=True (this can execute arbitrary code).") from err
        log.warning("loading %s with weights_only=False (allow_unsafe_pickle=True)", path)
        return torch.load(path, map_location="cpu", weights_only=False)


def save_checkpoint_file(state_dict: Mapping[str, torch.Tensor], path: str | Path,
                         metadata: Mapping[str, str] | None = None) -> Path:
    """Write official-key tensors to `.safetensors` (bare) or `.ckpt`/`.pt`/`.pth` (`{'state_dict': ...}`, like a
    stripped Lightning file), via a temporary file and `os.replace`, so a reader never sees a half-written file.

    Tensors are copied to contiguous CPU memory (safetensors refuses shared or strided storage). `metadata` goes into
    the safetensors header (string values); `.ckpt` files carry only the state dict.
    """
    path = Path(path)
    if path.suffix not in (".safetensors", ".ckpt", ".pt", ".pth"):
        raise ValueError(f"unknown checkpoint suffix {path.suffix!r} in {path}; use .safetensors or .ckpt")
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in state_dict.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(tensors, str(tmp), metadata={"format": "pt", **dict(metadata or {})})
    else:
        torch.save({"state_dict": tensors}, tmp)
    os.replace(tmp, path)
    return path


def extract_inference_state_dict(obj: Any) -> dict[str, torch.Tensor]:
    """Lightning dict or bare state dict -> the `encoder.*` / `decoder.*` tensors (checkpoints.md §3).

    `loss.*`, `model_ema.*` and `regularization.*` keys are dropped with one log line; any other key is kept so
    that the caller reports it as unexpected.
    """
    if not isinstance(obj, Mapping):
        raise TypeError(f"expected a checkpoint dict or state dict, found {type(obj).__name__}")
    sd = obj["state_dict"] if "state_dict" in obj and isinstance(obj["state_dict"], Mapping) else obj
    kept: dict[str, torch.Tensor] = {}
    ignored: dict[str, int] = {}
    for key, value in sd.items():
        prefix = next((p for p in IGNORED_PREFIXES if key.startswith(p)), None)
        if prefix is not None:
            ignored[prefix] = ignored.get(prefix, 0) + 1
            continue
        kept[key] = value
    if ignored:
        log.info("ignoring training-only checkpoint keys: %s",
                 ", ".join(f"{n} x {p}*" for p, n in sorted(ignored.items())))
    return kept


def check_state_dict(expected: Mapping[str, torch.Tensor], found: Mapping[str, Any]) -> None:
    """Raise ValueError naming missing / unexpected keys and shape mismatches (both counts must be 0)."""
    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing keys (first: {missing[:8]})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys (first: {unexpected[:8]})")
    bad_shape = [f"{k}: expected {tuple(v.shape)} found {tuple(found[k].shape)}" for k, v in expected.items()
                 if k in found and hasattr(found[k], "shape") and tuple(found[k].shape) != tuple(v.shape)]
    if bad_shape:
        problems.append(f"{len(bad_shape)} shape mismatches (first: {bad_shape[:5]})")
    if problems:
        hint = ("a causal checkpoint has '.conv.' inside conv keys, a non-causal one does not; check that the "
                "config (preset) is the one released with this checkpoint")
        raise ValueError("checkpoint does not match the model: " + "; ".join(problems) + f". Hint: {hint}")
