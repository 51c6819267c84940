"""What a training rank records about itself: the data-wait timer, the digest of the batches it trained on, and
rank 0's TensorBoard events (used by `pipeline/train/loop.py: Trainer`).

Data wait: time blocked on the next batch vs. time in the step, reported as `data_wait_frac` (steady state: after
the first two steps).
"""

from __future__ import annotations

import hashlib
import math
import os
import tempfile

import numpy as np
from tensorboardX import SummaryWriter

from pipeline.storage import is_remote, join, write_bytes


def scalars(metrics: dict) -> dict:
    """The numbers Ray Train and TensorBoard take: plain floats, NaN dropped."""
    return {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not math.isnan(float(v))}


class BatchesDigest:
    """A running SHA-256 over every batch a rank trained on (its uint8 clips, in order), carried across restarts in
    the checkpoints: two runs with equal digests at a step trained on the same batches (an audit, and the tests')."""

    def __init__(self, hex: str = ""):
        self.hex = hex

    def add(self, clips: np.ndarray) -> None:
        self.hex = hashlib.sha256(self.hex.encode() + np.ascontiguousarray(clips).tobytes()).hexdigest()


class StepTimer:
    """Time blocked on data vs. time in the step: totals in steady state (after step 2) and per reporting window."""

    def __init__(self):
        self.wait_s = self.step_s = 0.0
        self.window_wait = self.window_step = 0.0
        self.window_n = 0

    def add(self, step: int, wait: float, compute: float) -> None:
        if step > 2:  # steady state: the first batches include pipeline start-up
            self.wait_s, self.step_s = self.wait_s + wait, self.step_s + compute
        self.window_wait, self.window_step, self.window_n = self.window_wait + wait, self.window_step + compute, \
            self.window_n + 1

    def metrics(self, per_worker_batch: int) -> dict:
        """The window's figures (then reset) and the steady-state data-wait fraction."""
        out = dict(data_wait_s=self.window_wait, step_s=self.window_step,
                   data_wait_frac=(self.wait_s / (self.wait_s + self.step_s)) if self.step_s else float("nan"),
                   window_data_wait_frac=self.window_wait / max(self.window_wait + self.window_step, 1e-9),
                   clips_per_s_per_worker=self.window_n * per_worker_batch / max(self.window_step + self.window_wait,
                                                                                  1e-9))
        self.window_wait = self.window_step = 0.0
        self.window_n = 0
        return out


class TensorBoard:
    """Rank-0 TensorBoard events (tensorboardX): written locally, mirrored to `<run>/tensorboard` on object storage."""

    def __init__(self, run_url: str, storage_options: dict | None):
        self.remote = is_remote(run_url)
        self.run_url, self.storage_options = run_url, storage_options
        self.local = tempfile.mkdtemp(prefix="vt-tb-") if self.remote else join(run_url, "tensorboard")
        self.writer = SummaryWriter(self.local)

    def add(self, metrics: dict, step: int) -> None:
        for k, v in scalars(metrics).items():
            self.writer.add_scalar(k if "/" in k else f"train/{k}", v, step)

    def flush(self) -> None:
        self.writer.flush()
        if self.remote:
            for name in os.listdir(self.local):
                with open(os.path.join(self.local, name), "rb") as f:
                    write_bytes(join(self.run_url, "tensorboard", name), f.read(), self.storage_options)

    def close(self) -> None:
        self.flush()
        self.writer.close()
