"""Every released config, built full size on the `meta` device, has exactly the official state-dict keys and shapes.

The manifests in the spec folder's manifests/ were measured by instantiating the official modules; matching them
(keys, order, shapes, parameter counts) is what lets the released `.ckpt` files load strictly without key mapping.
They are not in the repository: without the spec folder these tests skip, and under CI (`CI=true`) they fail
(`tests.conftest.spec_missing`).
"""

from __future__ import annotations

import json

import pytest
import torch

from vidtok import VidTok, list_presets, preset_config

# One manifest per official preset. Parametrized by name, not by the files found, so a missing spec folder cannot
# empty the list: the spec_dir fixture then skips each test or, under CI, fails it.
PRESETS = list_presets(include_tiny=False)


def test_manifests_cover_every_official_preset(spec_dir):
    """The 23 manifests and the 23 official preset names are the same set."""
    manifests = {p.stem for p in (spec_dir / "manifests").glob("*.json") if not p.name.startswith("_")}
    assert len(manifests) == 23
    assert manifests == set(PRESETS)


@pytest.mark.parametrize("preset", PRESETS)
def test_manifest_preset_state_dict_keys_and_shapes(spec_dir, preset):
    """The full-size preset's official_state_dict has the manifest's keys (in order), shapes and parameter counts."""
    m = json.loads((spec_dir / "manifests" / f"{preset}.json").read_text())
    with torch.device("meta"):
        model = VidTok.from_config(preset)
    sd = model.official_state_dict()
    expected = m["state_dict"]
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected]
    assert not missing and not unexpected, f"missing {missing[:5]} unexpected {unexpected[:5]}"
    assert list(sd) == list(expected), "key order differs from the official registration order"
    bad = {k: (tuple(sd[k].shape), tuple(v)) for k, v in expected.items() if tuple(sd[k].shape) != tuple(v)}
    assert not bad, f"shape mismatches (ours, official): {dict(list(bad.items())[:5])}"
    assert len(sd) == m["num_state_dict_keys"]
    n_enc = sum(p.numel() for p in model.encoder.parameters())
    n_dec = sum(p.numel() for p in model.decoder.parameters())
    n_reg = sum(p.numel() for p in model.regularizer.parameters())
    assert (n_enc, n_dec, n_reg) == (m["params_encoder"], m["params_decoder"], m["params_regularization"])
    assert n_enc + n_dec + n_reg == m["params_total"]


@pytest.mark.parametrize("preset", PRESETS)
def test_manifest_preset_config_matches_official_params(spec_dir, preset):
    """The preset's parsed config carries the manifest's z_channels, ch_mult, tdf and FSQ levels."""
    m = json.loads((spec_dir / "manifests" / f"{preset}.json").read_text())["config"]
    cfg = preset_config(preset)
    enc = m["encoder_params"]
    assert cfg.z_channels == enc["z_channels"]
    assert cfg.ch_mult == list(enc["ch_mult"]) and cfg.ch == enc["ch"]
    assert cfg.time_downsample_factor == enc["time_downsample_factor"]
    assert cfg.double_z == enc["double_z"]
    if cfg.regularizer == "fsq":
        assert cfg.levels == m["regularizer_params"]["levels"]
