"""Windows from a stream of decoded frames: the pieces of :func:`pipeline.decode.iter_windows` between the decoders
and the window stream.

``Frames`` hands out the distinct sampled frames of some runs in index order from the chosen backend (and takes
over with PyAV where decord fails); ``assemble`` cuts windows out of them exactly as ``windows.cut_windows`` cuts them
from all samples, holding only the samples from the next window's start on; ``frame_runs`` groups the frames of
the chosen windows into seekable runs; ``ActiveClock`` measures the decode time of a generator without the time it
spends suspended at its yields (for ``decode.max_wall_s``). Pure: no Ray, no torch.
"""

from __future__ import annotations

import logging
import time
from typing import Iterable, Iterator

import numpy as np

from . import packets
from . import status as st
from .backends import Unverified, iter_decord, iter_pyav
from .config import DecodeConfig
from .probe import ProbeInfo
from .source import Readable, decord_input
from .status import DecodeError
from .windows import Window, WindowPlan

log = logging.getLogger(__name__)


class Frames:
    """The distinct sampled frames of ``runs`` in increasing index order, from the chosen backend; decord hands over
    to PyAV (``backend`` becomes ``pyav``, a note says why) wherever it fails, from the first frame it did not give."""

    def __init__(self, readable: Readable, info: ProbeInfo, runs: list[np.ndarray], cfg: DecodeConfig,
                 use: str, notes: list[str], seek: bool):
        self.readable, self.info, self.runs, self.cfg, self.notes, self.seek = readable, info, runs, cfg, notes, seek
        self.backend = use
        if cfg.device == "cuda":
            from .gpu import unavailable

            why = unavailable()
            if why:
                notes.append(f"decode.device=cuda: {why}: decoded on the CPU")
                log.warning("%s", notes[-1])
            else:
                self.backend = "torchcodec-cuda"

    def __iter__(self) -> Iterator[tuple[int, np.ndarray]]:
        size, threads, last = self.cfg.size, self.cfg.threads, -1
        runs = self.runs
        if self.backend == "torchcodec-cuda":
            from .gpu import iter_torchcodec

            yield from iter_torchcodec(self.readable, self.info, runs, size)
            return
        if self.backend == "decord":
            try:
                with decord_input(self.readable, self.cfg.spill_bytes) as r:
                    for i, f in iter_decord(r, self.info, np.concatenate(runs), size, threads):
                        last = i
                        yield i, f
                return
            except Unverified as e:
                self.notes.append(f"{e}: used pyav" + (f" from frame {last + 1}" if last >= 0 else ""))
                log.info("%s", self.notes[-1])
                self.backend = "pyav" if last < 0 else "decord+pyav"
                runs = [r[r > last] for r in runs]
        if self.seek and packets.usable(self.info):  # windows of an MP4/MOV: only their packets are read
            yield from packets.iter_packets(self.readable, self.info, runs, size, threads, self.cfg.read_block_bytes)
            return
        yield from iter_pyav(self.readable, self.info, runs, size, threads, seek=self.seek)


def assemble(pairs: Iterable[tuple[int, np.ndarray]], idx: np.ndarray, times: np.ndarray, plan: WindowPlan,
              chosen: list[int]) -> Iterator[Window | int]:
    """Cut the ``chosen`` windows (sorted) of ``plan`` from distinct frames arriving in index order, exactly as
    :func:`cut_windows` cuts them from all samples, holding only the samples from the next window's start on.
    Yields each window as soon as its last sample is in, and an ``int`` (frames so far) after every frame."""
    buf: dict[int, np.ndarray] = {}  # sample position -> frame (repeated samples share the array)
    wi, n = 0, 0
    for i, frame in pairs:
        n += 1
        lo, hi = int(np.searchsorted(idx, i, "left")), int(np.searchsorted(idx, i, "right"))
        start = plan.spans[chosen[wi]][0] if wi < len(chosen) else hi
        for p in range(max(lo, start), hi):
            buf[p] = frame
        while wi < len(chosen) and plan.spans[chosen[wi]][1] <= hi:
            w = chosen[wi]
            a, b, pad = plan.spans[w]
            sel = np.arange(a, b)
            if pad:
                sel = np.concatenate([sel, np.full(pad, b - 1)])
            yield Window(w, np.stack([buf[int(p)] for p in sel]), times[sel], idx[sel], pad)
            wi += 1
            keep = plan.spans[chosen[wi]][0] if wi < len(chosen) else hi
            for p in [p for p in buf if p < keep]:
                del buf[p]
        yield n
    if wi < len(chosen):
        raise DecodeError(st.CORRUPT, f"the decoder stopped before window {chosen[wi]}")


def frame_runs(idx: np.ndarray, plan: WindowPlan, chosen: list[int], merge_all: bool) -> list[np.ndarray]:
    """The distinct frames of the ``chosen`` windows as increasing, disjoint runs: one run for every window
    (one pass over the file), else one per group of windows whose frames overlap (each run is one seek)."""
    runs: list[np.ndarray] = []
    for c in chosen:
        a, b, _ = plan.spans[c]
        frames = np.unique(idx[a:b])
        if runs and (merge_all or frames[0] <= runs[-1][-1]):
            runs[-1] = np.union1d(runs[-1], frames)
        else:
            runs.append(frames)
    return runs


class ActiveClock:
    """Seconds a generator spent working, not suspended at its yields (the consumer's time is not ours)."""

    def __init__(self):
        self.active, self._since = 0.0, time.monotonic()

    def pause(self) -> None:
        self.active += time.monotonic() - self._since

    def resume(self) -> None:
        self._since = time.monotonic()

    def now(self) -> float:
        return self.active + time.monotonic() - self._since
