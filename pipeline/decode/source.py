"""Read video bytes from any fsspec URL (s3://, gs://, local paths) for the decoders, without holding the file.

Local files are handed to the decoders as paths (they read and seek themselves, no copy). Remote objects are never
read whole into memory: ``open_source`` returns a :class:`RemoteObject`, and every reader (the existence check, the
header check, the probe, PyAV, decord's copy, torchcodec) opens its own seekable file on it (``RemoteObject.open()``:
its own read position) over ONE :class:`BlockCache` per object: ``block_size`` byte ranges fetched on demand, each
written once to an unlinked local temporary file (in ``TMPDIR``: keep it on disk, not tmpfs) and read from there by
every later reader. So each byte of an input is fetched once per decode, though the probe demuxes the whole file
(all but MP4/MOV, probed from their header: ``header.py``) and the decoder reads it again. Before the cache every
reader had its own fsspec read-ahead file: 3-6x the object's size per input (counted through
``tests/faults.py``'s proxy; ``tests/decode/test_reads.py``). The cache's disk is bounded by ``cache_bytes``
(``decode.read_cache_bytes``, 4 GiB): past it the least recently used blocks are dropped and fetched again if read
again; the cache is freed when the decode of its input ends (``RemoteObject.close``). Memory: one block per read.

decord needs random access through its own reader: :func:`decord_input` gives it the object's bytes when the object
is at most ``spill_bytes`` (default 64 MiB) and otherwise copies it, by ranges, to a local temporary file that is
deleted afterwards. ``max_bytes`` limits that spill (and the file size in general), checked from the listing before
any byte is fetched; memory is independent of the file size (`docs/tokenize.md`, "Decode memory").

S3 settings come from ``storage_options`` (``key``/``secret``/``token``, ``client_kwargs={"endpoint_url": ...}``,
``profile``) or, when absent, from the standard AWS chain (environment, ``~/.aws`` profile, instance role) that
s3fs/botocore use. Keep ``region_name`` out of ``client_kwargs`` for S3-compatible servers; set AWS_DEFAULT_REGION.
"""

from __future__ import annotations

import collections
import contextlib
import io
import os
import shutil
import stat
import tempfile
import threading
from dataclasses import dataclass, field
from typing import Any, Union

from pipeline.storage import is_remote, local_path, url_to_fs

from .status import IO_ERROR, NOT_A_VIDEO, NOT_FOUND, TOO_LARGE, DecodeError

Source = Union[str, os.PathLike, bytes, bytearray, memoryview]

BLOCK_BYTES = 4 << 20  # range-read size for remote objects: large enough for object-store throughput
SPILL_BYTES = 64 << 20  # remote objects above this reach decord through a local temp file, not memory
CACHE_BYTES = 4 << 30  # local disk one input's block cache may take (a 2-hour 720p H.264 file is ~3 GB)


class BlockCache:
    """The fetched blocks of one remote object, on local disk: each block is fetched (one ranged GET, through an
    fsspec file without its own cache) at most once while it stays cached, however many readers read it.

    Blocks live in slots of an unlinked temporary file (gone with the process, whatever happens); at most
    ``cache_bytes // block_size`` slots, reused least recently used first. Thread-safe (one lock: reads are short).
    """

    def __init__(self, obj: "RemoteObject", cache_bytes: int = CACHE_BYTES):
        # the object's facts, not the object: no reference cycle, so the file closes when its object goes away
        self.url, self.size, self.storage_options = obj.url, obj.size, obj.storage_options
        self.block_size = obj.block_size
        self.slots = max(2, cache_bytes // obj.block_size)
        self.where: collections.OrderedDict[int, int] = collections.OrderedDict()  # block -> slot, LRU first
        self.fetched_bytes = 0
        self._lock = threading.Lock()
        self._file = None  # the temporary file, made on the first fetch
        self._src = None  # the fsspec file the blocks are fetched through

    def _fetch(self, first: int, last: int) -> None:
        """Fetch blocks ``first … last`` (all missing) in one ranged read into free or least recently used slots."""
        bs = self.block_size
        if self._file is None:
            self._file = tempfile.TemporaryFile(prefix="vidtok-blocks-")
        start, end = first * bs, min((last + 1) * bs, self.size)
        data = self._get(start, end - start)
        for b in range(first, last + 1):
            if len(self.where) < self.slots:
                slot = len(self.where)
            else:
                _, slot = self.where.popitem(last=False)
            os.pwrite(self._file.fileno(), data[(b - first) * bs : (b - first + 1) * bs], slot * bs)
            self.where[b] = slot

    def pread(self, pos: int, n: int) -> bytes:
        """Bytes ``pos … pos + n`` (fewer at the end of the object)."""
        n = max(0, min(n, self.size - pos))
        if n == 0:
            return b""
        bs = self.block_size
        first, last = pos // bs, (pos + n - 1) // bs
        out = []
        with self._lock:
            if last - first + 1 > self.slots:  # a read larger than the whole cache: straight through
                return self._get(pos, n)
            missing = [b for b in range(first, last + 1) if b not in self.where]
            for b in range(first, last + 1):  # most recent first, so fetching the rest never evicts them
                if b in self.where:
                    self.where.move_to_end(b)
            while missing:  # runs of consecutive missing blocks, one GET each
                run_end = 0
                while run_end + 1 < len(missing) and missing[run_end + 1] == missing[run_end] + 1:
                    run_end += 1
                self._fetch(missing[0], missing[run_end])
                missing = missing[run_end + 1 :]
            for b in range(first, last + 1):
                self.where.move_to_end(b)
                lo, hi = max(pos, b * bs), min(pos + n, (b + 1) * bs)
                out.append(os.pread(self._file.fileno(), hi - lo, self.where[b] * bs + lo - b * bs))
        return b"".join(out)

    def _get(self, start: int, n: int) -> bytes:
        """One ranged read from the store (errors propagate as the store's client raises them)."""
        if self._src is None:
            fs, path = url_to_fs(self.url, self.storage_options)
            self._src = fs.open(path, "rb", block_size=self.block_size, cache_type="none")
        self._src.seek(start)
        data = self._src.read(n)
        if len(data) != n:
            raise OSError(f"short read of {self.url}: {n} bytes at {start} gave {len(data)}")
        self.fetched_bytes += len(data)
        return data

    def close(self) -> None:
        with self._lock:
            for f in (self._src, self._file):
                if f is not None:
                    with contextlib.suppress(Exception):
                        f.close()
            self._src = self._file = None
            self.where.clear()


class RangeFile(io.RawIOBase):
    """A seekable, read-only binary file of ``size`` bytes: subclasses say how a byte range is read (``pread``); the
    position, seeks and the rest of the ``io.RawIOBase`` protocol are written here once."""

    def __init__(self, size: int):
        super().__init__()
        self.size, self.pos = size, 0

    def pread(self, offset: int, n: int) -> bytes:
        """Up to ``n`` bytes at ``offset`` (fewer only where the data ends)."""
        raise NotImplementedError

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.pos, io.SEEK_END: self.size}[whence]
        self.pos = max(0, base + offset)
        return self.pos

    def readinto(self, b) -> int:
        data = self.read(len(b))
        b[: len(data)] = data
        return len(data)

    def read(self, n: int = -1) -> bytes:
        left = max(0, self.size - self.pos)
        data = self.pread(self.pos, left if n is None or n < 0 else min(n, left))
        self.pos += len(data)
        return data


class CachedReader(RangeFile):
    """A seekable binary file over a :class:`BlockCache`, with its own read position."""

    def __init__(self, cache: BlockCache):
        super().__init__(cache.size)
        self.cache = cache

    def pread(self, offset: int, n: int) -> bytes:
        return self.cache.pread(offset, n)


@dataclass
class RemoteObject:
    """An object in a store, read by byte ranges. ``open()`` gives a fresh seekable binary file object; all of them
    share this object's :class:`BlockCache` (made on first use, freed by ``close()`` or with the object)."""

    url: str
    size: int
    storage_options: dict[str, Any] | None = field(default=None, repr=False)
    block_size: int = BLOCK_BYTES
    cache_bytes: int = CACHE_BYTES
    _cache: BlockCache | None = field(default=None, init=False, repr=False, compare=False)

    def open(self):
        if self._cache is None:
            self._cache = BlockCache(self, self.cache_bytes)
        return CachedReader(self._cache)

    @property
    def fetched_bytes(self) -> int:
        """Bytes fetched from the store so far through ``open()`` files."""
        return self._cache.fetched_bytes if self._cache is not None else 0

    def read_range(self, start: int, n: int) -> bytes:
        """Bytes ``start … start + n`` (fewer at the end) in one ranged GET, outside the block cache (which would
        round the range out to whole blocks): for readers that know exactly what they need (``packets.py``)."""
        if self._cache is None:
            self._cache = BlockCache(self, self.cache_bytes)
        n = max(0, min(n, self.size - start))
        if n == 0:
            return b""
        with self._cache._lock:
            return self._cache._get(start, n)

    def close(self) -> None:
        if self._cache is not None:
            self._cache.close()
            self._cache = None

    def __getstate__(self):  # the cache (open files) stays in its process
        return {**self.__dict__, "_cache": None}


Readable = Union[str, bytes, RemoteObject]  # a local path, a whole (small) object in memory, or a remote object


def open_source(source: Source, storage_options: dict[str, Any] | None = None, max_bytes: int | None = None,
                block_size: int = BLOCK_BYTES, cache_bytes: int = CACHE_BYTES, read_first: bool = True):
    """Resolve ``source`` to ``(readable, num_bytes)``: a local path, the given bytes, or a :class:`RemoteObject`.
    ``read_first``: read a remote object's first byte (its first block, kept for the probe) to fail here; a caller
    that will not probe (its probe result came from the video index) passes False and reads only what it needs.

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
        obj = RemoteObject(url, size, storage_options, block_size, cache_bytes)
        if read_first:
            with obj.open() as f:  # fail here (missing, denied) as an io_error, not later inside a decoder; the
                f.read(1)  # block it fetches stays cached for the probe
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


def read_range(readable: Readable, start: int, n: int) -> bytes:
    """Bytes ``start … start + n`` of ``readable`` (fewer at its end), read by exactly that range."""
    if isinstance(readable, RemoteObject):
        return readable.read_range(start, n)
    if isinstance(readable, str):
        with open(readable, "rb") as f:
            return os.pread(f.fileno(), n, start)
    return bytes(readable[start : start + n])


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
