"""Temporal tiling / streaming inference of the v1.1 causal engine (spec ARCHITECTURE.md §9).

Only time is tiled. Chunks are `[0, 1]` followed by `[s, min(t, s + step)]` for s = 1, 1+step, ...; the encoder
steps by `t_chunk_enc` frames, the decoder by `t_chunk_dec = t_chunk_enc // tdf` latent frames. State carried
between chunks lives on the v1.1 modules (`causal_ops.StreamingState`).

* Encoding with chunk lengths that are multiples of tdf equals untiled encoding up to float rounding.
* Decoding is **not** equal to untiled decoding for tdf >= 4 (quirk 5): with `use_overlap` every chunk decodes one
  extra latent frame of look-ahead and drops its last tdf outputs, and the causal convs keep caches without the
  look-ahead frames via the hard-coded `cache_offset` table below. Those offsets persist on the modules after the
  call, exactly like the official engine (§9 step 1).
"""

from __future__ import annotations

import torch
from torch import nn

from vidtok.config import build_chunk_start_end  # noqa: F401  (pure arithmetic, torch-free: lives with the config)
from vidtok.modules.causal_ops import CausalConv1d, CausalConv3d, StreamingState

# §9 tile_decode step 1: (submodule path inside the decoder, cache_offset), applied in order after "all -> 1".
CACHE_OFFSET_TABLE: dict[int, list[tuple[str, int]]] = {
    2: [("up_temporal.2.upsample", 2), ("up_temporal.1", 2), ("up_temporal.0", 2), ("conv_out", 2)],
    4: [("up_temporal.2.upsample", 2), ("up_temporal.1", 2),
        ("up_temporal.1.upsample", 4), ("up_temporal.0", 4), ("conv_out", 4)],
    8: [("up_temporal.3.upsample", 2), ("up_temporal.2", 2),
        ("up_temporal.2.upsample", 4), ("up_temporal.1", 4),
        ("up_temporal.1.upsample", 8), ("up_temporal.0", 8), ("conv_out", 8)],
}


def streaming_modules(module: nn.Module) -> list[StreamingState]:
    return [m for m in module.modules() if isinstance(m, StreamingState)]


def reset_state(module: nn.Module, store_cache: bool) -> None:
    """Clear caches and set is_first_chunk=True (what the v1.1 engine does at the start of encode/decode, §8)."""
    for m in streaming_modules(module):
        m.causal_cache = None
        m.is_first_chunk = True
        m.store_cache = store_cache


def set_first_chunk(module: nn.Module, flag: bool) -> None:
    for m in streaming_modules(module):
        m.is_first_chunk = flag


def set_cache_offsets(decoder: nn.Module, tdf: int) -> None:
    """Apply the hard-coded cache_offset table of §9 to every CausalConv1d/3d of the decoder."""
    if tdf not in CACHE_OFFSET_TABLE:
        raise ValueError(f"use_overlap tiled decoding has no cache_offset table for time_downsample_factor={tdf}; "
                         f"supported: {sorted(CACHE_OFFSET_TABLE)} (spec §9)")
    _set_offset(decoder, 1)
    for path, offset in CACHE_OFFSET_TABLE[tdf]:
        try:
            sub = decoder.get_submodule(path)
        except AttributeError as err:
            raise ValueError(f"cache_offset table entry {path!r} (tdf={tdf}) is missing in this decoder; tiled "
                             "decoding with use_overlap only supports the released layouts") from err
        _set_offset(sub, offset)


def _set_offset(module: nn.Module, offset: int) -> None:
    for m in module.modules():
        if isinstance(m, (CausalConv1d, CausalConv3d)):
            m.cache_offset = offset


def tile_encode(encoder: nn.Module, x: torch.Tensor, t_chunk_enc: int) -> list[torch.Tensor]:
    """Encode `x (B, 3, T, H, W)` chunk by chunk; returns the per-chunk raw encoder outputs (B, C, t_i, h, w).

    The caller resets the encoder state first. A ragged last chunk is front-padded with copies of its own first
    frame by the encoder (§9), so the total latent count can exceed the untiled ceil(T / tdf).
    """
    outs = []
    for idx, (s, e) in enumerate(build_chunk_start_end(x.shape[2], t_chunk_enc)):
        set_first_chunk(encoder, idx == 0)
        outs.append(encoder(x[:, :, s:e]))
    return outs


def tile_decode(decoder: nn.Module, z: torch.Tensor, t_chunk_dec: int, tdf: int, use_overlap: bool) -> torch.Tensor:
    """Decode latents `z (B, C, t, h, w)` chunk by chunk into video `(B, 3, T_out, H, W)` (§9 tile_decode)."""
    if use_overlap:
        set_cache_offsets(decoder, tdf)
    t = z.shape[2]
    outs = []
    for idx, (s, e) in enumerate(build_chunk_start_end(t, t_chunk_dec)):
        set_first_chunk(decoder, idx == 0)
        if use_overlap and e + 1 <= t:
            # One latent frame of look-ahead; its tdf output frames are dropped.
            outs.append(decoder(z[:, :, s:e + 1])[:, :, :-tdf])
        else:
            outs.append(decoder(z[:, :, s:e]))
    return torch.cat(outs, dim=2)
