"""`VidTokConfig`: the typed schema of one VidTok tokenizer, and how it is read from an official YAML config.

Spec: ARCHITECTURE.md §2 (config -> structure) and checkpoints.md §4 (target strings choose classes).
The official configs name Python classes (`target: vidtok.modules.model_3dcausal_v1_1.EncoderCausal3DPadding`);
here those strings are only *keys* of a closed registry that maps them onto a family ('causal_v1_0' |
'causal_v1_1' | 'noncausal') and a regularizer ('fsq' | 'kl'). Nothing is imported from a config string, and an
unknown target fails with its name. Field names keep the reference vocabulary (`z_channels`, `levels`, `ch_mult`,
`num_res_blocks`, `time_downsample_factor`, `spatial_ds`, ...).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

FAMILIES = ("causal_v1_0", "causal_v1_1", "noncausal")
REGULARIZERS = ("fsq", "kl")

# Closed registries (checkpoints.md §4): official target string -> what it selects.
ENGINE_TARGETS = {
    "vidtok.models.autoencoder.AutoencodingEngine": "v1_0",
    "vidtok.models.autoencoder_v1_1.AutoencodingEngine": "v1_1",
}
ENCODER_TARGETS = {
    "vidtok.modules.model_3dcausal.EncoderCausal3DPadding": "causal_v1_0",
    "vidtok.modules.model_3dcausal_v1_1.EncoderCausal3DPadding": "causal_v1_1",
    "vidtok.modules.model_3dnoncausal.Encoder3D": "noncausal",
}
DECODER_TARGETS = {
    "vidtok.modules.model_3dcausal.DecoderCausal3DPadding": "causal_v1_0",
    "vidtok.modules.model_3dcausal_v1_1.DecoderCausal3DPadding": "causal_v1_1",
    "vidtok.modules.model_3dnoncausal.Decoder3D": "noncausal",
}
REGULARIZER_TARGETS = {
    "vidtok.modules.regularizers.FSQRegularizer": "fsq",
    "vidtok.modules.regularizers.DiagonalGaussianRegularizer": "kl",
}
FSQ_PARAM_KEYS = ("entropy_loss_weight", "entropy_loss_annealing_steps", "entropy_loss_annealing_factor",
                  "commitment_loss_weight", "diversity_gamma")


def _lookup(registry: dict, target: Any, what: str) -> str:
    if target not in registry:
        known = "\n  ".join(sorted(registry))
        raise ValueError(f"unknown {what} target {target!r}; expected one of:\n  {known}")
    return registry[target]


@dataclass
class VidTokConfig:
    """Architecture + regularizer + inference options of one VidTok model (official defaults where they exist)."""

    family: str                                  # 'causal_v1_0' | 'causal_v1_1' | 'noncausal'
    regularizer: str                             # 'fsq' | 'kl'
    z_channels: int                              # latent channels after the regularizer
    levels: Optional[list[int]] = None           # FSQ levels per channel, e.g. [8]*5 (FSQ only)
    ch: int = 128
    ch_mult: list[int] = field(default_factory=lambda: [1, 2, 4, 4])
    num_res_blocks: int = 2
    in_channels: int = 3
    out_ch: int = 3
    time_downsample_factor: int = 4
    # Causal only; None = the official defaults (§2.1). Non-causal models ignore them like the official code.
    spatial_ds: Optional[list[int]] = None
    tempo_ds: Optional[list[int]] = None
    spatial_us: Optional[list[int]] = None
    tempo_us: Optional[list[int]] = None
    norm_type: str = "layernorm"
    init_pad_mode: str = "replicate"
    interpolation_mode: str = "trilinear"        # v1.1 temporal up-sampling ('trilinear' | 'nearest')
    dropout: float = 0.0
    fix_encoder: bool = False
    # FSQ training-loss hyper-parameters (§7.1); unused at inference.
    entropy_loss_weight: float = 0.1
    entropy_loss_annealing_steps: int = 2000
    entropy_loss_annealing_factor: float = 3.0
    commitment_loss_weight: float = 0.25
    diversity_gamma: float = 1.0
    # v1.1 temporal tiling (§9); t_chunk_dec is derived as t_chunk_enc // time_downsample_factor.
    use_tiling: bool = False
    t_chunk_enc: int = 16
    use_overlap: bool = False

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"family={self.family!r} is not supported; use one of {FAMILIES}")
        if self.regularizer not in REGULARIZERS:
            raise ValueError(f"regularizer={self.regularizer!r} is not supported; use one of {REGULARIZERS}")
        for name in ("z_channels", "ch", "num_res_blocks", "in_channels", "out_ch", "time_downsample_factor",
                     "t_chunk_enc"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name}={value!r} must be a positive int")
        self.ch_mult = [int(m) for m in self.ch_mult]
        if len(self.ch_mult) < 2 or min(self.ch_mult) < 1:
            raise ValueError(f"ch_mult={self.ch_mult} needs >= 2 positive entries (one per level), e.g. [1, 2, 4, 4]")
        if self.regularizer == "fsq":
            if not self.levels or len(self.levels) != self.z_channels:
                raise ValueError(f"levels={self.levels} must have one entry per latent channel "
                                 f"(z_channels={self.z_channels}); e.g. levels=[8]*{self.z_channels}")
            self.levels = [int(v) for v in self.levels]
            if min(self.levels) < 2:
                raise ValueError(f"levels={self.levels}: every FSQ level must be >= 2")
        elif self.levels is not None:
            raise ValueError(f"levels={self.levels} is set but regularizer='kl'; drop levels or use regularizer='fsq'")
        if self.norm_type != "layernorm":
            raise ValueError(f"norm_type={self.norm_type!r}: only 'layernorm' is implemented (every released config "
                             "uses it, spec §3.1)")
        if self.init_pad_mode != "replicate":
            raise ValueError(f"init_pad_mode={self.init_pad_mode!r}: only 'replicate' is implemented (spec §4.1)")
        if self.interpolation_mode not in ("trilinear", "nearest"):
            raise ValueError(f"interpolation_mode={self.interpolation_mode!r}; use 'trilinear' or 'nearest'")
        L = len(self.ch_mult)
        for name in ("spatial_ds", "tempo_ds", "spatial_us", "tempo_us"):
            value = getattr(self, name)
            if value is not None:
                value = [int(v) for v in value]
                setattr(self, name, value)
                if any(not 0 <= v < L for v in value):
                    raise ValueError(f"{name}={value}: level indices must be in [0, {L - 1}] for ch_mult={self.ch_mult}")
        stages = len(self.encoder_tempo_levels())
        dec_stages = len(self.decoder_tempo_levels())
        if self.time_downsample_factor != 2 ** stages or dec_stages != stages:
            raise ValueError(f"time_downsample_factor={self.time_downsample_factor} must equal 2**(temporal stages)"
                             f" = {2 ** stages} (encoder levels {self.encoder_tempo_levels()}, decoder levels "
                             f"{self.decoder_tempo_levels()}); fix tempo_ds/tempo_us or time_downsample_factor")
        if self.use_tiling and self.family != "causal_v1_1":
            raise ValueError(f"use_tiling=True needs family='causal_v1_1' (found {self.family!r}); temporal tiling "
                             "exists only in the v1.1 engine (spec §9)")
        if self.use_tiling and self.t_chunk_enc % self.time_downsample_factor:
            raise ValueError(f"t_chunk_enc={self.t_chunk_enc} must be a multiple of time_downsample_factor="
                             f"{self.time_downsample_factor} (spec §9), e.g. t_chunk_enc=16")

    # ---- derived structure (spec §2.1) -------------------------------------------------------------
    @property
    def num_levels(self) -> int:
        return len(self.ch_mult)

    @property
    def is_causal(self) -> bool:
        return self.family != "noncausal"

    @property
    def default_num_frames(self) -> int:
        """Training/tokenizing window: 17 for causal models (1 + 4k), 16 for non-causal (§12, §13)."""
        return 17 if self.is_causal else 16

    @property
    def double_z(self) -> bool:
        """KL encoders emit mean and log-variance (2*z_channels); FSQ encoders emit z_channels."""
        return self.regularizer == "kl"

    def encoder_spatial_levels(self) -> list[int]:
        L = self.num_levels
        if self.family == "noncausal" or self.spatial_ds is None:
            return list(range(L - 1))
        return sorted(self.spatial_ds)

    def encoder_tempo_levels(self) -> list[int]:
        """Levels with a temporal down-sampler: only inside the spatial branch for causal models (§2.1)."""
        L = self.num_levels
        default = [L - 2, L - 3]
        if self.family == "noncausal":
            return sorted(default)
        tempo = default if self.tempo_ds is None else self.tempo_ds
        return sorted(i for i in set(tempo) if i in self.encoder_spatial_levels())

    def decoder_spatial_levels(self) -> list[int]:
        L = self.num_levels
        if self.family == "noncausal" or self.spatial_us is None:
            return list(range(1, L))
        return sorted(self.spatial_us)

    def decoder_tempo_levels(self) -> list[int]:
        """Levels whose temporal up-sampler is applied (it must also up-sample spatially, §2.1)."""
        if self.family == "noncausal":
            return [1, 2]
        tempo = [1, 2] if self.tempo_us is None else self.tempo_us
        return sorted(i for i in set(tempo) if i in self.decoder_spatial_levels())

    def decoder_tempo_modules(self) -> list[int]:
        """Levels that *own* a temporal up-sampling module (exists even if never applied, §2.1)."""
        if self.family == "noncausal":
            return [1, 2]
        return sorted(set([1, 2] if self.tempo_us is None else self.tempo_us))

    @property
    def spatial_factor(self) -> int:
        return 2 ** len(self.encoder_spatial_levels())

    def latent_shape(self, T: int, H: int, W: int) -> tuple[int, int, int]:
        """Latent (t, h, w) for an input of T x H x W frames (§6 frame-count rule, §9 tiled count): arithmetic on
        the config, so a job asks it without building a model."""
        tdf = self.time_downsample_factor
        if self.family == "causal_v1_0":
            t = (T if T % tdf == 0 else T + tdf - 1) // tdf
        elif self.family == "causal_v1_1":
            if self.use_tiling:
                t = sum(-(-(e - s) // tdf) for s, e in build_chunk_start_end(T, self.t_chunk_enc))
            else:
                t = -(-T // tdf)
        else:
            t = T // tdf
        h, w = H, W
        for _ in self.encoder_spatial_levels():
            h, w = h // 2, w // 2
        return t, h, w

    @property
    def codebook_size(self) -> Optional[int]:
        return math.prod(self.levels) if self.regularizer == "fsq" else None

    def replace(self, **changes: Any) -> "VidTokConfig":
        """A validated copy with some fields changed (unknown field -> TypeError naming it)."""
        return dataclasses.replace(self, **changes)

    # ---- official YAML ----------------------------------------------------------------------------
    @classmethod
    def from_yaml(cls, path: str | Path) -> "VidTokConfig":
        """Read an official-style config (`model: {target, params: {encoder_config, ...}}`) with OmegaConf."""
        from omegaconf import OmegaConf

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config file {path} does not exist; pass a YAML path or a preset name "
                                    "(see vidtok.list_presets())")
        raw = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
        return cls.from_official_dict(raw, source=str(path))

    @classmethod
    def from_official_dict(cls, raw: dict, source: str = "<dict>") -> "VidTokConfig":
        model = raw.get("model", raw)
        if "target" not in model:
            raise ValueError(f"{source}: expected a 'model.target' engine entry (official config layout)")
        engine = _lookup(ENGINE_TARGETS, model["target"], "engine")
        params = model.get("params", {}) or {}
        enc_cfg = params.get("encoder_config") or {}
        dec_cfg = params.get("decoder_config") or {}
        reg_cfg = params.get("regularizer_config") or {}
        family = _lookup(ENCODER_TARGETS, enc_cfg.get("target"), "encoder")
        dec_family = _lookup(DECODER_TARGETS, dec_cfg.get("target"), "decoder")
        if dec_family != family:
            raise ValueError(f"{source}: encoder target {enc_cfg.get('target')!r} and decoder target "
                             f"{dec_cfg.get('target')!r} belong to different families ({family} vs {dec_family})")
        if (engine == "v1_1") != (family == "causal_v1_1"):
            raise ValueError(f"{source}: engine {model['target']!r} does not match encoder family {family!r}")
        reg = _lookup(REGULARIZER_TARGETS, reg_cfg.get("target"), "regularizer")
        enc = dict(enc_cfg.get("params") or {})
        reg_params = dict(reg_cfg.get("params") or {})
        double_z = bool(enc.get("double_z", True))
        if double_z != (reg == "kl"):
            raise ValueError(f"{source}: double_z={double_z} does not fit regularizer {reg!r} (KL needs "
                             "double_z=true, FSQ double_z=false)")
        kw: dict[str, Any] = dict(family=family, regularizer=reg)
        for key in ("z_channels", "ch", "ch_mult", "num_res_blocks", "in_channels", "out_ch",
                    "time_downsample_factor", "spatial_ds", "tempo_ds", "spatial_us", "tempo_us", "norm_type",
                    "init_pad_mode", "dropout", "fix_encoder"):
            if key in enc:
                kw[key] = enc[key]
        if family == "causal_v1_1":
            # The v1.1 decoder's own default is 'nearest'; every released v1.1 config sets 'trilinear' (§3.11).
            kw["interpolation_mode"] = enc.get("interpolation_mode", "nearest")
        if reg == "fsq":
            kw["levels"] = list(reg_params["levels"])
            kw.update({k: reg_params[k] for k in FSQ_PARAM_KEYS if k in reg_params})
        for key in ("use_tiling", "t_chunk_enc"):
            if key in params:
                kw[key] = params[key]
        return cls(**kw)


def build_chunk_start_end(t: int, step: int) -> list[tuple[int, int]]:
    """[(0, 1), (1, 1+step), ...] covering [0, t); e.g. t=33, step=8 -> (0,1),(1,9),(9,17),(17,25),(25,33)."""
    if step < 1:
        raise ValueError(f"chunk step must be >= 1, found {step}; set t_chunk_enc >= time_downsample_factor")
    chunks = [(0, 1)]
    start = 1
    while start < t:
        chunks.append((start, min(t, start + step)))
        start += step
    return chunks
