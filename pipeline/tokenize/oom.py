"""A GPU that runs out of memory shrinks its batch, never drops it: the tokenizer's batch-size governor.

`AdaptiveBatches.run(n, encode)` encodes rows `[0, n)` in chunks of at most `limit` rows. When a chunk raises an
out-of-memory error (`is_oom`, `torch.OutOfMemoryError` in the tokenizer), the exception is dropped first (its
traceback holds the chunk's tensors), then `free()` (`torch.cuda.empty_cache()` on CUDA) runs and the chunk is tried
again at half the size, down to one window; a single window that still does not fit is returned as `None` (the
tokenizer turns it into a `too_large` row for its input: `pipeline/tokenize/stages.py`). Nothing is skipped.

Memory: the size that fitted after an OOM becomes the `limit` for the next batches (the actor keeps this object), so
one OOM costs one failed try, not one per batch. It grows back cautiously: after `grow_after` batches without an OOM
the limit rises by a quarter (at least one window), up to the configured `tokenizer.batch_size`; the next OOM halves
it again. Why grow at all: an OOM is often a neighbour's moment (a fragmented cache, a larger bucket's windows), and a
limit that only shrinks would leave a long job slower than it needs to be for days.

Pure: the error test, the free step and the encode call are passed in, so the unit tests inject the error on the CPU.
"""

from __future__ import annotations

import logging
from typing import Callable, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
_OOM = object()


class AdaptiveBatches:
    """Chunks that fit (module docstring). `max_size`: the configured batch size; `limit`: the current chunk size."""

    def __init__(self, max_size: int, is_oom: Callable[[BaseException], bool], free: Callable[[], None] = lambda: None,
                 grow_after: int = 50):
        self.max_size, self.limit, self.is_oom, self.free, self.grow_after = max_size, max_size, is_oom, free, grow_after
        self.ooms = 0  # out-of-memory errors caught so far (tests, logs)
        self._calm = 0  # batches since the last OOM

    def run(self, n: int, encode: Callable[[int, int], T]) -> list[tuple[int, int, T | None]]:
        """`encode(start, stop)` over `[0, n)` in chunks; returns `(start, stop, result)` in order, `result` None for
        a single row that ran out of memory alone."""
        out: list[tuple[int, int, T | None]] = []
        start, hit = 0, False
        while start < n:
            size = min(self.limit, n - start)
            try:
                res = encode(start, start + size)
            except Exception as e:
                if not self.is_oom(e):
                    raise
                res = _OOM  # leave the except block first: the traceback holds the chunk's tensors
            if res is not _OOM:
                out.append((start, start + size, res))
                start += size
                continue
            self.free()
            self.ooms, hit = self.ooms + 1, True
            if size == 1:
                log.error("one window does not fit in memory even alone: it is reported too_large")
                out.append((start, start + 1, None))
                start += 1
                continue
            self.limit = (size + 1) // 2  # halves, rounded up: 7 -> 4 -> 2 -> 1
            log.warning("out of memory encoding %d windows: retrying in chunks of %d", size, self.limit)
        self._calm = 0 if hit else self._calm + 1
        if self._calm >= self.grow_after and self.limit < self.max_size:
            self.limit = min(self.max_size, self.limit + max(1, self.limit // 4))
            self._calm = 0
            log.info("no out-of-memory error for %d batches: trying chunks of %d windows", self.grow_after, self.limit)
        return out
