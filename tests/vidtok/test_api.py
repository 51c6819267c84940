"""The public VidTok API contract: presets, config validation, input checks, checkpoint loading and safety.

Tiny presets with random weights; checkpoint files are written by the test (Lightning-style dicts, bare state
dicts, a pickle that needs full unpickling) and loaded back.
"""

from __future__ import annotations

import argparse
import hashlib
import re

import pytest
import torch

from vidtok import VidTok, VidTokConfig, list_presets, preset_config
from vidtok.checkpoint import file_sha256
from vidtok.presets import preset_path

torch.set_num_threads(2)

V10_NAMES = ["vidtok_fsq_causal_41616_262144", "vidtok_fsq_causal_488_262144", "vidtok_fsq_causal_488_32768",
             "vidtok_fsq_causal_488_4096", "vidtok_fsq_noncausal_41616_262144", "vidtok_fsq_noncausal_488_262144",
             "vidtok_kl_causal_288_8chn", "vidtok_kl_causal_41616_4chn", "vidtok_kl_causal_444_4chn",
             "vidtok_kl_causal_488_16chn", "vidtok_kl_causal_488_4chn", "vidtok_kl_causal_488_8chn",
             "vidtok_kl_noncausal_41616_16chn", "vidtok_kl_noncausal_41616_4chn", "vidtok_kl_noncausal_488_16chn",
             "vidtok_kl_noncausal_488_4chn"]
V11_NAMES = ["vidtok_fsq_causal_41616_262144_v1_1", "vidtok_fsq_causal_488_32768_v1_1",
             "vidtok_fsq_causal_888_32768_v1_1", "vidtok_kl_causal_288_8chn_v1_1", "vidtok_kl_causal_41616_16chn_v1_1",
             "vidtok_kl_causal_488_16chn_v1_1", "vidtok_kl_causal_488_4chn_v1_1"]
TINY = "vidtok_fsq_causal_488_32768_tiny"


@pytest.fixture(scope="module")
def tiny() -> VidTok:
    return VidTok.from_config(TINY).eval()


def test_presets_list_official_names_and_tiny_twins():
    """list_presets() has the 16 v1.0 and 7 v1.1 official names, each with a `_tiny` twin."""
    names = list_presets()
    assert set(V10_NAMES + V11_NAMES) == set(list_presets(include_tiny=False))
    assert {n + "_tiny" for n in V10_NAMES + V11_NAMES} <= set(names)
    assert len(names) == 46


def test_presets_select_family_regularizer_and_tiny_width():
    """Presets map official targets to families; the tiny twin differs only in ch."""
    assert preset_config("vidtok_kl_causal_488_4chn").family == "causal_v1_0"
    assert preset_config("vidtok_kl_causal_488_4chn_v1_1").family == "causal_v1_1"
    assert preset_config("vidtok_kl_noncausal_488_4chn").family == "noncausal"
    full, small = preset_config("vidtok_fsq_causal_888_32768_v1_1"), preset_config("vidtok_fsq_causal_888_32768_v1_1_tiny")
    assert (full.regularizer, full.levels, full.time_downsample_factor) == ("fsq", [8] * 5, 8)
    assert small == full.replace(ch=8)


def test_model_properties_describe_the_tokenizer(tiny):
    """Descriptive attributes used by the tokenize job and training code have the documented values."""
    assert tiny.preset_name == TINY and tiny.is_causal and tiny.regularizer_kind == "fsq"
    assert (tiny.time_downsample_factor, tiny.spatial_factor, tiny.default_num_frames) == (4, 8, 17)
    assert tiny.codebook_size == 32768 and tiny.latent_shape(17, 256, 256) == (5, 32, 32)
    assert tiny.get_last_layer() is tiny.decoder.conv_out.conv.weight
    assert VidTok.from_config("vidtok_kl_noncausal_488_4chn_tiny").default_num_frames == 16


def test_from_config_unknown_preset_names_close_matches():
    """An unknown preset name fails with the closest official names."""
    with pytest.raises(ValueError, match="vidtok_fsq_causal_488_32768"):
        VidTok.from_config("vidtok_fsq_causal_488_3276")


def test_from_config_unknown_target_names_it(tmp_path):
    """A YAML whose encoder target is not in the registry fails naming that target."""
    text = preset_path(TINY).read_text()
    bad = tmp_path / "bad.yaml"
    bad.write_text(text.replace("vidtok.modules.model_3dcausal.EncoderCausal3DPadding", "my.pkg.Encoder"))
    with pytest.raises(ValueError, match=re.escape("unknown encoder target 'my.pkg.Encoder'")):
        VidTok.from_config(bad)


def test_from_config_overrides_are_validated():
    """Tiling overrides apply to v1.1 models and invalid values fail naming the field and the fix."""
    model = VidTok.from_config("vidtok_kl_causal_488_4chn_v1_1_tiny", use_tiling=True, t_chunk_enc=8, use_overlap=True)
    assert (model.use_tiling, model.t_chunk_enc, model.t_chunk_dec, model.use_overlap) == (True, 8, 2, True)
    with pytest.raises(ValueError, match="t_chunk_enc=6 must be a multiple of time_downsample_factor=4"):
        VidTok.from_config("vidtok_kl_causal_488_4chn_v1_1_tiny", use_tiling=True, t_chunk_enc=6)
    with pytest.raises(ValueError, match="use_tiling=True needs family='causal_v1_1'"):
        VidTok.from_config(TINY, use_tiling=True)


@pytest.mark.parametrize("kwargs,message", [
    (dict(levels=[8, 8]), "levels=\\[8, 8\\] must have one entry per latent channel"),
    (dict(time_downsample_factor=8), "time_downsample_factor=8 must equal 2\\*\\*\\(temporal stages\\) = 4"),
    (dict(family="causal_v2"), "family='causal_v2' is not supported"),
    (dict(ch_mult=[1]), "ch_mult=\\[1\\] needs >= 2"),
])
def test_config_post_init_names_field_value_and_fix(kwargs, message):
    """VidTokConfig validation errors name the field, the bad value and what to do."""
    base = dict(family="causal_v1_0", regularizer="fsq", z_channels=5, levels=[8] * 5)
    with pytest.raises(ValueError, match=message):
        VidTokConfig(**{**base, **kwargs})


@pytest.mark.parametrize("make,message", [
    (lambda: torch.zeros(3, 17, 32, 32), "expected video of rank 5"),
    (lambda: torch.zeros(1, 4, 17, 32, 32), "expected 3 channels"),
    (lambda: torch.zeros(1, 3, 16, 32, 32), "causal v1.0 models need T = 1 \\+ k\\*4 frames"),
    (lambda: torch.zeros(1, 3, 17, 32, 32, dtype=torch.uint8), "expected a floating-point video"),
    (lambda: torch.full((1, 3, 17, 32, 32), 2.0), "expected video values in \\[-1, 1\\]"),
    (lambda: torch.zeros(1, 3, 17, 30, 32), "expected H and W divisible by the spatial factor 8"),
])
def test_encode_bad_input_raises_rule(tiny, make, message):
    """encode and reconstruct reject malformed videos with a ValueError that states the rule."""
    x = make()
    with pytest.raises(ValueError, match=message):
        tiny.encode(x)
    with pytest.raises(ValueError, match=message):
        tiny.reconstruct(x)


def test_noncausal_frame_rule_and_decode_indices_checks(tiny):
    """Non-causal T must divide by tdf; decode_indices rejects float, out-of-range ids and KL models."""
    noncausal = VidTok.from_config("vidtok_kl_noncausal_488_4chn_tiny")
    with pytest.raises(ValueError, match="divisible by time_downsample_factor=4"):
        noncausal.encode(torch.zeros(1, 3, 15, 16, 16))
    with pytest.raises(ValueError, match="expected integer token ids"):
        tiny.decode_indices(torch.zeros(1, 2, 2, 2))
    with pytest.raises(ValueError, match="expected token ids in \\[0, 32768\\)"):
        tiny.decode_indices(torch.full((1, 2, 2, 2), 32768))
    with pytest.raises(ValueError, match="needs an FSQ model"):
        noncausal.decode_indices(torch.zeros(1, 2, 2, 2, dtype=torch.int32))


def _lightning_checkpoint(model: VidTok) -> dict:
    """A dict shaped like Lightning 2.2's ModelCheckpoint output (checkpoints.md §1), incl. training-only keys."""
    sd = dict(model.official_state_dict())
    sd["loss.logvar"] = torch.zeros(())
    sd["loss.discriminator.main.0.weight"] = torch.zeros(64, 3, 4, 4)
    return {"state_dict": sd, "epoch": 3, "global_step": 10000, "pytorch-lightning_version": "2.2.4",
            "loops": {"fit_loop": {"epoch_progress": {"current": {"completed": 3}}}},
            "callbacks": {"ModelCheckpoint": {"best_model_score": torch.tensor(0.1), "dirpath": "/ckpt"}},
            "optimizer_states": [{"state": {}, "param_groups": [{"lr": 1e-5, "params": [0]}]}], "lr_schedulers": []}


def test_load_lightning_ckpt_file_ignores_training_keys(tmp_path, caplog):
    """A Lightning .ckpt loads with weights_only; loss.* keys are ignored with a log line; outputs match."""
    source = VidTok.from_config(TINY).eval()
    with torch.no_grad():
        for p in source.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    path = tmp_path / "model.ckpt"
    torch.save(_lightning_checkpoint(source), path)
    with caplog.at_level("INFO", logger="vidtok.checkpoint"):
        loaded = VidTok.from_pretrained(TINY, path)
    assert "loss." in caplog.text
    for k, v in source.official_state_dict().items():
        assert torch.equal(loaded.official_state_dict()[k], v), k
    x = torch.rand(1, 3, 5, 16, 16) * 2 - 1
    with torch.no_grad():
        assert torch.equal(loaded.encode(x).indices, source.encode(x).indices)


def test_load_state_dict_reports_missing_unexpected_and_shape_errors(tiny):
    """Missing, unexpected and mis-shaped keys raise a ValueError that counts and names them."""
    sd = dict(tiny.official_state_dict())
    del sd["decoder.conv_out.conv.bias"]
    with pytest.raises(ValueError, match="1 missing keys.*decoder.conv_out.conv.bias"):
        VidTok.from_config(TINY).load_official_state_dict(sd)
    noncausal = VidTok.from_config("vidtok_fsq_noncausal_488_262144_tiny")
    with pytest.raises(ValueError, match="missing keys.*unexpected keys"):
        noncausal.load_official_state_dict(tiny.official_state_dict())
    sd = dict(tiny.official_state_dict())
    sd["encoder.conv_in.conv.weight"] = torch.zeros(1, 3, 3, 3, 3)
    with pytest.raises(ValueError, match="shape mismatches"):
        VidTok.from_config(TINY).load_official_state_dict(sd)


def test_unsafe_pickle_refused_unless_opted_in(tmp_path, tiny):
    """A checkpoint needing full unpickling is refused naming allow_unsafe_pickle; the opt-in loads it."""
    ckpt = {"state_dict": tiny.official_state_dict(), "hyper_parameters": argparse.Namespace(lr=1e-5)}
    path = tmp_path / "unsafe.ckpt"
    torch.save(ckpt, path)
    with pytest.raises(ValueError, match="allow_unsafe_pickle=True"):
        VidTok.from_pretrained(TINY, path)
    model = VidTok.from_pretrained(TINY, path, allow_unsafe_pickle=True)
    assert torch.equal(model.get_last_layer(), tiny.get_last_layer())


def test_safetensors_checkpoint_loads(tmp_path, tiny):
    """A .safetensors file with official key names loads (when the package is installed)."""
    st = pytest.importorskip("safetensors.torch")
    path = tmp_path / "model.safetensors"
    st.save_file({k: v.contiguous() for k, v in tiny.official_state_dict().items()}, str(path))
    model = VidTok.from_pretrained(TINY, path)
    assert torch.equal(model.get_last_layer(), tiny.get_last_layer())


def test_file_sha256_matches_hashlib(tmp_path):
    """file_sha256 returns the hex SHA-256 of the file contents."""
    path = tmp_path / "blob.bin"
    data = bytes(range(256)) * 5000
    path.write_bytes(data)
    assert file_sha256(path) == hashlib.sha256(data).hexdigest()
