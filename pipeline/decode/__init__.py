"""Decode any real-world video into exactly-`fps` frames and fixed-length windows. Pure: imports neither Ray nor torch.

The public names (contracts other tools call): `sample_frames` (one file -> frames at `fps` by presentation
timestamps), `iter_windows` (the same, isolated and time-limited, as a stream of windows that leave the decode child
as they are cut; memory flat in the video's length), `decode_windows` (that stream collected; never raises for bad
input), `DecodeConfig` (the `decode.*` keys of every job), `DecodeResult`, `DecodeError`. Modules:

    config     DecodeConfig                      source    a path / range-read remote object / memory
    gpu        torchcodec on NVDEC (device=cuda)  assemble  windows cut from a stream of frames
    probe      container facts, backend trust    backends  decord and PyAV paths
    resample   the timestamp rule                spatial   resize + centre crop
    windows    window plans and tails            isolate   child process with a time limit
    status     reason classes                    synth     generated test media, the sample corpus
    previews   mp4 / PNG previews of clips

The decoders (av, decord, Pillow) are imported inside the functions that use them: the process that hands a file to
the isolated decode child (a Ray decode task) never loads them, only the child does (`sample._warmup`).
"""

from .config import DecodeConfig
from .sample import (
    DecodeResult, SampledFrames, WindowStream, close_runners, decode_windows, decode_windows_inprocess, iter_windows,
    sample_frames,
)
from .status import DecodeError
from .windows import Window

__all__ = ["DecodeConfig", "DecodeError", "DecodeResult", "SampledFrames", "Window", "WindowStream", "close_runners",
           "decode_windows", "decode_windows_inprocess", "iter_windows", "sample_frames"]
