"""`VidTok`: the engine around encoder, decoder and regularizer (spec ARCHITECTURE.md §8, §6, §9).

Public tensors:
* video `x`: (B, 3, T, H, W) float in [-1, 1] (RGB, `(p/255 - 0.5) / 0.5`), output video same layout, not clamped;
* `z`: raw encoder output (B, 2*z_channels [KL] | z_channels [FSQ], t, h, w), unbounded;
* `latents`: (B, z_channels, t, h, w): KL posterior mean (or a sample), FSQ codes in {k / (L//2)};
* `indices`: (B, t, h, w) int32 FSQ token ids in [0, codebook_size).

Inference never computes training-only terms (the FSQ entropy loss needs an N x codebook matrix); those come only
from `training_forward`. Attribute names (`encoder`, `decoder`) and all module names inside match the official
checkpoints, so `load_official_state_dict` needs no key mapping.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn

from vidtok import checkpoint as ckpt_io
from vidtok import tiling
from vidtok.config import VidTokConfig
from vidtok.modules.causal import CausalDecoder, CausalEncoder
from vidtok.modules.fsq import FSQRegularizer
from vidtok.modules.kl import DiagonalGaussianRegularizer
from vidtok.modules.noncausal import NonCausalDecoder, NonCausalEncoder
from vidtok.presets import is_preset, preset_config
from vidtok.validation import check_indices, check_latents, check_video

log = logging.getLogger(__name__)


@dataclass
class EncodeOutput:
    """Result of `VidTok.encode` (layouts in the module docstring)."""

    z: torch.Tensor
    latents: torch.Tensor
    indices: Optional[torch.Tensor]


class VidTok(nn.Module):
    """VidTok tokenizer: causal v1.0 / v1.1 or non-causal, with an FSQ or KL regularizer."""

    def __init__(self, config: VidTokConfig, preset_name: Optional[str] = None):
        super().__init__()
        self.config = config
        self.preset_name = preset_name
        if config.family == "noncausal":
            self.encoder: nn.Module = NonCausalEncoder(config)
            self.decoder: nn.Module = NonCausalDecoder(config)
        else:
            self.encoder = CausalEncoder(config)
            self.decoder = CausalDecoder(config)
        if config.regularizer == "fsq":
            self.regularizer: nn.Module = FSQRegularizer(
                config.levels, config.entropy_loss_weight, config.entropy_loss_annealing_steps,
                config.entropy_loss_annealing_factor, config.commitment_loss_weight, config.diversity_gamma)
        else:
            self.regularizer = DiagonalGaussianRegularizer()

    # ---- construction ---------------------------------------------------------------------------
    @classmethod
    def from_config(cls, path_or_preset: str | Path | VidTokConfig, **overrides: Any) -> "VidTok":
        """Build from an official-style YAML path, a preset name (`vidtok.list_presets()`) or a `VidTokConfig`.

        `overrides` replace config fields, typically `use_tiling`, `t_chunk_enc`, `use_overlap` (validated).
        """
        preset = None
        if isinstance(path_or_preset, VidTokConfig):
            cfg = path_or_preset
        elif isinstance(path_or_preset, str) and is_preset(path_or_preset):
            preset, cfg = path_or_preset, preset_config(path_or_preset)
        elif Path(path_or_preset).suffix in (".yaml", ".yml") or Path(path_or_preset).is_file():
            cfg = VidTokConfig.from_yaml(path_or_preset)
        else:
            cfg = preset_config(str(path_or_preset))  # not a preset: raises ValueError naming the closest presets
        if overrides:
            cfg = cfg.replace(**overrides)
        return cls(cfg, preset_name=preset)

    @classmethod
    def from_pretrained(cls, path_or_preset: str | Path, ckpt_path: str | Path, allow_unsafe_pickle: bool = False,
                        **overrides: Any) -> "VidTok":
        """`from_config` + `load_official_state_dict`; returned in eval mode."""
        model = cls.from_config(path_or_preset, **overrides)
        model.load_official_state_dict(ckpt_path, allow_unsafe_pickle=allow_unsafe_pickle)
        return model.eval()

    def load_official_state_dict(self, obj: Any, allow_unsafe_pickle: bool = False) -> "VidTok":
        """Load official weights from a `.ckpt`/`.pt`/`.safetensors` path, a Lightning dict or a bare state dict.

        Strict on `encoder.*`/`decoder.*` (missing, unexpected or mis-shaped keys raise ValueError);
        `loss.*`, `model_ema.*`, `regularization.*` are ignored with a log line.
        """
        if isinstance(obj, (str, Path)):
            obj = ckpt_io.load_checkpoint_file(obj, allow_unsafe_pickle=allow_unsafe_pickle)
        found = ckpt_io.extract_inference_state_dict(obj)
        ckpt_io.check_state_dict(self.official_state_dict(), found)
        self.load_state_dict(found, strict=True)
        return self

    def official_state_dict(self) -> dict[str, torch.Tensor]:
        """Weights under the official key names (`encoder.*`, `decoder.*`), in registration order."""
        return {k: v for k, v in self.state_dict().items() if k.startswith(ckpt_io.INFERENCE_PREFIXES)}

    # ---- descriptive properties ---------------------------------------------------------------
    @property
    def is_causal(self) -> bool:
        return self.config.is_causal

    @property
    def is_v1_1(self) -> bool:
        return self.config.family == "causal_v1_1"

    @property
    def time_downsample_factor(self) -> int:
        return self.config.time_downsample_factor

    @property
    def spatial_factor(self) -> int:
        return self.config.spatial_factor

    @property
    def default_num_frames(self) -> int:
        """17 for causal models (1 + 4k), 16 for non-causal (§12, §13)."""
        return self.config.default_num_frames

    @property
    def regularizer_kind(self) -> str:
        return self.config.regularizer

    @property
    def codebook_size(self) -> Optional[int]:
        return self.config.codebook_size

    # Tiling switches live in the config so that `model.config` always describes what runs (§9).
    @property
    def use_tiling(self) -> bool:
        return self.config.use_tiling

    @use_tiling.setter
    def use_tiling(self, value: bool) -> None:
        self.config = self.config.replace(use_tiling=bool(value))

    @property
    def t_chunk_enc(self) -> int:
        return self.config.t_chunk_enc

    @t_chunk_enc.setter
    def t_chunk_enc(self, value: int) -> None:
        self.config = self.config.replace(t_chunk_enc=int(value))

    @property
    def t_chunk_dec(self) -> int:
        """Always derived (the official attribute goes stale if t_chunk_enc changes, §8)."""
        return self.config.t_chunk_enc // self.config.time_downsample_factor

    @property
    def use_overlap(self) -> bool:
        return self.config.use_overlap

    @use_overlap.setter
    def use_overlap(self, value: bool) -> None:
        self.config = self.config.replace(use_overlap=bool(value))

    def latent_shape(self, T: int, H: int, W: int) -> tuple[int, int, int]:
        """Latent (t, h, w) for an input of T x H x W frames (`VidTokConfig.latent_shape`)."""
        return self.config.latent_shape(T, H, W)

    def get_last_layer(self) -> torch.Tensor:
        """Decoder conv_out weight, used by the adaptive GAN weight (§5.1, §11.2)."""
        conv_out = self.decoder.conv_out
        return conv_out.conv.weight if self.is_causal else conv_out.weight

    # ---- inference ------------------------------------------------------------------------------
    def _encode(self, x: torch.Tensor, sample: bool, with_loss: bool, n_steps: int = 0
                ) -> tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor], dict]:
        if self.is_v1_1:
            tiling.reset_state(self.encoder, store_cache=self.use_tiling)
        if self.use_tiling:
            chunks = tiling.tile_encode(self.encoder, x, self.t_chunk_enc)
        else:
            chunks = [self.encoder(x)]
        lat, ids, losses = [], [], []
        for z in chunks:  # tiled: the regularizer sees each chunk alone; KL draws one randn per chunk (§9)
            if self.regularizer_kind == "fsq":
                codes, idx, rlog = self.regularizer(z, compute_aux=with_loss, n_steps=n_steps)
                lat.append(codes)
                ids.append(idx)
                key = "aux_loss"
            else:
                out, rlog = self.regularizer(z, sample=sample, compute_kl=with_loss)
                lat.append(out)
                key = "kl_loss"
            if with_loss:
                losses.append(rlog[key])
        reg_log: dict = {}
        if with_loss:
            reg_log[key] = losses[0] if len(losses) == 1 else torch.stack(losses).mean()
        indices = torch.cat(ids, dim=1) if ids else None
        if indices is not None:
            reg_log["indices"] = indices
        return torch.cat(chunks, dim=2), torch.cat(lat, dim=2), indices, reg_log

    def encode(self, x: torch.Tensor, sample: bool = False, strict: bool = True) -> EncodeOutput:
        """Encode video `x (B, 3, T, H, W)` in [-1, 1].

        `sample=True` draws the KL latent like the official default (`torch.randn` on the CPU generator).
        `strict=False` skips the frame-count/size rules (e.g. to reproduce the v1.0 T=16 quirk of §6).
        """
        check_video(x, self.config, strict=strict)
        z, latents, indices, _ = self._encode(x, sample=sample, with_loss=False)
        return EncodeOutput(z=z, latents=latents, indices=indices)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """latents (B, z_channels, t, h, w) -> video (B, 3, T_dec, H, W), the decoder output before the v1.1 crop."""
        check_latents(latents, self.config)
        weight = self.get_last_layer()
        if latents.dtype != weight.dtype and not torch.is_autocast_enabled(latents.device.type):
            latents = latents.to(weight.dtype)  # e.g. stored fp16/bf16 latents into an fp32 model
        if self.is_v1_1:
            tiling.reset_state(self.decoder, store_cache=self.use_tiling)
        if self.use_tiling:
            return tiling.tile_decode(self.decoder, latents, self.t_chunk_dec, self.time_downsample_factor,
                                      self.use_overlap)
        return self.decoder(latents)

    def indices_to_latents(self, indices: torch.Tensor) -> torch.Tensor:
        """FSQ ids (B, t, h, w) int -> codes (B, z_channels, t, h, w) float32."""
        check_indices(indices, self.config)
        return self.regularizer.indices_to_codes(indices).movedim(-1, 1)

    def decode_indices(self, indices: torch.Tensor) -> torch.Tensor:
        """FSQ token ids (B, t, h, w) -> video (B, 3, T_dec, H, W); bit-identical to decoding the codes (§7.1)."""
        return self.decode(self.indices_to_latents(indices))

    def _crop(self, dec: torch.Tensor, T: int) -> torch.Tensor:
        # v1.1 engine: keep the last T frames when lengths differ (§8, quirk 3).
        if self.is_v1_1 and dec.shape[2] != T:
            return dec[:, :, dec.shape[2] - T:]
        return dec

    def reconstruct(self, x: torch.Tensor, strict: bool = True) -> torch.Tensor:
        """The engine forward with the deterministic regularizer: video (B, 3, T_out, H, W), not clamped.

        T_out = T for v1.1 and (with `strict`) for every model; v1.0 with T=16 gives 13 frames (§6 quirk).
        """
        check_video(x, self.config, strict=strict)
        _, latents, _, _ = self._encode(x, sample=False, with_loss=False)
        return self._crop(self.decode(latents), x.shape[2])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.reconstruct(x)

    # ---- training -------------------------------------------------------------------------------
    def training_forward(self, x: torch.Tensor, global_step: int, strict: bool = True
                         ) -> tuple[torch.Tensor, torch.Tensor, dict]:
        """Engine forward with the regularizer in training mode -> (latents, recon, reg_log).

        KL: latents are a sample, `reg_log['kl_loss']`. FSQ: straight-through codes, `reg_log['aux_loss']`
        (annealed with n_steps = global_step // 2, §11.6) and `reg_log['indices']`. If every encoder parameter
        is frozen (stage 2, `fix_encoder`), the encoder runs under no_grad like the official engine.
        """
        check_video(x, self.config, strict=strict)
        frozen = self.config.fix_encoder or not any(p.requires_grad for p in self.encoder.parameters())
        with torch.set_grad_enabled(torch.is_grad_enabled() and not frozen):
            _, latents, _, reg_log = self._encode(x, sample=True, with_loss=True, n_steps=global_step // 2)
        recon = self._crop(self.decode(latents), x.shape[2])
        return latents, recon, reg_log
