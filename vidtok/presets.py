"""Named model presets: the 23 released VidTok configs under their official names, plus a tiny CI twin of each.

The official YAML files are shipped as package data in `vidtok/configs/` (v1.0) and `vidtok/configs/vidtok_v1_1/`
(v1.1), unchanged. A preset name is the file's base name, e.g. `vidtok_fsq_causal_488_32768` or
`vidtok_kl_causal_488_4chn_v1_1`, matching the checkpoint of the same name (checkpoints.md §4 item 8).
`<name>_tiny` is the same structure with `ch=8` (goldens show LayerNorm needs ch >= 6 to stay well conditioned).
"""

from __future__ import annotations

import difflib
from functools import lru_cache
from pathlib import Path

from vidtok.config import VidTokConfig

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
TINY_SUFFIX = "_tiny"
TINY_CH = 8


@lru_cache(maxsize=1)
def _official_files() -> dict[str, Path]:
    files = sorted(CONFIG_DIR.glob("*.yaml")) + sorted((CONFIG_DIR / "vidtok_v1_1").glob("*.yaml"))
    return {f.stem: f for f in files}


def list_presets(include_tiny: bool = True) -> list[str]:
    """All preset names: official names first, then the `_tiny` twins."""
    names = list(_official_files())
    return names + [n + TINY_SUFFIX for n in names] if include_tiny else names


def is_preset(name: str) -> bool:
    return name in list_presets()


def preset_path(name: str) -> Path:
    """The official YAML file behind a preset (the tiny twin shares its official file)."""
    base = name[: -len(TINY_SUFFIX)] if name.endswith(TINY_SUFFIX) else name
    files = _official_files()
    if base not in files:
        close = difflib.get_close_matches(name, list_presets(), n=3)
        raise ValueError(f"unknown preset {name!r}; closest: {close}. See vidtok.list_presets() or pass a YAML path")
    return files[base]


@lru_cache(maxsize=None)
def _cached(name: str) -> VidTokConfig:
    cfg = VidTokConfig.from_yaml(preset_path(name))
    return cfg.replace(ch=TINY_CH) if name.endswith(TINY_SUFFIX) else cfg


def preset_config(name: str) -> VidTokConfig:
    """A fresh (mutable) `VidTokConfig` for a preset name."""
    return _cached(name).replace()
