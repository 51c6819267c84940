"""Stored frame formats: zstd raw is bit-identical, JPEG q95 keeps the PSNR docs/frames_cache.md states."""

from __future__ import annotations

import numpy as np

from pipeline.decode import sample_frames
from pipeline.frames.codec import decode_frames, encode_frame, psnr


def test_codec_zstd_bit_identical(videos):
    """Decoded frames round-trip through zstd unchanged."""
    frames = sample_frames(videos[1], fps=3.0, size=64).frames
    back = decode_frames([encode_frame(f, "zstd") for f in frames], "zstd", 64, 64)
    assert back.dtype == np.uint8 and np.array_equal(back, frames), \
        f"max diff {np.abs(back.astype(int) - frames).max()}"


def test_codec_jpeg_psnr_at_least_stated(videos):
    """JPEG q95 of decoded 256² frames is at least 38 dB PSNR (docs/frames_cache.md states the measured figure)."""
    frames = sample_frames(videos[0], fps=3.0, size=256).frames
    back = decode_frames([encode_frame(f, "jpeg") for f in frames], "jpeg", 256, 256)
    value = psnr(back, frames)
    assert 38.0 <= value < float("inf"), f"PSNR {value:.2f} dB"
