"""A training stage resolved once (`pipeline.train.setup.TrainRun`): what the driver, the dry run and every worker
read, computed from the config alone (no listing, no Ray, no model built)."""

from __future__ import annotations

import pickle

import pytest

from pipeline.config import load_config
from pipeline.train.config import TrainConfig
from pipeline.train.setup import TrainRun
from vidtok import VidTok


@pytest.mark.parametrize("preset,frames", [("vidtok_fsq_causal_488_32768_tiny", 17),
                                           ("vidtok_fsq_noncausal_488_262144_tiny", 16)])
def test_train_run_resolves_decode_from_schedule_and_preset(tmp_path, preset, frames):
    """The window length is the preset's (17 causal, 16 non-causal, as the built model says), the crop the schedule's;
    an explicit `decode.num_frames` wins; the export URL names the final step."""
    cfg = load_config(TrainConfig, None, [f"preset={preset}", f"output={tmp_path}", "schedule=paper"])
    run = TrainRun.of(cfg)
    assert run.num_frames == run.decode.num_frames == frames == VidTok.from_config(preset).default_num_frames
    assert run.decode.size == 128 and run.decode.fps == cfg.decode.fps
    assert cfg.decode.num_frames is None  # the config is left as given (config.yaml records what the user set)
    assert run.paths.run_dir == str(tmp_path / f"{preset}_stage1") and run.paths.index == str(tmp_path / "_index")
    assert run.export == str(tmp_path / f"{preset}_stage1" / "export" / f"{preset}_stage1_step00050000.ckpt")
    explicit = TrainRun.of(load_config(TrainConfig, None, [f"preset={preset}", "decode.num_frames=9"]))
    assert explicit.num_frames == 9


def test_train_run_is_the_workers_whole_config(tmp_path):
    """`export=false` gives no export URL; storage options come from `storage.*` in one field; with its inputs the
    run pickles as the one value of Ray Train's loop config, unchanged."""
    cfg = load_config(TrainConfig, None, [f"output={tmp_path}", "export=false", "storage.endpoint_url=http://x:1",
                                          "storage.key=k", "storage.secret=s"])
    run = TrainRun.of(cfg, fail_at_step=3).with_inputs(["a.mp4", "b.mp4"], ["c.mp4"])
    assert run.export is None and run.fail_at_step == 3
    assert run.storage_options == cfg.storage_options and run.storage_options["key"] == "k"
    assert not hasattr(run.paths, "storage_options")
    back = pickle.loads(pickle.dumps({"run": run}))["run"]
    assert back.train_urls == ["a.mp4", "b.mp4"] and back.val_urls == ("c.mp4",) and back.decode == run.decode
    with pytest.raises(Exception):
        run.export = "elsewhere"  # frozen: resolved once
