"""`RunSetup`: a tokenize run resolved once from its config, from the preset's arithmetic (no model built)."""

from __future__ import annotations

import dataclasses

import pytest

from pipeline.config import ConfigError, load_config
from pipeline.tokenize.config import TokenizeJobConfig
from pipeline.tokenize.setup import RunSetup
from vidtok import VidTok


def _setup(*over: str) -> RunSetup:
    return RunSetup.of(load_config(TokenizeJobConfig, None, ["input=/data/videos", *over]))


@pytest.mark.parametrize("preset,over", [("vidtok_fsq_causal_488_32768_tiny", ()),
                                         ("vidtok_kl_noncausal_41616_4chn_tiny", ()),
                                         ("vidtok_kl_causal_488_4chn_tiny", ("decode.size=[128,192]",))])
def test_setup_token_shape_is_the_models(preset, over):
    """Window length, size and token shape equal what the built model says; the setup is frozen."""
    s = _setup(f"preset={preset}", *over)
    model = VidTok.from_config(preset, ch=8)
    h, w = s.decode.output_hw()
    t, lh, lw = model.latent_shape(model.default_num_frames, h, w)
    assert s.decode.num_frames == model.default_num_frames and s.decode.stride == s.decode.num_frames
    assert s.token_shape == ((t, lh, lw) if s.kind == "fsq" else (model.config.z_channels, t, lh, lw))
    assert s.tokens_binary == (s.kind == "kl") and s.source == "/data/videos"
    assert (h, w) == ((256, 256) if not over else (128, 192))
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.source = "elsewhere"


def test_setup_whole_clip_shape_and_bad_settings():
    """Whole-clip pieces are tiled (v1.1 only); a size the model cannot take fails naming the key."""
    s = _setup("preset=vidtok_fsq_causal_488_32768_v1_1_tiny", "decode.whole_clip=true")
    model = VidTok.from_config("vidtok_fsq_causal_488_32768_v1_1_tiny", ch=8, use_tiling=True, t_chunk_enc=16)
    assert s.token_shape == model.latent_shape(s.decode.max_frames, 256, 256)
    with pytest.raises(ConfigError, match="causal v1.1"):
        _setup("preset=vidtok_fsq_causal_488_32768_tiny", "decode.whole_clip=true")
    with pytest.raises(ConfigError, match="decode.size"):
        _setup("preset=vidtok_fsq_causal_488_32768_tiny", "decode.size=[100,128]")
