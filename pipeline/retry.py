"""The one retry helper of the project: exponential backoff with full jitter, bounded by attempts and a deadline.

Used by every write, listing and read of `pipeline/storage.py` (token shards, status shards, summary) through
`retry_call`, and by the decode stage's streamed retries (`pipeline/tokenize/failures.py: RetriedStream`, a generator:
it cannot be one `fn()` call, so it asks `RetryPolicy.next_pause` for the same rule). The object-store client retries each
request on its own first (botocore + s3fs, configured in `pipeline/storage.py`); this layer outlasts what they cannot:
an outage of seconds to minutes, during which every request of the client's short retry budget fails.

Backoff: before try k+1 (k >= 1) sleep a uniform random time in [0, min(max_s, base_s * 2**(k-1))] ("full jitter",
AWS Architecture Blog, "Exponential Backoff And Jitter", 2015): many workers that failed together do not come back
together. Stop after `attempts` tries or once the next sleep would end past `deadline_s` from the first try.

`retry_call(fn, classify, policy)` works for both kinds of callers: `classify(outcome)` looks at what a try gave,
a return value or the exception it raised, and says whether it is worth another try; the last outcome is returned or
re-raised as it was, with the number of tries made. Pure: stdlib only.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass
from typing import Any, Callable

log = logging.getLogger(__name__)


@dataclass
class RetryPolicy:
    """How long a transient failure is retried inside one run."""

    attempts: int = 6  # tries in all (the first included); 1 = never retry
    base_s: float = 1.0  # first backoff cap; doubles per try
    max_s: float = 30.0  # backoff cap
    deadline_s: float = 180.0  # no try starts later than this after the first one

    def __post_init__(self):
        if self.attempts < 1:
            raise ValueError(f"retry.attempts must be >= 1, found {self.attempts}")
        for name in ("base_s", "max_s", "deadline_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"retry.{name} must be >= 0, found {getattr(self, name)}")

    def backoff_s(self, tries_done: int, rng: random.Random) -> float:
        """The sleep before try `tries_done + 1` (full jitter)."""
        return rng.uniform(0.0, min(self.max_s, self.base_s * 2 ** (tries_done - 1)))

    def next_pause(self, tries_done: int, elapsed_s: float, rng: random.Random) -> float | None:
        """The sleep before another try after `tries_done` transient failures `elapsed_s` seconds after the first
        try started, or None when the policy is spent (attempts, or the deadline the sleep would pass): the one
        rule, for `attempt` and for callers that cannot be a single call."""
        if tries_done >= self.attempts:
            return None
        pause = self.backoff_s(tries_done, rng)
        return None if elapsed_s + pause > self.deadline_s else pause


@dataclass
class Attempted:
    """What `retry_call` ends with: the last try's `value` (or `error`), how many `tries`, and whether the last
    outcome was still `transient` (retries exhausted) or final."""

    value: Any = None
    error: BaseException | None = None
    tries: int = 0
    transient: bool = False

    def result(self):
        """The value, or the last exception raised again."""
        if self.error is not None:
            raise self.error
        return self.value


def attempt(fn: Callable[[], Any], classify: Callable[[Any, BaseException | None], bool], policy: RetryPolicy,
            what: str = "call", rng: random.Random | None = None, sleep: Callable[[float], None] = time.sleep,
            ) -> Attempted:
    """Call `fn()` until `classify(value, error)` says the outcome is not transient, or `policy` runs out."""
    rng = rng or random.Random()
    t0 = time.monotonic()
    out = Attempted()
    while True:
        out.tries += 1
        try:
            out.value, out.error = fn(), None
        except Exception as e:  # classified below; BaseException (KeyboardInterrupt, SystemExit) passes through
            out.value, out.error = None, e
        out.transient = bool(classify(out.value, out.error))
        pause = policy.next_pause(out.tries, time.monotonic() - t0, rng) if out.transient else None
        if pause is None:
            return out
        log.warning("%s: transient failure (try %d of %d), retrying in %.1f s: %s", what, out.tries, policy.attempts,
                    pause, out.error if out.error is not None else _short(out.value))
        sleep(pause)


def retry_call(fn: Callable[[], Any], is_transient: Callable[[BaseException], bool], policy: RetryPolicy,
               what: str = "call") -> Any:
    """`fn()`, retried while it raises an exception `is_transient` accepts; returns its value or raises the last
    exception (for callers whose failures are exceptions: the storage writes)."""
    return attempt(fn, lambda _v, e: e is not None and is_transient(e), policy, what).result()


def _short(value: Any) -> str:
    text = str(getattr(value, "message", None) or value)
    return text if len(text) < 300 else text[:300] + "..."
