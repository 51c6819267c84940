"""How one cached frame is stored: `zstd` (raw uint8 RGB, Zstandard-compressed: lossless) or `jpeg` (Pillow, q95).

The format was chosen by measurement (`benchmarks/frames_cache.py`, figures in docs/frames_cache.md): reading a
17-frame 256² window from zstd raw frames costs 2.6× (grainy footage) to 10× (clean) less CPU than from JPEG and 8×
less than from a short-GOP H.264 re-encode, and training reads windows many times while the cache is written once,
so the default is the lossless `zstd`, bit-identical to the decoded frames (tests/frames/test_codec.py). `jpeg`
(q95, up to 7.5× fewer bytes) is the option where bytes cost more than CPU; its PSNR against the decoded frames is
stated there and tested.

One blob per frame, so a window reads exactly its frames. Zstandard comes from pyarrow (`pyarrow.compress`), a
dependency already: no new package. Pure: no Ray.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

FORMATS = ("zstd", "jpeg")
ZSTD_LEVEL = 3  # zstd's default: higher levels cost write CPU for a few % of bytes (benchmark)
JPEG_QUALITY = 95


def check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise ValueError(f"frames.format={fmt!r}: choose one of {FORMATS}")
    return fmt


@dataclass
class FramesConfig:
    """What one cache holds: every `decode.fps` sample of each video, at `size`² (the decode stage's spatial policy)."""

    size: int = 256  # square side of the cached frames; stage 1 (128²) downscales them (docs/frames_cache.md)
    format: str = "zstd"  # zstd (lossless raw, fastest to read) | jpeg (q95, ~3x smaller; docs/frames_cache.md)
    frames_per_row: int = 32  # frames per Parquet row (one row group): a window reads one or two rows
    shard_mb: int = 256  # a shard is committed when its frames pass this size (memory per task: about this)

    def __post_init__(self):
        check_format(self.format)
        if not (isinstance(self.size, int) and self.size > 0):
            raise ValueError(f"frames.size={self.size!r}: one positive int (the square side, e.g. 256)")
        if self.frames_per_row < 1 or self.shard_mb < 1:
            raise ValueError(f"frames.frames_per_row={self.frames_per_row} and frames.shard_mb={self.shard_mb} "
                             "must be >= 1")


def encode_frame(frame: np.ndarray, fmt: str) -> bytes:
    """One `(H, W, 3)` uint8 RGB frame -> its stored bytes."""
    if frame.ndim != 3 or frame.shape[-1] != 3 or frame.dtype != np.uint8:
        raise ValueError(f"frame must be (H, W, 3) uint8, got {frame.shape} {frame.dtype}")
    if fmt == "zstd":
        return _zstd(np.ascontiguousarray(frame).tobytes())
    if fmt == "jpeg":
        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(frame).save(buf, format="JPEG", quality=JPEG_QUALITY)
        return buf.getvalue()
    raise ValueError(f"unknown frames format {fmt!r}; one of {FORMATS}")


def _zstd(raw: bytes) -> bytes:
    import pyarrow as pa

    return pa.Codec("zstd", compression_level=ZSTD_LEVEL).compress(raw, asbytes=True)


def decode_frames(blobs, fmt: str, height: int, width: int) -> np.ndarray:
    """Stored blobs (bytes, or pyarrow binary scalars' buffers) -> `(N, height, width, 3)` uint8."""
    out = np.empty((len(blobs), height, width, 3), np.uint8)
    if fmt == "zstd":
        import pyarrow as pa

        codec = pa.Codec("zstd")
        n = height * width * 3
        for i, b in enumerate(blobs):
            out[i] = np.frombuffer(codec.decompress(b, decompressed_size=n), np.uint8).reshape(height, width, 3)
        return out
    if fmt == "jpeg":
        from PIL import Image

        for i, b in enumerate(blobs):
            out[i] = np.asarray(Image.open(io.BytesIO(b)).convert("RGB"))
        return out
    raise ValueError(f"unknown frames format {fmt!r}; one of {FORMATS}")


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two uint8 arrays of one shape (inf when identical)."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(255.0 ** 2 / mse)
