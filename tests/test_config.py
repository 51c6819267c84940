"""Job config loading: YAML + overrides into dataclasses, unknown keys fail fast by name, secrets never written."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from pipeline.config import ConfigError, load_config, redact, split_args, to_yaml


@dataclass
class Storage:
    endpoint_url: str | None = None
    secret_access_key: str | None = None


@dataclass
class Job:
    input: str = "sample"
    batch_size: int = 4
    storage: Storage = field(default_factory=Storage)

    def __post_init__(self):
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, found {self.batch_size}")


def test_load_config_yaml_then_overrides(tmp_path):
    """The YAML file overrides the defaults and key=value overrides the file."""
    p = tmp_path / "c.yaml"
    p.write_text("input: s3://a/b\nbatch_size: 8\n")
    cfg = load_config(Job, p, ["batch_size=16", "storage.endpoint_url=http://x"])
    assert isinstance(cfg, Job) and isinstance(cfg.storage, Storage)
    assert (cfg.input, cfg.batch_size, cfg.storage.endpoint_url) == ("s3://a/b", 16, "http://x")


def test_load_config_unknown_key_names_it(tmp_path):
    """A typo in an override fails at once and the message names the key."""
    with pytest.raises(ConfigError, match="batchsize"):
        load_config(Job, None, ["batchsize=3"])
    p = tmp_path / "c.yaml"
    p.write_text("storage:\n  endpoint: http://x\n")
    with pytest.raises(ConfigError, match="endpoint"):
        load_config(Job, p)


def test_load_config_bad_type_and_validation():
    """A value of the wrong type names the key; __post_init__ rules still apply."""
    with pytest.raises(ConfigError, match="batch_size"):
        load_config(Job, None, ["batch_size=many"])
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        load_config(Job, None, ["batch_size=0"])


def test_redact_hides_credentials():
    """Secrets are replaced in the resolved config that jobs print and write."""
    cfg = load_config(Job, None, ["storage.secret_access_key=hunter2"])
    text = to_yaml(cfg)
    assert "hunter2" not in text and "***" in text
    assert redact({"aws_access_key_id": "AKIA", "x": 1}) == {"aws_access_key_id": "***", "x": 1}


def test_split_args_forms():
    """config=, --config and bare .yaml select the file; everything else must be key=value."""
    assert split_args(["config=a.yaml", "x=1"]) == ("a.yaml", ["x=1"])
    assert split_args(["--config", "b.yml", "y=2"]) == ("b.yml", ["y=2"])
    assert split_args(["c.yaml"]) == ("c.yaml", [])
    with pytest.raises(ConfigError, match="key=value"):
        split_args(["--verbose"])
