"""`RunSetup`: a tokenize run resolved once from its config, used alike by the driver (`run.py`), its stages and
the dry run (`dry_run.py`), so no two places derive the same setting.

What it fixes before anything is listed or written: the input (`input=`, or the generated sample corpus), the decode
settings resolved against the model (`DecodeConfig.for_model`: window length, 256² where `decode.size` is null,
stride), the token layout (regularizer kind, token shape, binary KL tokens vs FSQ id lists) from the preset's
arithmetic (`vidtok.VidTokConfig.latent_shape`: no model is built on the driver), the storage options and the
settings that identify the output (`TokenizeJobConfig.identity`, recorded in `_job.json`). A bad setting raises
`ConfigError` here, before the output is touched. The checkpoint's sha256 (it reads the whole file) is asked for
only by a real run (`checkpoint_sha`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from pipeline.config import ConfigError
from pipeline.decode import DecodeConfig
from pipeline.decode.synth import make_sample_corpus
from pipeline.job_record import OutputClaim
from pipeline.storage import OutputLayout, sha256_of
from pipeline.tokenize.config import TokenizeJobConfig
from vidtok.accel import COMPILE_MODES
from vidtok.presets import preset_config

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunSetup:
    """Everything a tokenize run derives from its config (module docstring); build it with `RunSetup.of(cfg)`."""

    cfg: TokenizeJobConfig
    source: str  # the input URL / manifest (the sample corpus's folder for the embedded default)
    decode: DecodeConfig  # resolved: num_frames, size and stride filled in
    kind: str  # "fsq" | "kl"
    token_shape: tuple  # FSQ (t, h, w); KL (c, t, h, w), for the largest decoded size
    tokens_binary: bool  # KL: raw half-float bytes; FSQ: int32 id lists
    storage_options: dict

    @classmethod
    def of(cls, cfg: TokenizeJobConfig) -> "RunSetup":
        """Resolve `cfg` (settings first: a bad one raises `ConfigError` before anything is generated or listed)."""
        kind, decode, shape, binary = _token_info(cfg)
        return cls(cfg, input_source(cfg), decode, kind, shape, binary, cfg.storage.storage_options())

    @property
    def identity(self) -> dict:
        """The settings that identify the output's tokens (`_job.json`)."""
        return self.cfg.identity(self.decode)

    def claim(self, layout: OutputLayout) -> OutputClaim:
        """The output claim of this run (`pipeline/job_record.py`); not yet checked."""
        return OutputClaim(layout, "tokenize", self.identity, self.source, self.cfg.append)

    def checkpoint_sha(self) -> str:
        """sha256 of the checkpoint (read once, by a real run), or the random-weights marker, loudly."""
        cfg = self.cfg
        if not cfg.checkpoint:
            log.warning("!" * 100)
            log.warning("!!! NO CHECKPOINT: tokenizing with RANDOM WEIGHTS (preset %s, seed %d). These tokens are only "
                        "a pipeline demo. Pass checkpoint=/path/<preset>.ckpt for real tokens (see README).",
                        cfg.preset, cfg.seed)
            log.warning("!" * 100)
            return f"random-init-seed-{cfg.seed}"
        return sha256_of(cfg.checkpoint, self.storage_options)


def _token_info(cfg: TokenizeJobConfig) -> tuple[str, DecodeConfig, tuple, bool]:
    """(regularizer kind, decode settings resolved against the model, token shape, tokens_binary)."""
    if cfg.tokenizer.compile is not None and cfg.tokenizer.compile not in COMPILE_MODES:
        raise ConfigError(f"tokenizer.compile={cfg.tokenizer.compile!r}: use null (eager) or one of {COMPILE_MODES}")
    model = preset_config(cfg.preset)  # the structure's arithmetic: no model is built on the driver
    decode = cfg.decode.for_model(model)
    if decode.whole_clip and model.family != "causal_v1_1":
        raise ConfigError(f"decode.whole_clip=true needs a causal v1.1 preset (any length, chunked inference); "
                          f"{cfg.preset} is {model.family}: use e.g. vidtok_fsq_causal_488_32768_v1_1 or drop it")
    sf = model.spatial_factor
    key = "decode.buckets" if decode.buckets else "decode.size"
    for h, w in decode.output_sizes():
        if h % sf or w % sf:
            raise ConfigError(f"{key}: [{h}, {w}] does not suit {cfg.preset}: height and width must be divisible by "
                              f"its spatial factor {sf} (e.g. [{max(sf, h // sf * sf)}, {max(sf, w // sf * sf)}])")
    if cfg.frames.output:  # the side output's frames are the windows' frames: one decode serves both
        why = ("decode.buckets is set" if decode.buckets else "decode.whole_clip=true" if decode.whole_clip else
               f"decode.size is {list(decode.output_hw())}" if decode.output_hw() != (cfg.frames.size,) * 2 else "")
        if why:
            raise ConfigError(f"frames.output needs the windows' frames to be the cached ones: frames.size="
                              f"{cfg.frames.size} squares of every sample, but {why}; set decode.size="
                              f"{cfg.frames.size} (no buckets, no whole_clip), or cache the frames with "
                              "jobs/cache_frames.py")
    h, w = max(decode.output_sizes(), key=lambda hw: hw[0] * hw[1])  # the largest rows size the shards
    if decode.whole_clip:
        model = model.replace(use_tiling=True, t_chunk_enc=16)
    t, lh, lw = model.latent_shape(decode.max_frames if decode.whole_clip else decode.num_frames, h, w)
    kind = model.regularizer
    shape = (t, lh, lw) if kind == "fsq" else (model.z_channels, t, lh, lw)
    return kind, decode, shape, kind != "fsq"


def input_source(cfg: TokenizeJobConfig) -> str:
    """`cfg.input`, or the generated sample corpus when it is empty (the embedded default)."""
    if cfg.input:
        return cfg.input
    s = cfg.sample
    source = str(make_sample_corpus(s.dir, s.num_clips, s.seconds, s.fps, s.width, s.height))
    log.info("no input= given: using the generated sample corpus %s", source)
    return source
