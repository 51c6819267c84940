"""Job configuration: dataclass schema <- YAML file <- `key=value` overrides (OmegaConf, struct mode).

Every job (`jobs/*.py`) describes its settings as a dataclass beside the code it configures and loads them with
`load_config`. Struct mode makes an unknown key fail at once with the key's name, before any work starts. `redact`
removes credentials before a resolved config is printed or written next to the outputs. `describe` renders a schema
as the `--help` text of a job: every key with its type, default and the one-line comment written beside the field.

The sections every job shares live here, so no job imports another job's config: `StorageConfig` (`storage.*`:
object-store endpoint and credentials), `RayConfig` (`ray.*`: which cluster, local-Ray sizes) and `DecodeTaskConfig`
(`decode_task.*`: what one Ray decode task reserves). The decode settings themselves are `pipeline.decode.DecodeConfig`.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import logging
import textwrap
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence, TypeVar

from omegaconf import OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException

log = logging.getLogger(__name__)

T = TypeVar("T")

# The file extensions every job lists as videos (the default of each job's `extensions` key).
VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".avi", ".mov", ".mpg", ".mpeg", ".m4v", ".ts", ".flv", ".wmv", ".ogv",
                    ".y4m")

# Keys whose values are never printed or written (matched case-insensitively against the last path component).
SECRET_KEY_PARTS = ("secret", "password", "token", "credential", "session_token", "access_key", "key_id")


class ConfigError(ValueError):
    """A configuration problem, with a message that names the key and the fix."""


def check_preset(key: str, name: str) -> None:
    """Raise ConfigError unless `name` is a VidTok preset (`vidtok.list_presets()`) or an existing YAML file."""
    if name.endswith((".yaml", ".yml")) and Path(name).exists():
        return
    from vidtok.presets import is_preset, list_presets  # here: vidtok imports torch, which --help does not need

    if not is_preset(name):
        import difflib

        close = difflib.get_close_matches(name, list_presets(), n=3, cutoff=0.5)
        raise ConfigError(f"{key}={name!r} is not a VidTok preset" + (f"; did you mean {close}?" if close else "")
                          + " See the names with: python -c 'import vidtok; print(vidtok.list_presets())'")


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
        import difflib

        close = difflib.get_close_matches(str(key), _valid_keys(base).split(", "), n=3, cutoff=0.6)
        hint = f"did you mean {' or '.join(close)}? " if close else ""
        raise ConfigError(f"unknown config key {key!r} (from {source}); {hint}valid keys: {_valid_keys(base)}") from None
    except OmegaConfBaseException as e:
        key = getattr(e, "full_key", None)
        raise ConfigError(f"bad value for config key {key!r} (from {source}): {e.msg if hasattr(e, 'msg') else e}") from None
    return obj  # type: ignore[return-value]


def _valid_keys(cfg: Any, prefix: str = "") -> str:
    keys: list[str] = []
    for k in cfg.keys() if OmegaConf.is_dict(cfg) else []:
        full = f"{prefix}{k}"
        v = cfg._get_node(k)  # the node, not its value: a required (MISSING) key must not raise here
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


# ------------------------------------------------------------------------------------------------ shared sections
@dataclass
class StorageConfig:
    """fsspec storage options for s3:// (and other) URLs; empty = the standard AWS environment / profile."""

    endpoint_url: Optional[str] = None  # S3-compatible endpoint (MinIO, Ceph, a test server)
    key: Optional[str] = None  # access key id (redacted in logs and the resolved config)
    secret: Optional[str] = None  # secret access key (redacted)
    token: Optional[str] = None  # session token (redacted)
    anon: bool = False  # anonymous access to public buckets

    def storage_options(self) -> dict:
        """Options for `pipeline.storage.url_to_fs` / s3fs. The region comes from AWS_DEFAULT_REGION: s3fs breaks
        bucket creation on S3-compatible servers when `region_name` is in `client_kwargs`."""
        opts: dict = {}
        if self.endpoint_url:
            opts["client_kwargs"] = {"endpoint_url": self.endpoint_url}
        for name in ("key", "secret", "token"):
            if getattr(self, name):
                opts[name] = getattr(self, name)
        if self.anon:
            opts["anon"] = True
        return opts


@dataclass
class RayConfig:
    """Which Ray a job runs on (`pipeline.ray_utils.init_ray`)."""

    address: Optional[str] = None  # None: RAY_ADDRESS (set by `ray job submit`) or a private local Ray
    num_cpus: Optional[int] = None  # local Ray only; None = the machine's cores
    object_store_mb: int = 1024  # local Ray only
    target_block_mb: int = 64  # Ray Data block size: a few 3.3 MB windows per block keeps memory bounded
    console_logs: bool = False  # also show Ray's own output (Ray Data progress bars, Ray-internal lines, workers' log
    #                             lines) on the console; false = only in <output>/_logs/<run>.log


@dataclass
class DecodeTaskConfig:
    """What one Ray decode task reserves (`decode_task.*` of every job that decodes in Ray tasks: tokenize, training,
    the frames cache; the decode settings are `decode.*`). How much work a task takes is the job's own key (the
    tokenize job's `TokenizeDecodeTaskConfig`, the frames cache's `videos_per_task`; training: one item each)."""

    num_cpus: float = 1.0  # CPUs reserved per decode task
    memory_mb: int = 1024  # heap reserved per decode task (a few windows + the decoder); it also keeps Ray from
    #                        fusing decode into the tokenizer actors, which would serialise decoding on the GPU actor
    concurrency: Optional[int] = None  # decode tasks in flight at most; None = as many as the cluster fits

    def __post_init__(self):
        for name in ("num_cpus", "memory_mb"):
            if not getattr(self, name) > 0:
                raise ValueError(f"decode_task.{name} must be > 0, found {getattr(self, name)}")
        if self.concurrency is not None and self.concurrency < 1:
            raise ValueError(f"decode_task.concurrency must be >= 1 or null, found {self.concurrency}")

    def ray_kwargs(self, extra_mb: int = 0) -> dict:
        """`map_batches` keywords for the decode tasks: CPUs, memory (plus `extra_mb` the job holds per task) and,
        when set, the concurrency cap."""
        kwargs = {"num_cpus": self.num_cpus, "memory": (self.memory_mb + extra_mb) << 20}
        if self.concurrency:
            kwargs["concurrency"] = self.concurrency
        return kwargs


# ---------------------------------------------------------------------------------------------------- --help text
def describe(schema: type, prefix: str = "") -> list[tuple[str, str, str, str]]:
    """`(key, type, default, comment)` for every leaf key of a dataclass schema, sections flattened with dots.

    The comment is the `# ...` text on the field's line in the source (how every schema here documents its keys).
    """
    comments = _field_comments(schema)
    hints = typing.get_type_hints(schema)
    rows = []
    for f in dataclasses.fields(schema):
        typ = hints.get(f.name, f.type)
        value = _field_default(f)  # the declared default: `None` keys say "filled later" (schedule, model)
        if dataclasses.is_dataclass(typ):
            rows.extend(describe(typ, f"{prefix}{f.name}."))
            continue
        rows.append((f"{prefix}{f.name}", _type_name(typ), _value_text(value), comments.get(f.name, "")))
    return rows


def help_text(schema: type, doc: str = "") -> str:
    """The `--help` page of a job: its docstring, then every key (see `describe`)."""
    rows = describe(schema)
    width = max(len(k) for k, *_ in rows)
    lines = [textwrap.dedent(doc).strip(), "", "Keys (set as key=value, or in a YAML file given as config=path.yaml):"]
    for key, typ, default, comment in rows:
        lines.append(f"  {key:<{width}}  {typ} = {default}" + (f"\n  {'':<{width}}    {comment}" if comment else ""))
    return "\n".join(lines).strip() + "\n"


def _field_default(f: dataclasses.Field):
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return "???"


def _field_comments(schema: type) -> dict[str, str]:
    comments: dict[str, str] = {}
    for cls in reversed(schema.__mro__):
        if not dataclasses.is_dataclass(cls):
            continue
        try:
            lines, _ = inspect.getsourcelines(cls)
        except (OSError, TypeError):
            continue
        tree = ast.parse(textwrap.dedent("".join(lines)))
        body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
        for node in body:
            if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                text = lines[node.lineno - 1]
                follow = [ln.strip() for ln in lines[node.end_lineno:node.end_lineno + 3]]
                comment = text.split("  # ", 1)[1].strip() if "  # " in text else ""
                for ln in follow:  # a comment continued on indented `#` lines below the field
                    if not ln.startswith("#") or not comment:
                        break
                    comment += " " + ln.lstrip("#").strip()
                comments[node.target.id] = comment
    return comments


def _type_name(typ) -> str:
    name = getattr(typ, "__name__", None) if not typing.get_args(typ) else None
    return name or str(typ).replace("typing.", "")


def _value_text(value) -> str:
    return "null" if value is None else repr(value) if isinstance(value, str) else str(value)
