"""GPU decode (``decode.device=cuda``): torchcodec on NVDEC, for the frames the timestamp rule names.

The only module of ``pipeline/decode`` that may import torch, and only inside its functions: the CPU path (the
default) never loads it, so a decode child stays ~900 MB smaller (``tests/test_layering.py`` allows exactly this
module a function-level import). On a GPU node the child pays for torch once, when the first CUDA decode runs.

Fallback, chosen over a config error: ``decode.device=cuda`` on a node without CUDA or without torchcodec (a mixed
cluster, a laptop, CI) logs one warning per file naming the reason, leaves the same note in the result, and decodes on
the CPU path. A job never fails for a decode device it cannot get; its output is the same frames (both paths follow
the one rule), only slower.

Frames: torchcodec's ``get_frames_at`` with the probe's frame indices (presentation order, ``seek_mode="exact"``),
copied to the host as (h, w, 3) uint8 and put through the same spatial policy as the CPU paths. Only files whose
container timestamps the probe trusts come here (MP4/MOV/MKV/WebM): torchcodec 0.17's CPU decoder, run over the
decode matrix, returned the rule's frames on all 26 such cases (rotations, VFR, AV1, MPEG-4 with B-frames
included) and was 2 frames off on AVI with B-frames and on MPEG-PS, which stay on the PyAV path. NVDEC itself was
not measured here (no GPU was lent to this project): a matrix run on a GPU node is still to come.
"""

from __future__ import annotations

import importlib.util
import logging
from typing import Iterator, Sequence

import numpy as np

from .probe import ProbeInfo
from .source import Readable, RemoteObject
from .spatial import Size, resize_crop_frame

log = logging.getLogger(__name__)

_BATCH = 16  # frames per get_frames_at call: bounds GPU and host memory at native resolution


def unavailable() -> str | None:
    """Why CUDA decoding cannot run in this process (None when it can)."""
    if importlib.util.find_spec("torchcodec") is None:
        return "torchcodec is not installed (pip install 'vidtok-pipeline[gpu]')"
    import torch  # function level on purpose: see the module docstring

    if not torch.cuda.is_available():
        return "CUDA is not available to torch on this node"
    return None


def iter_torchcodec(readable: Readable, info: ProbeInfo, runs: Sequence[np.ndarray], size: Size,
                    ) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(index, frame (h, w, 3) uint8)`` for the frames of ``runs`` (sorted distinct indices) in order."""
    from torchcodec.decoders import VideoDecoder

    src = readable.open() if isinstance(readable, RemoteObject) else readable  # torchcodec reads file objects too
    dec = VideoDecoder(src, device="cuda", dimension_order="NHWC", seek_mode="exact")
    for run in runs:
        run = [int(i) for i in run]
        for k in range(0, len(run), _BATCH):
            part = run[k : k + _BATCH]
            batch = dec.get_frames_at(indices=part).data.cpu().numpy()
            for i, f in zip(part, batch):  # torchcodec turns frames for display itself (all four rotations)
                yield i, resize_crop_frame(f, size)
