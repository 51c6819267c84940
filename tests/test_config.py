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


def test_train_config_explicit_value_beats_schedule():
    """`schedule=tiny loss.perceptual_weight=1.0` trains with 1.0; unset keys take the schedule's value."""
    from pipeline.train.config import TrainConfig

    cfg = load_config(TrainConfig, None, ["schedule=tiny", "loss.perceptual_weight=1.0"])
    assert cfg.loss.perceptual_weight == 1.0 and cfg.loss.disc_ndf == 16 and cfg.steps == 8 and cfg.decode.size == 32
    cfg = load_config(TrainConfig, None, ["schedule=tiny", "steps=3", "decode.size=64"])
    assert cfg.loss.perceptual_weight == 0.0 and cfg.steps == 3 and cfg.decode.size == 64


def test_train_engine_uses_explicit_perceptual_weight():
    """The engine built from that config has an LPIPS term weighted 1.0 (random backbone: no weights file)."""
    from pipeline.train.config import TrainConfig
    from pipeline.train.loop import build_engine

    cfg = load_config(TrainConfig, None, ["schedule=tiny", "loss.perceptual_weight=1.0",
                                          "loss.lpips_random_backbone=true"])
    engine = build_engine(cfg)
    assert engine.loss.cfg.perceptual_weight == 1.0 and engine.loss.perceptual_loss is not None


def test_train_stage2_finds_stage1_by_preset_and_output_whatever_the_name(tmp_path):
    """Stage 2 with a custom `name=` starts from `<output>/<preset>_stage1`, not from a substituted name."""
    from pipeline.train.config import TrainConfig
    from pipeline.train.setup import TrainPaths

    cfg = load_config(TrainConfig, None, ["stage=2", f"output={tmp_path}", "name=my_finetune"])
    paths = TrainPaths.of(cfg)
    assert paths.run_dir == str(tmp_path / "my_finetune")
    assert paths.init_from == str(tmp_path / f"{cfg.preset}_stage1")
    cfg = load_config(TrainConfig, None, ["stage=2", "output=s3://b/runs", "init_from=s3://b/other/run"])
    assert TrainPaths.of(cfg).init_from == "s3://b/other/run"


def test_load_config_unknown_key_with_required_fields_names_it():
    """A schema with a required (MISSING) field still reports an unknown key by name (no MissingMandatoryValue)."""
    from omegaconf import MISSING

    @dataclass
    class Needs:
        preset: str = MISSING
        output: str = "x"

    with pytest.raises(ConfigError, match="colour.*valid keys: preset, output"):
        load_config(Needs, None, ["preset=a", "colour=red"])
    with pytest.raises(ConfigError, match="required config key.*preset"):
        load_config(Needs, None, [])


def test_decode_tasks_sized_by_input_bytes():
    """`decode_task.inputs_per_task=null` sizes decode tasks by `task_mb` of input bytes: one-second clips share a
    task by the hundred, big files get one each; never fewer than 4 tasks per decode slot; 8 with no sizes known;
    an explicit value wins; a bad one names the key."""
    from pipeline.tokenize.config import MAX_INPUTS_PER_TASK, UNSIZED_INPUTS_PER_TASK
    from pipeline.tokenize.config import TokenizeDecodeTaskConfig as DecodeTaskConfig

    auto = DecodeTaskConfig()
    assert auto.inputs_for(10**6, 10**6 * 5_000, 10**6, slots=100) == MAX_INPUTS_PER_TASK  # 5 kB clips
    assert auto.inputs_for(10**5, 10**5 * (64 << 20), 10**5, slots=100) == 4  # 64 MB videos: 256 MB a task
    assert auto.inputs_for(1000, 1000 * (2 << 30), 1000, slots=10) == 1  # 2 GB files
    assert auto.inputs_for(2000, 2000 * 5_000, 2000, slots=2) == 250  # small corpus: >= 4 tasks per slot
    assert auto.inputs_for(1000, 0, 0, slots=10) == UNSIZED_INPUTS_PER_TASK == 8  # a manifest without sizes
    assert DecodeTaskConfig(inputs_per_task=3).inputs_for(10**6, 1, 10**6, 1) == 3
    with pytest.raises(ValueError, match="decode_task.inputs_per_task"):
        DecodeTaskConfig(inputs_per_task=0)
    with pytest.raises(ValueError, match="decode_task.task_mb"):
        DecodeTaskConfig(task_mb=0)


def test_task_sizing_keys_only_where_read():
    """Training decodes one item per task: its `decode_task.*` has no task-sizing keys, and passing one fails."""
    from pipeline.train.config import TrainConfig

    with pytest.raises(ConfigError, match="decode_task.task_mb"):
        load_config(TrainConfig, None, ["decode_task.task_mb=64"])
    assert load_config(TrainConfig, None, ["decode_task.memory_mb=512"]).decode_task.ray_kwargs() == \
        {"num_cpus": 1.0, "memory": 512 << 20}
