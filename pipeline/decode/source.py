"""Read video bytes from any fsspec URL (s3://, gs://, local paths) for the decoders.

Local files are handed to the decoders as paths (they read and seek themselves, no copy). Remote objects are read
whole into memory and handed over as a file object: both decord and PyAV accept one, so no temporary files are
written, and a size bound (``max_bytes``) is checked from the listing before any byte is fetched.

S3 settings come from ``storage_options`` (``key``/``secret``/``token``, ``client_kwargs={"endpoint_url": ...}``,
``profile``) or, when absent, from the standard AWS chain (environment, ``~/.aws`` profile, instance role) that
s3fs/botocore use. Keep ``region_name`` out of ``client_kwargs`` for S3-compatible servers; set AWS_DEFAULT_REGION.
"""

from __future__ import annotations

import io
import os
import stat
from typing import Any, Union

from pipeline.storage import is_remote, local_path, url_to_fs

from .status import IO_ERROR, NOT_A_VIDEO, NOT_FOUND, TOO_LARGE, DecodeError

Source = Union[str, os.PathLike, bytes, bytearray, memoryview]
Readable = Union[str, bytes]  # a local path, or the whole object in memory


def open_source(source: Source, storage_options: dict[str, Any] | None = None, max_bytes: int | None = None):
    """Resolve ``source`` to ``(readable, num_bytes)``: a local path, or the object's bytes (see :func:`as_file`).

    Raises ``DecodeError`` with ``not_found`` (no such file / object: permanent), ``io_error`` (permission, network,
    store errors: transient, retried by the caller), ``not_a_video`` (empty) or ``too_large`` (over ``max_bytes``).
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        return _check_size(data, len(data), max_bytes, "<bytes>")
    url = os.fspath(source)
    if not is_remote(url):
        path = local_path(url)
        try:
            info = os.stat(path)
            if not os.access(path, os.R_OK):
                raise PermissionError(f"permission denied: {path}")
        except OSError as e:
            raise _read_error(url, e) from None
        if not stat.S_ISREG(info.st_mode):  # a pipe or device: no size to check, the decoder reads what comes
            return path, -1
        return _check_size(path, info.st_size, max_bytes, url)
    try:
        fs, path = url_to_fs(url, storage_options)
        size = fs.size(path)
        _check_size(None, size or 0, max_bytes, url)
        data = fs.cat_file(path)
    except DecodeError:
        raise
    except Exception as e:  # botocore / aiohttp / gcsfs raise many unrelated types; all mean "could not read"
        raise _read_error(url, e) from None
    return _check_size(data, len(data), max_bytes, url)


def _read_error(url: str, e: Exception) -> DecodeError:
    """`not_found` only for an answer that says the object is absent (s3fs turns S3's 404 / NoSuchKey into
    FileNotFoundError); anything else (refused connections, 5xx, cut bodies, permission) is a transient `io_error`."""
    reason = NOT_FOUND if isinstance(e, FileNotFoundError) else IO_ERROR
    return DecodeError(reason, f"cannot read {url}: {type(e).__name__}: {e}")


def _check_size(readable, size: int, max_bytes: int | None, name: str):
    if size == 0:
        raise DecodeError(NOT_A_VIDEO, f"{name} is empty (0 bytes)")
    if max_bytes is not None and size > max_bytes:
        raise DecodeError(TOO_LARGE, f"{name} is {size} bytes, over max_bytes={max_bytes}")
    return readable, size


def as_file(readable: Readable) -> str | io.BytesIO:
    """What a decoder opens: the path itself, or a fresh ``BytesIO`` (it shares the bytes until written, so the
    probe and the decoder each get their own read position without a copy)."""
    return readable if isinstance(readable, str) else io.BytesIO(readable)
