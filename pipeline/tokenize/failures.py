"""Which decode outcomes the tokenize job retries, and whether the status row it then writes is final.

The rule (reason classes: `pipeline/decode/status.py`; backoff loop: `pipeline/retry.py`; keys: `retry.*`):

    outcome                          retried                                   row written when it still fails
    ok, permanent reason             never                                     final
    a reason in retry.transient      up to retry.attempts / retry.deadline_s   pending: final = false (io_error)
    timeout, decoder crash           up to retry.decoder_attempts              final (a hang or crash that repeats
                                                                               is the file: timeout / corrupt)

A pending row is never taken as done: the next run plans its input again, and its newest row wins
(`pipeline/tokenize/commit.py`). Pure: no Ray.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass
from typing import Callable, Iterator

from pipeline.decode.status import TIMEOUT, is_decoder_crash
from pipeline.tokenize.config import RetryConfig

log = logging.getLogger(__name__)


@dataclass
class DecodeOutcome:
    """The last `DecodeResult` of an input, the tries it took, and whether its status row is final."""

    result: object
    tries: int
    final: bool


def retryable(res, tries: int, retry: RetryConfig) -> bool:
    """Whether an outcome after `tries` tries is decoded again (the table in the module docstring)."""
    if res.status in set(retry.transient):
        return True
    if res.status == TIMEOUT or is_decoder_crash(res.status, res.message):
        return tries < retry.decoder_attempts
    return False


class RetriedStream:
    """The streamed windows of one input under `retry`'s rule: iterate to get every `Window` once; afterwards
    `outcome` holds the last result, the tries and whether its row is final.

    `start(skip)` opens one try (`pipeline.decode.iter_windows` with `skip_windows=skip`). A try that fails after
    some windows keeps them: they already went downstream, so the next try skips them too, and the decode task never
    holds more than the few windows the stream has in flight."""

    def __init__(self, start: Callable[[frozenset], object], skip: frozenset, retry: RetryConfig, what: str,
                 rng: random.Random | None = None, sleep: Callable[[float], None] = time.sleep):
        self.start, self.skip, self.retry, self.what = start, set(skip), retry, what
        self.rng, self.sleep = rng or random.Random(), sleep
        self.outcome: DecodeOutcome | None = None
        self.current = None  # the try in progress: its `result` has the input's facts once a window arrived
        self.sent = 0
        self.tries = 0  # the try in progress (1-based)

    @property
    def result(self):
        """The try in progress's `DecodeResult` (the input's facts once a window arrived)."""
        return self.current.result

    def __iter__(self) -> Iterator:
        t0, tries = time.monotonic(), 0
        while True:
            tries += 1
            self.tries = tries
            stream = self.current = self.start(frozenset(self.skip))
            for w in stream:
                self.skip.add(w.index)
                self.sent += 1
                yield w
            res = stream.result
            pause = (self.retry.next_pause(tries, time.monotonic() - t0, self.rng)
                     if retryable(res, tries, self.retry) else None)  # pipeline/retry.py's one rule
            if pause is None:
                self.outcome = DecodeOutcome(res, tries, res.status not in set(self.retry.transient))
                return
            log.warning("%s: %s (try %d of %d), retrying in %.1f s: %s", self.what, res.status, tries,
                        self.retry.attempts, pause, res.message)
            self.sleep(pause)
