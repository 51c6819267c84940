"""Read video bytes from any fsspec URL (s3://, gs://, local paths) for the decoders, without holding the file.

Local files are handed to the decoders as paths (they read and seek themselves, no copy). Remote objects are never
read whole into memory: ``open_source`` returns a :class:`RemoteObject`, and every reader (the probe, PyAV) opens its
own seekable fsspec file on it that fetches ``block_size`` byte ranges on demand (``fs.open(path, "rb",
block_size=...)``, read-ahead cache), so a decode holds a few blocks of a multi-GB object. decord needs random
access through its own reader: :func:`decord_input` gives it the object's bytes when the object is at most
``spill_bytes`` (default 64 MiB) and otherwise copies it, by ranges, to a local temporary file that is deleted
afterwards. ``max_bytes`` is therefore a limit on what may be spilled to local disk (and on the file size in
general), checked from the listing before any byte is fetched; it no longer bounds memory, which is independent of
the file size (`docs/tokenize.md`, "Decode memory").

S3 settings come from ``storage_options`` (``key``/``secret``/``token``, ``client_kwargs={"endpoint_url": ...}``,
``profile``) or, when absent, from the standard AWS chain (environment, ``~/.aws`` profile, instance role) that
s3fs/botocore use. Keep ``region_name`` out of ``client_kwargs`` for S3-compatible servers; set AWS_DEFAULT_REGION.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import stat
import tempfile
from dataclasses import dataclass, field
from typing import Any, Union

from pipeline.storage import is_remote, local_path, url_to_fs

from .status import IO_ERROR, NOT_A_VIDEO, NOT_FOUND, TOO_LARGE, DecodeError

Source = Union[str, os.PathLike, bytes, bytearray, memoryview]

BLOCK_BYTES = 4 << 20  # range-read size for remote objects: large enough for object-store throughput
SPILL_BYTES = 64 << 20  # remote objects above this reach decord through a local temp file, not memory


@dataclass
class RemoteObject:
    """An object in a store, read by byte ranges. ``open()`` gives a fresh seekable binary file object."""

    url: str
    size: int
    storage_options: dict[str, Any] | None = field(default=None, repr=False)
    block_size: int = BLOCK_BYTES

    def open(self):
        fs, path = url_to_fs(self.url, self.storage_options)
        return fs.open(path, "rb", block_size=self.block_size, cache_type="readahead")


Readable = Union[str, bytes, RemoteObject]  # a local path, a whole (small) object in memory, or a remote object


def open_source(source: Source, storage_options: dict[str, Any] | None = None, max_bytes: int | None = None,
                block_size: int = BLOCK_BYTES):
    """Resolve ``source`` to ``(readable, num_bytes)``: a local path, the given bytes, or a :class:`RemoteObject`.

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
        size = int(fs.size(path) or 0)
        _check_size(None, size, max_bytes, url)
        obj = RemoteObject(url, size, storage_options, block_size)
        with obj.open() as f:  # fail here (missing, denied) as an io_error, not later inside a decoder
            f.read(1)
    except DecodeError:
        raise
    except Exception as e:  # botocore / aiohttp / gcsfs raise many unrelated types; all mean "could not read"
        raise _read_error(url, e) from None
    return obj, size


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


def as_file(readable: Readable):
    """What a decoder opens: the path itself, a fresh ``BytesIO`` (it shares the bytes until written, so the
    probe and the decoder each get their own read position without a copy), or a fresh range-reading file."""
    if isinstance(readable, RemoteObject):
        return readable.open()
    return readable if isinstance(readable, str) else io.BytesIO(readable)


def open_binary(readable: Readable):
    """A binary file object on ``readable`` (for header checks); the caller closes it."""
    return open(readable, "rb") if isinstance(readable, str) else as_file(readable)


def size_of(readable: Readable) -> int:
    if isinstance(readable, RemoteObject):
        return readable.size
    return os.stat(readable).st_size if isinstance(readable, str) else len(readable)


@contextlib.contextmanager
def decord_input(readable: Readable, spill_bytes: int = SPILL_BYTES):
    """``readable`` in a form decord can random-access: paths and bytes as they are; a remote object as its bytes
    (at most ``spill_bytes``) or as a local temporary copy, deleted when the block exits."""
    if not isinstance(readable, RemoteObject):
        yield readable
        return
    if readable.size <= spill_bytes:
        with readable.open() as f:
            yield f.read()
        return
    fd, tmp = tempfile.mkstemp(prefix="vidtok-spill-", suffix=".video")
    try:
        with os.fdopen(fd, "wb") as out, readable.open() as f:
            shutil.copyfileobj(f, out, length=readable.block_size)
        yield tmp
    finally:
        with contextlib.suppress(OSError):
            os.remove(tmp)
