"""Job configuration: dataclass schema <- YAML file <- `key=value` overrides (OmegaConf, struct mode).

Every job (`jobs/*.py`) describes its settings as a dataclass beside the code it configures and loads them with
`load_config`. Struct mode makes an unknown key fail at once with the key's name, before any work starts. `redact`
removes credentials before a resolved config is printed or written next to the outputs.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any, Sequence, TypeVar

from omegaconf import OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException

log = logging.getLogger(__name__)

T = TypeVar("T")

# Keys whose values are never printed or written (matched case-insensitively against the last path component).
SECRET_KEY_PARTS = ("secret", "password", "token", "credential", "session_token", "access_key", "key_id")


class ConfigError(ValueError):
    """A configuration problem, with a message that names the key and the fix."""


def split_args(argv: Sequence[str]) -> tuple[str | None, list[str]]:
    """Split CLI args into an optional config file (`config=path.yaml`, `--config path.yaml` or a bare `*.yaml`)
    and `key=value` overrides. Anything else is an error that shows the expected form."""
    config_path: str | None = None
    overrides: list[str] = []
    args = list(argv)
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in ("--config", "-c"):
            if i + 1 >= len(args):
                raise ConfigError(f"{arg} needs a YAML path after it")
            config_path = args[i + 1]
            i += 2
            continue
        if arg.startswith("config="):
            config_path = arg.split("=", 1)[1]
        elif arg.endswith((".yaml", ".yml")) and "=" not in arg:
            config_path = arg
        elif "=" in arg and not arg.startswith("-"):
            overrides.append(arg)
        else:
            raise ConfigError(f"unexpected argument {arg!r}: use key=value overrides (e.g. input=s3://bucket/videos)")
        i += 1
    return config_path, overrides


def load_config(schema: type[T], yaml_path: str | Path | None = None, overrides: Sequence[str] = ()) -> T:
    """Build a typed config: `OmegaConf.structured(schema)` merged with the YAML file, then the dotlist overrides.

    Unknown keys (in the file or the overrides) raise `ConfigError` naming the key; `__post_init__` validation of the
    dataclasses runs when the result is converted to objects.
    """
    base = OmegaConf.structured(schema)
    OmegaConf.set_struct(base, True)
    layers = []
    source = "defaults"
    try:
        if yaml_path is not None:
            source = str(yaml_path)
            if not Path(yaml_path).exists():
                raise ConfigError(f"config file {yaml_path} does not exist")
            layers.append(OmegaConf.load(yaml_path))
        source = "command line"
        layers.append(OmegaConf.from_dotlist(list(overrides)))
        merged = OmegaConf.merge(base, *layers)
        missing = sorted(OmegaConf.missing_keys(merged))
        if missing:
            raise ConfigError(f"required config key(s) not set: {', '.join(missing)} (pass e.g. {missing[0]}=...)")
        obj = OmegaConf.to_object(merged)
    except (ConfigAttributeError, ConfigKeyError) as e:
        key = getattr(e, "full_key", None) or getattr(e, "key", None) or str(e)
        raise ConfigError(f"unknown config key {key!r} (from {source}); valid keys: {_valid_keys(base)}") from None
    except OmegaConfBaseException as e:
        key = getattr(e, "full_key", None)
        raise ConfigError(f"bad value for config key {key!r} (from {source}): {e.msg if hasattr(e, 'msg') else e}") from None
    return obj  # type: ignore[return-value]


def _valid_keys(cfg: Any, prefix: str = "") -> str:
    keys: list[str] = []
    for k, v in cfg.items() if hasattr(cfg, "items") else []:
        full = f"{prefix}{k}"
        if OmegaConf.is_dict(v) and len(v) > 0:
            keys.append(_valid_keys(v, full + "."))
        else:
            keys.append(full)
    return ", ".join(keys)


def is_secret_key(name: str) -> bool:
    low = name.lower()
    return any(part in low for part in SECRET_KEY_PARTS)


def redact(obj: Any) -> Any:
    """A plain-container copy of a config (dataclass, dict, list) with secret-looking values replaced."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        obj = dataclasses.asdict(obj)
    if isinstance(obj, dict):
        # only leaf values are secrets: a section such as `tokenizer:` must not vanish because its name has "token"
        return {k: ("***" if is_secret_key(str(k)) and v not in (None, "") and not isinstance(v, (dict, list))
                    else redact(v)) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [redact(v) for v in obj]
    return obj


def to_yaml(obj: Any) -> str:
    """Resolved config as YAML text, secrets redacted (what jobs write beside their outputs)."""
    return OmegaConf.to_yaml(OmegaConf.create(redact(obj)))
