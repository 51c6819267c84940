"""Export a `VidTok` model: official-layout `.ckpt` / `.safetensors`, and a diffusers `AutoencoderVidTok` folder.

Spec: checkpoints.md §1-§3 (file layout, key names); docs/interop.md (which checkpoint works where).

* The official-layout files are always written: `<name>.ckpt` (`{'state_dict': ...}`, what the official
  `init_from_ckpt` and `VidTok.load_official_state_dict` read) and `<name>.safetensors` (bare official keys).
* The diffusers folder is what `AutoencoderVidTok.save_pretrained` writes: `config.json` (its constructor arguments,
  mapped from `VidTokConfig` by `diffusers_config`) and `diffusion_pytorch_model.safetensors`. diffusers' module
  names are the official ones, so the weights are the official state dict unchanged (`loss.*` / `model_ema.*`
  dropped). It is written only for the families diffusers computes faithfully: v1.1 causal and non-causal.
  v1.0 causal is refused (`diffusers_refusal` says why): diffusers hard-wires v1.1 behaviour, so a v1.0 checkpoint
  loads without error and silently computes something else (tests/vidtok/test_diffusers_parity.py pins this).

Pure PyTorch: diffusers is imported only inside `load_diffusers` / `to_diffusers`, never at import time.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from vidtok.checkpoint import save_checkpoint_file
from vidtok.config import VidTokConfig

log = logging.getLogger(__name__)

DIFFUSERS_CLASS = "AutoencoderVidTok"
DIFFUSERS_WEIGHTS = "diffusion_pytorch_model.safetensors"
DIFFUSERS_CONFIG = "config.json"
DIFFUSERS_TESTED = "0.42.1"  # the release the mapping and the refusals were checked against (tests/vidtok/)
DIFFUSERS_MODES = ("auto", "require", "skip")

V10_REFUSAL = (
    "diffusers' AutoencoderVidTok hard-wires VidTok v1.1 behaviour (causal convs pad time with a replicated first "
    "frame instead of zeros, the temporal down-sampler pads by replication, the temporal up-sampler is trilinear), "
    "so a v1.0 causal checkpoint loads without error but silently computes different latents, token ids and "
    "reconstructions. Use the official-layout .ckpt / .safetensors files instead (always written; load them with "
    "VidTok.from_pretrained(preset, path) or the official code)")


class DiffusersExportRefused(ValueError):
    """This model cannot be expressed as a diffusers AutoencoderVidTok that computes the same outputs."""


def diffusers_refusal(config: VidTokConfig) -> Optional[str]:
    """Why diffusers would compute something else for this config, or None when the diffusers folder is faithful."""
    if config.family == "causal_v1_0":
        return f"{config.family} (VidTok v1.0 causal): {V10_REFUSAL}"
    if config.family == "causal_v1_1" and config.interpolation_mode != "trilinear":
        return (f"interpolation_mode={config.interpolation_mode!r}: diffusers' causal temporal up-sampler is always "
                "trilinear; use the official-layout .ckpt / .safetensors files")
    if config.regularizer == "fsq" and set(config.levels) != {8}:
        return (f"FSQ levels={config.levels}: diffusers' FSQRegularizer is built with levels [8] * z_channels; use the "
                "official-layout .ckpt / .safetensors files")
    return None


def diffusers_config(config: VidTokConfig) -> dict[str, Any]:
    """`AutoencoderVidTok(**kwargs)` arguments for `config`; raises DiffusersExportRefused when not faithful.

    The level lists are the resolved ones (`encoder_tempo_levels()` keeps only levels that also down-sample
    spatially, as the official nesting does; diffusers derives its temporal factor from the list's length). The
    decoder's `tempo_us` lists the levels that *own* an up-sampling module, which fixes the state-dict keys.
    """
    reason = diffusers_refusal(config)
    if reason is not None:
        raise DiffusersExportRefused(reason)
    return {
        "in_channels": config.in_channels,
        "out_channels": config.out_ch,
        "ch": config.ch,
        "ch_mult": list(config.ch_mult),
        "z_channels": config.z_channels,
        "double_z": config.double_z,
        "num_res_blocks": config.num_res_blocks,
        "spatial_ds": config.encoder_spatial_levels(),
        "spatial_us": config.decoder_spatial_levels(),
        "tempo_ds": config.encoder_tempo_levels(),
        "tempo_us": config.decoder_tempo_modules(),
        "dropout": float(config.dropout),
        "regularizer": config.regularizer,
        # unused by KL models; diffusers' own default keeps the config valid
        "codebook_size": config.codebook_size if config.regularizer == "fsq" else 262144,
        "is_causal": config.is_causal,
    }


def save_official(model, output: str | Path, name: str) -> dict[str, str]:
    """Write `<output>/<name>.ckpt` and `<output>/<name>.safetensors` with the official keys; returns their paths."""
    sd = model.official_state_dict()
    out = Path(output)
    ckpt = save_checkpoint_file(sd, out / f"{name}.ckpt")
    st = save_checkpoint_file(sd, out / f"{name}.safetensors", metadata={"preset": name, "family": model.config.family})
    return {"ckpt": str(ckpt), "safetensors": str(st)}


def save_diffusers(model, folder: str | Path) -> str:
    """Write a diffusers `save_pretrained` folder (config.json + weights); raises DiffusersExportRefused (v1.0 ...)."""
    cfg = {"_class_name": DIFFUSERS_CLASS, "_diffusers_version": DIFFUSERS_TESTED, **diffusers_config(model.config)}
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_checkpoint_file(model.official_state_dict(), folder / DIFFUSERS_WEIGHTS)
    (folder / DIFFUSERS_CONFIG).write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    return str(folder)


def _autoencoder_vidtok_class():
    try:
        from diffusers import AutoencoderVidTok
    except ImportError as err:
        raise ImportError("diffusers with AutoencoderVidTok is not installed; install the interop extra: "
                          "pip install -e '.[interop]' (diffusers >= 0.42.1)") from err
    return AutoencoderVidTok


def load_diffusers(folder: str | Path):
    """`AutoencoderVidTok.from_pretrained(folder)` in eval mode (imports diffusers lazily)."""
    return _autoencoder_vidtok_class().from_pretrained(str(folder)).eval()


def to_diffusers(model):
    """An in-memory `AutoencoderVidTok` with `model`'s weights (strict load; raises DiffusersExportRefused)."""
    d = _autoencoder_vidtok_class()(**diffusers_config(model.config))
    d.load_state_dict(model.official_state_dict(), strict=True)
    return d.eval()


def export_model(model, output: str | Path, name: Optional[str] = None, diffusers: str = "auto") -> dict[str, Any]:
    """Write the official files into `output`, then the diffusers folder `output/diffusers` per `diffusers`:
    'auto' (when faithful, else log why), 'require' (raise DiffusersExportRefused) or 'skip'. Returns what it wrote."""
    if diffusers not in DIFFUSERS_MODES:
        raise ValueError(f"diffusers={diffusers!r}; use one of {DIFFUSERS_MODES}")
    name = name or model.preset_name or "vidtok"
    result: dict[str, Any] = {"official": save_official(model, output, name)}
    reason = diffusers_refusal(model.config)
    if diffusers == "skip":
        return result
    if reason is not None:
        if diffusers == "require":
            raise DiffusersExportRefused(f"no diffusers folder for {name}: {reason}. The official files were written: "
                                         f"{result['official']}")
        log.warning("no diffusers folder for %s: %s", name, reason)
        result["diffusers_refused"] = reason
        return result
    result["diffusers"] = save_diffusers(model, Path(output) / "diffusers")
    return result


@dataclass
class ExportConfig:
    """`jobs/export.py`: `preset=<name> checkpoint=<official .ckpt/.safetensors> output=<folder>`.

    The three paths are required. They default to "" rather than omegaconf's MISSING because
    `pipeline.config.load_config` cannot list the valid keys of a schema with MISSING fields (it reads their values
    while reporting an unknown key); `__post_init__` names the missing one instead.
    """

    preset: str = ""           # a preset name (vidtok.list_presets()) or an official-style YAML path
    checkpoint: str = ""       # official weights to export (.ckpt / .pt / .safetensors)
    output: str = ""           # folder for <name>.ckpt, <name>.safetensors and diffusers/
    name: str = ""             # file base name; "" = the preset name
    diffusers: str = "auto"    # 'auto' | 'require' | 'skip' (see export_model)
    allow_unsafe_pickle: bool = False  # only for trusted .ckpt files that weights_only loading refuses

    def __post_init__(self) -> None:
        examples = {"preset": "vidtok_fsq_causal_488_32768_v1_1", "checkpoint": "/ckpt/model.ckpt",
                    "output": "/out/model"}
        for key, example in examples.items():
            if not getattr(self, key):
                raise ValueError(f"{key} is required (e.g. {key}={example})")
        if self.diffusers not in DIFFUSERS_MODES:
            raise ValueError(f"diffusers={self.diffusers!r} is not one of {DIFFUSERS_MODES}; e.g. diffusers=auto")


def run_export(cfg: ExportConfig) -> dict[str, Any]:
    """Load `cfg.checkpoint` into `cfg.preset` (strict) and export it (`export_model`)."""
    from vidtok.model import VidTok

    model = VidTok.from_pretrained(cfg.preset, cfg.checkpoint, allow_unsafe_pickle=cfg.allow_unsafe_pickle)
    name = cfg.name or model.preset_name or Path(cfg.preset).stem
    return export_model(model, cfg.output, name=name, diffusers=cfg.diffusers)
