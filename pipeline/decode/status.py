"""Reason classes for inputs that yield no windows: a bad video is data, not a crash.

Every input to the decode stage ends as ``ok`` (windows) or exactly one of these classes plus a message. The classes
are coarse on purpose so a corpus summary can count them; the message keeps the detail (FFmpeg's words, the byte
counts, the limit that was hit).

Two kinds (the design rule: "a status row is final only for a permanent failure"):

* **permanent** — the file itself is bad (or absent): trying again gives the same answer. Its status row is final.
* **transient** — the store, the network or a stalled read: ``io_error`` is retried inside the run and, if it still
  fails, written as a *pending* row (``final = false``) that the next run retries. ``timeout`` and a crashed decoder
  process are ambiguous (a hang can be the file or the network): retried a few times, then final
  (``retry.decoder_attempts``; the policy is in ``pipeline/tokenize/failures.py``).
"""

from __future__ import annotations

OK = "ok"
NOT_A_VIDEO = "not_a_video"  # empty, unknown format, or a container without a video stream (audio only, text)
CORRUPT = "corrupt"  # a recognised container whose data cannot be decoded (or a decoder crash, repeated)
TRUNCATED = "truncated"  # the file ends before the data its index describes (or the index is missing)
UNSUPPORTED_CODEC = "unsupported_codec"  # no decoder for the video codec on either path
TOO_SHORT = "too_short"  # fewer sampled frames than one window under the tail policy
TOO_LARGE = "too_large"  # over max_pixels / max_duration_s / max_bytes
NOT_FOUND = "not_found"  # the object / file does not exist (S3 404 NoSuchKey, ENOENT): listed or named, then gone
TIMEOUT = "timeout"  # the per-file time limit cut the decode off (every try)
IO_ERROR = "io_error"  # the bytes could not be read: network, store errors (5xx, throttling), permission

PERMANENT = (NOT_A_VIDEO, CORRUPT, TRUNCATED, UNSUPPORTED_CODEC, TOO_SHORT, TOO_LARGE, NOT_FOUND)
TRANSIENT = (IO_ERROR, TIMEOUT)  # worth another try; IO_ERROR never becomes final by retrying
REASONS = PERMANENT + TRANSIENT

# Message prefix of the CORRUPT result `decode_windows` returns when the isolated decoder process died: the one
# CORRUPT outcome that is retried (a killed process can be the machine, not the file).
DECODER_CRASHED = "decoder crashed"


def is_decoder_crash(status: str, message: str | None) -> bool:
    return status == CORRUPT and (message or "").startswith(DECODER_CRASHED)


class DecoderUnavailable(RuntimeError):
    """The decode stack itself does not load in the decode child (ImportError, a missing FFmpeg library): the
    machine, not any file. Raised, never a status: `pipeline/tokenize/machine.py` stops the run on it."""


class DecodeError(Exception):
    """An input that cannot yield frames; ``reason`` is one of :data:`REASONS`."""

    def __init__(self, reason: str, message: str):
        if reason not in REASONS:
            raise ValueError(f"unknown reason class {reason!r}; expected one of {REASONS}")
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message

    def __reduce__(self):  # keep (reason, message) across the isolation process boundary
        return (DecodeError, (self.reason, self.message))
