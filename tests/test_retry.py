"""The one retry helper: backoff with full jitter, attempts and deadline, and what counts as a transient error."""

from __future__ import annotations

import random

import pytest

from pipeline.retry import RetryPolicy, attempt, retry_call
from pipeline.storage import is_transient_error, storage_config_error


def test_retry_backoff_is_capped_full_jitter():
    """Sleep k is uniform in [0, min(max_s, base_s * 2**(k-1))]: never above the cap, spread below it."""
    p = RetryPolicy(attempts=10, base_s=0.5, max_s=3.0, deadline_s=100)
    rng = random.Random(1)
    for k in range(1, 10):
        xs = [p.backoff_s(k, rng) for _ in range(200)]
        cap = min(3.0, 0.5 * 2 ** (k - 1))
        assert max(xs) <= cap and min(xs) >= 0 and max(xs) > 0.8 * cap and min(xs) < 0.2 * cap, (k, cap)


def test_retry_stops_at_attempts_deadline_or_final_outcome():
    """Transient outcomes are retried up to `attempts`, never past `deadline_s`; a final one stops at once."""
    slept = []
    calls = iter([OSError("503"), OSError("reset"), 42])
    out = attempt(lambda: _next(calls), lambda v, e: e is not None, RetryPolicy(attempts=5, base_s=0.01),
                  sleep=slept.append)
    assert (out.value, out.tries, out.transient, len(slept)) == (42, 3, False, 2)
    out = attempt(lambda: 1 / 0, lambda v, e: True, RetryPolicy(attempts=4, base_s=0.0), sleep=slept.append)
    assert out.tries == 4 and out.transient and isinstance(out.error, ZeroDivisionError)
    out = attempt(lambda: 0, lambda v, e: True, RetryPolicy(attempts=50, base_s=10.0, max_s=10.0, deadline_s=0.5),
                  rng=random.Random(0), sleep=slept.append)
    assert out.tries < 50  # the first backoff (up to 10 s) would end past the 0.5 s deadline unless it is tiny
    with pytest.raises(FileNotFoundError):
        retry_call(lambda: _raise(FileNotFoundError("k")), is_transient_error, RetryPolicy(attempts=3, base_s=0))


def test_retry_transient_error_classes():
    """Network / store errors (also wrapped as a cause) are transient; missing paths, permissions, bugs are not."""
    import botocore.exceptions as be

    assert is_transient_error(OSError(16, "SlowDown"))  # what s3fs makes of 503 SlowDown
    assert is_transient_error(be.EndpointConnectionError(endpoint_url="http://x"))
    assert is_transient_error(ConnectionResetError())
    wrapped = RuntimeError("task failed")
    wrapped.__cause__ = TimeoutError()
    assert is_transient_error(wrapped)
    for e in (FileNotFoundError("k"), PermissionError("denied"), ValueError("bug"), KeyError("x")):
        assert not is_transient_error(e), e


def test_retry_transient_error_raised_in_a_ray_data_map_function():
    """Ray Data wraps a map function's exception in `UserCodeException` raised from it, and the chain is lost on the
    way to the driver (pickled without `__cause__`): the traceback text the worker formatted still tells a storage
    outage (exit 3 at the driver) from a bug or a denied request."""
    import pickle
    import traceback

    import botocore.exceptions as be
    from ray.exceptions import RayTaskError, UserCodeException

    def from_map_function(inner: BaseException) -> BaseException:
        try:
            try:
                raise inner
            except Exception as e:
                raise UserCodeException("UDF failed to process a data block.") from e
        except UserCodeException as e:
            err = RayTaskError("MapBatches(WriteTokenShard)", traceback.format_exc(), e)
        return pickle.loads(pickle.dumps(err)).as_instanceof_cause()  # what reaches the driver

    arrived = from_map_function(be.EndpointConnectionError(endpoint_url="http://x"))
    assert arrived.cause.__cause__ is None  # the chain is gone, as from a real task
    assert is_transient_error(arrived)
    assert is_transient_error(from_map_function(ConnectionResetError("reset by peer")))
    assert is_transient_error(from_map_function(be.ClientError({"Error": {"Code": "SlowDown"}}, "PutObject")))
    for inner in (FileNotFoundError("k"), ValueError("bug"), be.NoCredentialsError(),
                  be.ClientError({"Error": {"Code": "AccessDenied"}}, "PutObject")):
        assert not is_transient_error(from_map_function(inner)), inner
    # and a configuration error raised there still gets its message and next step (exit 2, not 1)
    denied = storage_config_error(from_map_function(be.ClientError({"Error": {"Code": "AccessDenied"}}, "PutObject")))
    assert denied.startswith("access denied") and "storage.key=" in denied, denied
    assert storage_config_error(from_map_function(be.NoCredentialsError())).startswith("no credentials")
    assert storage_config_error(from_map_function(ConnectionResetError("reset"))) is None


def _next(it):
    v = next(it)
    if isinstance(v, Exception):
        raise v
    return v


def _raise(e):
    raise e
