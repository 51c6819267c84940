"""Spatial policy of the official VidTok data pipeline (ARCHITECTURE.md §13.1 step 6), on uint8 frames.

``size=int s``: the shorter side goes to ``s`` (the longer to ``int(s * long / short)``, torchvision's rounding),
bilinear with antialias, then a center crop to ``s × s``. ``size=(h, w)``: the smallest such resize that covers
``h × w`` (identical to the official ``Resize(h)`` + ``CenterCrop((h, w))`` whenever that crop fits), then a center
crop. ``size=None``: frames pass through untouched.

The resize is Pillow's antialiased bilinear — the algorithm torchvision's ``antialias=True`` reproduces — run on
uint8, one frame at a time, and only over the crop: Pillow's ``box`` resamples just the source region that lands in
the crop (its filter still reads the pixels around the box), which equals resizing the whole frame and then
cropping. It is within 1 grey level of the official float path (tests check). Pillow instead of torch keeps the
isolated decode process small: importing torch + torchvision costs ~900 MB of resident memory per process.
"""

from __future__ import annotations

import math
from typing import Sequence, Union

import numpy as np

Size = Union[None, int, Sequence[int]]


def normalize_size(size: Size) -> tuple[int, int] | int | None:
    """Validate ``size``: None, a positive int, or a positive ``(h, w)`` pair (lists from YAML become tuples)."""
    if size is None:
        return None
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        if size <= 0:
            raise ValueError(f"size must be > 0, got {size}")
        return int(size)
    try:
        h, w = (int(v) for v in size)
    except (TypeError, ValueError):
        raise ValueError(f"size must be None, an int or an (h, w) pair, got {size!r}") from None
    if h <= 0 or w <= 0:
        raise ValueError(f"size must be positive, got {size!r}")
    return (h, w)


def nearest_bucket(height: int, width: int, buckets) -> tuple[int, int]:
    """The `(h, w)` bucket whose aspect ratio is nearest the frame's `height x width` (in log ratio, so 2:1 and 1:2
    are equally far from 1:1); ties go to the first bucket listed."""
    target = math.log(width / height)
    return min((tuple(b) for b in buckets), key=lambda b: abs(math.log(b[1] / b[0]) - target))


def resized_shape(height: int, width: int, size: Size) -> tuple[int, int]:
    """(h, w) after the resize step (before cropping) for a ``height × width`` frame."""
    size = normalize_size(size)
    if size is None:
        return height, width
    if isinstance(size, int):
        short, long = min(height, width), max(height, width)
        new_long = int(size * long / short)
        return (size, new_long) if height <= width else (new_long, size)
    h, w = size
    scale = max(h / height, w / width)
    return max(h, int(round(height * scale))), max(w, int(round(width * scale)))


def output_shape(height: int, width: int, size: Size) -> tuple[int, int]:
    """(h, w) of the frames :func:`resize_crop` returns."""
    size = normalize_size(size)
    if size is None:
        return height, width
    return (size, size) if isinstance(size, int) else size


def crop_dropped(height: int, width: int, out: tuple[int, int]) -> float:
    """Share of a ``height × width`` frame's pixels that resizing to cover ``out`` (h, w) and centre-cropping drops
    (0.0 when the aspect ratios match; a 16:9 frame into a square loses 43.75 %)."""
    if not height or not width:
        return 0.0
    rh, rw = resized_shape(height, width, tuple(out))
    return max(0.0, 1.0 - (out[0] * out[1]) / float(rh * rw))


def _crop_offsets(resized: tuple[int, int], out: tuple[int, int]) -> tuple[int, int]:
    """(top, left) of the center crop, as torchvision's center_crop rounds them."""
    return int(round((resized[0] - out[0]) / 2.0)), int(round((resized[1] - out[1]) / 2.0))


def resize_crop_frame(frame: np.ndarray, size: Size) -> np.ndarray:
    """Apply the policy to one (H, W, 3) uint8 RGB frame; returns (h, w, 3) uint8."""
    size = normalize_size(size)
    if size is None:
        return frame
    from PIL import Image

    height, width = frame.shape[:2]
    if resized_shape(height, width, size) == (height, width):  # a crop only
        oh, ow = output_shape(height, width, size)
        top, left = _crop_offsets((height, width), (oh, ow))
        return np.ascontiguousarray(frame[top : top + oh, left : left + ow])
    return resize_crop_image(Image.fromarray(np.ascontiguousarray(frame)), size)


def rgb_image(buffer, width: int, height: int, stride: int):
    """A Pillow RGB image of packed RGB lines (``stride`` bytes apart, e.g. a decoder frame's padded plane): Pillow
    unpacks the lines into its own layout, the one copy on the way in (no numpy array in between)."""
    from PIL import Image

    return Image.frombuffer("RGB", (width, height), buffer, "raw", "RGB", stride, 1)


def resize_crop_image(img, size: Size) -> np.ndarray:
    """Apply the policy (``size`` not None) to a Pillow RGB image; returns (h, w, 3) uint8, packed straight from
    Pillow's pixels (one copy out; read-only)."""
    from PIL import Image

    width, height = img.size
    rh, rw = resized_shape(height, width, size)
    oh, ow = output_shape(height, width, size)
    top, left = _crop_offsets((rh, rw), (oh, ow))
    if (rh, rw) == (height, width):
        out = img.crop((left, top, left + ow, top + oh))
    else:
        sy, sx = height / rh, width / rw
        box = (left * sx, top * sy, (left + ow) * sx, (top + oh) * sy)  # the crop, in source pixels
        out = img.resize((ow, oh), Image.Resampling.BILINEAR, box=box)
    return np.frombuffer(out.tobytes("raw", "RGB"), np.uint8).reshape(oh, ow, 3)


def resize_crop(frames: np.ndarray, size: Size) -> np.ndarray:
    """Apply the policy to ``frames`` (N, H, W, 3) uint8; returns (N, h, w, 3) uint8 (contiguous)."""
    size = normalize_size(size)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be (N, H, W, 3) uint8, got {frames.shape} {frames.dtype}")
    if size is None or len(frames) == 0:
        return np.ascontiguousarray(frames)
    return np.stack([resize_crop_frame(f, size) for f in frames])
