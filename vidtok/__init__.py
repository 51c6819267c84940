"""vidtok: a checkpoint-exact PyTorch re-implementation of Microsoft VidTok (causal v1.0 / v1.1, non-causal; FSQ / KL).

Spec: the vidtok-spec folder (not in the repository; docs/spec.md says what it holds and where the official code
is). Pure PyTorch: no Ray, no storage, no video decoding.

    from vidtok import VidTok
    model = VidTok.from_pretrained("vidtok_fsq_causal_488_32768", "vidtok_fsq_causal_488_32768.ckpt")
    enc = model.encode(x)             # x: (B, 3, T, H, W) float in [-1, 1]
    video = model.decode_indices(enc.indices)
"""

from vidtok.accel import compile_encoder, set_cudnn_benchmark
from vidtok.config import VidTokConfig
from vidtok.model import EncodeOutput, VidTok
from vidtok.presets import list_presets, preset_config

__all__ = ["VidTok", "VidTokConfig", "EncodeOutput", "list_presets", "preset_config", "compile_encoder",
           "set_cudnn_benchmark"]
