"""Opt-in accelerators for fixed-shape inference: `torch.compile` of the encoder and cuDNN autotuning.

Both are off by default. A tokenize job feeds windows of one shape (e.g. (B, 3, 17, 256, 256)), which is exactly
the case where compiling once and autotuning once pay off; other callers keep plain eager PyTorch.

    model = VidTok.from_config("vidtok_fsq_causal_488_32768").eval().cuda()
    vidtok.compile_encoder(model, mode="max-autotune-no-cudagraphs")
    vidtok.set_cudnn_benchmark(True)

The compiled encoder computes the same function: outputs match eager within float tolerance (inductor may fuse and
reorder reductions), FSQ ids are expected to match away from rounding boundaries (tested on the CPU).
"""

from __future__ import annotations

import logging
from typing import Optional

import torch

log = logging.getLogger(__name__)

COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def compile_encoder(model: "torch.nn.Module", mode: Optional[str] = "default", *, dynamic: bool = False,
                    fullgraph: bool = False, backend: str = "inductor") -> "torch.nn.Module":
    """Compile `model.encoder` in place with `torch.compile` (nn.Module.compile) and return `model`.

    `mode`: one of `COMPILE_MODES` (None = "default"). `dynamic=False` specialises on the window shape (a new shape
    recompiles, e.g. the 1-frame first chunk of v1.1 tiling); `fullgraph=True` makes graph breaks an error;
    `backend` is any `torch.compile` backend ("inductor"; "aot_eager" to debug without a compiler). The first
    encode after this call compiles (seconds to minutes); `model.encode`, `reconstruct` and `training_forward`
    all go through the compiled encoder. Compiling again replaces the previous compiled encoder.
    """
    mode = mode or "default"
    if mode not in COMPILE_MODES:
        raise ValueError(f"compile mode {mode!r} is not one of {COMPILE_MODES}; use None or 'default' for the "
                         "torch.compile default")
    # "default" is torch.compile's mode=None; the other names are passed through.
    model.encoder.compile(mode=None if mode == "default" else mode, dynamic=dynamic, fullgraph=fullgraph,
                          backend=backend)
    log.info("encoder compiled: mode=%s dynamic=%s fullgraph=%s backend=%s", mode, dynamic, fullgraph, backend)
    return model


def set_cudnn_benchmark(enabled: bool = True) -> bool:
    """Set `torch.backends.cudnn.benchmark` and return the previous value (to restore it).

    With a fixed window shape cuDNN times its conv algorithms on the first call of each conv shape and reuses the
    fastest; with varying shapes every new shape pays that search again, so leave it off there. No effect on CPU.
    """
    previous = bool(torch.backends.cudnn.benchmark)
    torch.backends.cudnn.benchmark = bool(enabled)
    return previous
