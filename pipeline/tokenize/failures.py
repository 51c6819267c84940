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

from dataclasses import dataclass
from typing import Callable

from pipeline.decode.status import TIMEOUT, is_decoder_crash
from pipeline.retry import attempt
from pipeline.tokenize.config import RetryConfig


@dataclass
class DecodeOutcome:
    """The last `DecodeResult` of an input, the tries it took, and whether its status row is final."""

    result: object
    tries: int
    final: bool


def decode_with_retry(decode: Callable[[], object], retry: RetryConfig, what: str = "decode") -> DecodeOutcome:
    """Call `decode()` (returns a `pipeline.decode.DecodeResult`) under `retry`'s rule (module docstring)."""
    transient = set(retry.transient)
    tries = {"n": 0}

    def classify(res, error) -> bool:
        if error is not None:  # decode_windows never raises for a bad input: a raise is a bug, surface it
            return False
        tries["n"] += 1
        if res.status in transient:
            return True
        if res.status == TIMEOUT or is_decoder_crash(res.status, res.message):
            return tries["n"] < retry.decoder_attempts
        return False

    out = attempt(decode, classify, retry, what)
    res = out.result()
    final = res.status not in transient
    return DecodeOutcome(res, out.tries, final)
