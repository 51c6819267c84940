"""Every released config, built full size on the `meta` device, has exactly the official state-dict keys and shapes.

The manifests in vidtok-spec/manifests/ were measured by instantiating the official modules; matching them (keys,
order, shapes, parameter counts) is what lets the released `.ckpt` files load strictly without key mapping.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from tests.conftest import find_spec_dir
from vidtok import VidTok, list_presets, preset_config

SPEC_DIR = find_spec_dir() or Path(os.environ.get("VIDTOK_SPEC_DIR", "vidtok-spec"))
MANIFESTS = sorted(p for p in (SPEC_DIR / "manifests").glob("*.json") if not p.name.startswith("_")) \
    if (SPEC_DIR / "manifests").is_dir() else []
needs_spec = pytest.mark.skipif(not MANIFESTS, reason=f"no manifests under {SPEC_DIR}; set VIDTOK_SPEC_DIR")


@needs_spec
def test_manifests_cover_every_official_preset():
    """The 23 manifests and the 23 official preset names are the same set."""
    assert len(MANIFESTS) == 23
    assert {p.stem for p in MANIFESTS} == set(list_presets(include_tiny=False))


@needs_spec
@pytest.mark.parametrize("manifest", MANIFESTS, ids=lambda p: p.stem)
def test_manifest_preset_state_dict_keys_and_shapes(manifest):
    """The full-size preset's official_state_dict has the manifest's keys (in order), shapes and parameter counts."""
    m = json.loads(manifest.read_text())
    with torch.device("meta"):
        model = VidTok.from_config(manifest.stem)
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


@needs_spec
@pytest.mark.parametrize("manifest", MANIFESTS, ids=lambda p: p.stem)
def test_manifest_preset_config_matches_official_params(manifest):
    """The preset's parsed config carries the manifest's z_channels, ch_mult, tdf and FSQ levels."""
    m = json.loads(manifest.read_text())["config"]
    cfg = preset_config(manifest.stem)
    enc = m["encoder_params"]
    assert cfg.z_channels == enc["z_channels"]
    assert cfg.ch_mult == list(enc["ch_mult"]) and cfg.ch == enc["ch"]
    assert cfg.time_downsample_factor == enc["time_downsample_factor"]
    assert cfg.double_z == enc["double_z"]
    if cfg.regularizer == "fsq":
        assert cfg.levels == m["regularizer_params"]["levels"]
