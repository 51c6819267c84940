"""Preview files of clips and their reconstructions: one mp4 writer and one PNG grid writer (reconstruct, validation).

Inputs are `(T, H, W, 3)` uint8 frames (torch tensors are converted by the callers with `vidtok.video`); outputs are
bytes, so the caller publishes them with `pipeline.storage.write_bytes` (atomic, local or object storage).
"""

from __future__ import annotations

import io
from fractions import Fraction

import numpy as np


def encode_mp4(frames: np.ndarray, fps: float = 3.0) -> bytes:
    """H.264 mp4 bytes of `(T, H, W, 3)` uint8 frames; odd sizes are padded by one edge pixel (yuv420p needs even)."""
    import av

    t, h, w, _ = frames.shape
    ph, pw = h % 2, w % 2
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as out:
        st = out.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        st.width, st.height, st.pix_fmt = w + pw, h + ph, "yuv420p"
        for f in frames:
            if ph or pw:
                f = np.pad(f, ((0, ph), (0, pw), (0, 0)), mode="edge")
            for pkt in st.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")):
                out.mux(pkt)
        for pkt in st.encode(None):
            out.mux(pkt)
    return buf.getvalue()


def side_by_side_mp4(top: np.ndarray, bottom: np.ndarray, fps: float = 3.0) -> bytes:
    """An mp4 of two clips next to each other (input | reconstruction), over the frames both have."""
    n = min(len(top), len(bottom))
    return encode_mp4(np.concatenate([top[:n], bottom[:n]], axis=2), fps)


def grid_png(top: np.ndarray, bottom: np.ndarray) -> bytes:
    """A PNG with two rows: the frames of `top` (input) over those of `bottom` (reconstruction)."""
    from PIL import Image

    n = min(len(top), len(bottom))
    grid = np.concatenate([np.concatenate(list(top[:n]), axis=1), np.concatenate(list(bottom[:n]), axis=1)], axis=0)
    buf = io.BytesIO()
    Image.fromarray(grid).save(buf, format="PNG")
    return buf.getvalue()
