"""Reason classes for inputs that yield no windows: a bad video is data, not a crash.

Every input to the decode stage ends as ``ok`` (windows) or exactly one of these classes plus a message. The classes
are coarse on purpose so a corpus summary can count them; the message keeps the detail (FFmpeg's words, the byte
counts, the limit that was hit).
"""

from __future__ import annotations

OK = "ok"
NOT_A_VIDEO = "not_a_video"  # empty, unknown format, or a container without a video stream (audio only, text)
CORRUPT = "corrupt"  # a recognised container whose data cannot be decoded (or a decoder crash)
TRUNCATED = "truncated"  # the file ends before the data its index describes (or the index is missing)
UNSUPPORTED_CODEC = "unsupported_codec"  # no decoder for the video codec on either path
TOO_SHORT = "too_short"  # fewer sampled frames than one window under the tail policy
TOO_LARGE = "too_large"  # over max_pixels / max_duration_s / max_bytes
TIMEOUT = "timeout"  # the per-file time limit cut the decode off
IO_ERROR = "io_error"  # the bytes could not be read (missing object, permission, network)

REASONS = (NOT_A_VIDEO, CORRUPT, TRUNCATED, UNSUPPORTED_CODEC, TOO_SHORT, TOO_LARGE, TIMEOUT, IO_ERROR)


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
