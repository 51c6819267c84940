"""Every URL and filesystem rule of the project, written once: local vs remote, one fsspec policy, atomic writes.

A *URL* is a local path (`/data/x`, `out/tokens`, `file:///data/x`) or an fsspec URL (`s3://bucket/key`, `gs://...`,
`memory://...`). `is_remote` is the one test; local paths are made absolute so Ray workers (whose working directory
differs from the driver's) read the same files.

Filesystems come from `url_to_fs` only, with one policy for object stores: fsspec instances may be shared, but their
directory listings are never cached. The exactly-once resume logic lists committed shards, training resumes from the
newest checkpoint folder, and both run in long-lived processes that Ray reuses: a cached listing would hide files that
appeared after the first look.

Writes are atomic everywhere (`write_bytes`): locally a temp file in the target's folder, fsync, then `os.replace`
(POSIX rename: readers see the old file or the whole new one); on object stores one PUT (or a multipart upload), which
makes the object visible only once complete. A killed writer leaves nothing a reader would take for a finished file
(local temp names start with `.` and end with `.tmp`, so no listing of this project matches them).

Retries, in two layers, set here on purpose and nowhere else:

* **per request** (object-store client): S3 clients get botocore's `standard` retry mode with `total_max_attempts=3`
  (exponential backoff with jitter on 5xx, throttling such as 503 SlowDown, refused / reset connections), and
  `connect_timeout=5` s, `read_timeout=30` s so a stalled connection fails instead of hanging a task; s3fs adds its
  own retries around each call (5 tries, for cut bodies and throttling). `standard`, not `adaptive`: adaptive's
  client-side rate limiter is per process, so across a cluster it only adds waiting. Options the caller gives
  (`config_kwargs` in `storage_options`) win.
* **per operation** (`pipeline/retry.py`): an outage outlasts a client's few seconds of retries, so every write here
  (`write_bytes`, hence token shards, status shards, summary) and `OutputLayout`'s listings and reads are retried
  whole under a `RetryPolicy` (backoff with full jitter, attempts, deadline; the job's `retry.*` keys) while the
  error is transient (`is_transient_error`). A retried write publishes the same bytes under the same name, so it
  is idempotent; if the outage outlasts the policy the error propagates, the run stops without `_SUCCESS` and a
  re-run completes it from the committed files.

`OutputLayout` is a job's output folder: relative paths, committed-file listings, table writes. Pure: no Ray, no torch.
"""

from __future__ import annotations

import builtins
import hashlib
import io
import os
import posixpath
import re
import tempfile
import uuid
from dataclasses import dataclass, field

import fsspec

from pipeline.retry import RetryPolicy, retry_call

# Object-store protocols whose fsspec implementations cache directory listings (turned off, module docstring).
_LISTING_CACHE_PROTOCOLS = ("s3", "s3a", "gs", "gcs", "abfs", "az")


# The S3 client's own per-request policy (module docstring); merged under any `config_kwargs` the caller passes.
S3_CLIENT_CONFIG = {"retries": {"mode": "standard", "total_max_attempts": 3}, "connect_timeout": 5, "read_timeout": 30}
_S3_PROTOCOLS = ("s3", "s3a")
# Errors that say "this object / path is not there or not yours": trying again gives the same answer.
_PERMANENT_OS_ERRORS = (FileNotFoundError, FileExistsError, PermissionError, IsADirectoryError, NotADirectoryError)
_TRANSIENT_MODULES = ("botocore", "aiobotocore", "aiohttp", "urllib3", "requests", "http", "ssl", "s3fs", "gcsfs")
DEFAULT_RETRY = RetryPolicy()
# botocore errors that say who you are is missing or wrong (raised before any request, or by the store): another try
# gives the same answer, so they are configuration errors with a next step (`storage_config_error`), never retried.
_CREDENTIAL_ERRORS = ("NoCredentialsError", "PartialCredentialsError", "CredentialRetrievalError", "NoAuthTokenError",
                      "UnauthorizedSSOTokenError", "SSOTokenLoadError", "ProfileNotFound", "InvalidConfigError")
_DENIED_CODES = ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "AllAccessDisabled",
                 "InvalidToken", "TokenRefreshRequired", "AccountProblem")
_CREDENTIAL_HINT = ("set AWS_PROFILE (or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY) in the job's environment, or "
                    "storage.key= / storage.secret=; storage.anon=true for a public bucket; storage.endpoint_url= for "
                    "an S3-compatible store (MinIO, Ceph)")


def is_transient_error(e: BaseException) -> bool:
    """Whether a storage error is worth another try: the network or the store (refused / reset / timed-out
    connections, 5xx, throttling, cut bodies), as opposed to a missing path, a permission or a programming error.
    Follows `__cause__` and Ray's `cause` wrappers, so a task error that came from a storage call is recognised, also
    where Ray lost the chain (`_causes`)."""
    for cls, module, code, _ in _causes(e):
        if (cls and issubclass(cls, _PERMANENT_OS_ERRORS)) or code in _CREDENTIAL_ERRORS + _DENIED_CODES + ("NoSuchBucket",):
            return False
        if cls and issubclass(cls, (OSError, TimeoutError, ConnectionError)):  # s3fs maps 5xx / SlowDown to OSError
            return True
        if module.split(".")[0] in _TRANSIENT_MODULES:
            return True
    return False


def storage_config_error(e: BaseException, url: str | None = None) -> str | None:
    """The configuration problem behind a storage error, as a message that names what to set; None for anything
    else (a transient failure, a bug). Covers: no credentials, access denied / bad keys, no such bucket, a path that
    does not exist. Follows causes as `is_transient_error` does (`_causes`)."""
    where = f" ({url})" if url else ""
    for cls, _, code, text in _causes(e):
        if code in _CREDENTIAL_ERRORS:
            return f"no credentials for the object store{where}: {text}. To fix: {_CREDENTIAL_HINT}"
        if code in _DENIED_CODES or (cls and issubclass(cls, PermissionError)):
            return (f"access denied{where}: {text}. Check that the credentials in use may read the input and write "
                    f"the output: {_CREDENTIAL_HINT}")
        if code == "NoSuchBucket" or "NoSuchBucket" in text or "bucket does not exist" in text.lower():
            return f"no such bucket{where}: {text}. Check the URL's bucket name (and storage.endpoint_url)"
        if cls and issubclass(cls, FileNotFoundError):
            return f"not found{where}: {text}"
    return None


_EXCEPTION_LINE = re.compile(r"^([A-Za-z_][\w.]*)(?::\s?(.*))?$")


def _causes(e: BaseException | None):
    """`(class or None, module, store error code, first line)` of an error and each of its causes, outermost first:
    the objects (`cause` of Ray's wrappers, `__cause__`), then the exceptions a Ray task error's text names.

    Why the text: Ray Data wraps an exception raised in a map function into `UserCodeException` raised `from` it,
    and the chain does not survive the trip to the driver (exceptions pickle without `__cause__`), so a storage
    error that outlasted its retries in `WriteTokenShard` arrived as an unexplained error (exit 1) instead of an
    incomplete run (exit 3). Only the task error's text, formatted in the worker, still names it (a builtin by its
    class, anything else by its module, a botocore `ClientError` by the code in its message)."""
    task_error, seen = None, 0
    while e is not None and seen < 10:
        yield type(e), type(e).__module__, _error_code(e), (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
        if task_error is None and type(e).__module__ == "ray.exceptions":
            task_error = e
        e = getattr(e, "cause", None) or e.__cause__
        seen += 1
    named = []
    for line in (str(task_error).splitlines() if task_error is not None else ()):
        m = _EXCEPTION_LINE.match(line)
        if m and not line.startswith(("Traceback", "ray::", "The above exception", "During handling")) and \
                (m.group(2) is not None or m.group(1).endswith(("Error", "Exception"))):
            named.append((m.group(1), m.group(2) or ""))
    for name, message in reversed(named):  # the text lists the root cause first
        module, _, short = name.rpartition(".")
        builtin = getattr(builtins, short, None) if not module else None
        code = re.search(r"An error occurred \((\w+)\)", message) if short == "ClientError" else None
        yield (builtin if isinstance(builtin, type) and issubclass(builtin, BaseException) else None,
               module or "builtins", short if short in _CREDENTIAL_ERRORS else (code.group(1) if code else None),
               f"{short}: {message}"[:300])


def _error_code(e: BaseException) -> str | None:
    """The store's error code of a botocore ClientError, or the class name of a botocore credential error."""
    if type(e).__name__ in _CREDENTIAL_ERRORS:
        return type(e).__name__
    return (getattr(e, "response", None) or {}).get("Error", {}).get("Code") if hasattr(e, "response") else None


def is_remote(url: str) -> bool:
    """Whether `url` names an object store / remote filesystem (anything with a scheme other than `file://`)."""
    return "://" in str(url) and not str(url).startswith("file://")


def local_path(url: str) -> str:
    """A local URL (`file://` or a plain path) as an absolute path."""
    url = str(url)
    return os.path.abspath(url[len("file://"):] if url.startswith("file://") else url)


def protocol_of(url: str) -> str:
    return url.split("://", 1)[0] if is_remote(url) else "file"


def url_to_fs(url: str, storage_options: dict | None = None):
    """`(filesystem, path without scheme)` for any URL, under the module's one caching policy."""
    if not is_remote(url):
        return fsspec.core.url_to_fs(local_path(url))
    opts = dict(storage_options or {})
    if protocol_of(url) in _LISTING_CACHE_PROTOCOLS:
        opts.setdefault("use_listings_cache", False)
    if protocol_of(url) in _S3_PROTOCOLS:
        opts["config_kwargs"] = {**S3_CLIENT_CONFIG, **(opts.get("config_kwargs") or {})}
    return fsspec.core.url_to_fs(url, **opts)


def full_url(fs, path: str) -> str:
    """The URL that names `path` on `fs` for every later reader (scheme kept; local paths as they are)."""
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    if protocol in ("file", "local"):
        return path
    return object_url(protocol, path)


def object_url(protocol: str, path: str) -> str:
    """`s3` + `bucket/key` -> `s3://bucket/key`."""
    return f"{protocol}://{path}"


def is_s3(url_or_fs) -> bool:
    """Whether a URL or an fsspec filesystem is S3 (or S3-compatible)."""
    if isinstance(url_or_fs, str):
        return protocol_of(url_or_fs) in _S3_PROTOCOLS
    protocols = (url_or_fs.protocol,) if isinstance(url_or_fs.protocol, str) else tuple(url_or_fs.protocol)
    return bool(set(protocols) & set(_S3_PROTOCOLS))


def s3_client(storage_options: dict | None = None):
    """A boto3 S3 client with the same endpoint, credentials and per-request policy as `url_to_fs`'s s3fs.

    For listing only: s3fs has no public page-by-page listing (`find` and `ls` collect a whole prefix; `_iterdir`
    is private), while `list_objects_v2` with a continuation token is public API that streams 1000 keys a page.
    """
    import boto3
    import botocore
    from botocore.config import Config

    opts = dict(storage_options or {})
    config = {**S3_CLIENT_CONFIG, **(opts.get("config_kwargs") or {})}
    if opts.get("anon"):
        config["signature_version"] = botocore.UNSIGNED
    session = boto3.session.Session(profile_name=opts.get("profile"))
    return session.client("s3", aws_access_key_id=opts.get("key"), aws_secret_access_key=opts.get("secret"),
                          aws_session_token=opts.get("token"), config=Config(**config),
                          **(opts.get("client_kwargs") or {}))


def is_local_fs(fs) -> bool:
    protocols = (fs.protocol,) if isinstance(fs.protocol, str) else tuple(fs.protocol)
    return bool({"file", "local"} & set(protocols))


def join(url: str, *parts: str) -> str:
    """`url` with `parts` appended (posix joins for remote URLs; local results are absolute paths)."""
    if is_remote(url):
        return posixpath.join(url.rstrip("/"), *parts)
    return os.path.join(local_path(url), *parts)


def exists(url: str, storage_options: dict | None = None) -> bool:
    fs, path = url_to_fs(url, storage_options)
    return fs.exists(path)


def read_bytes(url: str, storage_options: dict | None = None) -> bytes:
    fs, path = url_to_fs(url, storage_options)
    with fs.open(path, "rb") as f:
        return f.read()


def read_text(url: str, storage_options: dict | None = None) -> str | None:
    """The file's text, or None when it does not exist."""
    try:
        return read_bytes(url, storage_options).decode()
    except FileNotFoundError:
        return None


def write_bytes(url: str, data: bytes, storage_options: dict | None = None, retry: RetryPolicy | None = None) -> str:
    """Atomically publish `data` at `url`, retried under `retry` while the error is transient (module docstring);
    returns `url`."""
    return retry_call(lambda: _write_once(url, data, storage_options), is_transient_error, retry or DEFAULT_RETRY,
                      f"write {url}")


def _write_once(url: str, data: bytes, storage_options: dict | None) -> str:
    if not is_remote(url):
        final = local_path(url)
        folder = os.path.dirname(final)
        os.makedirs(folder, exist_ok=True)
        tmp = os.path.join(folder, f".{os.path.basename(final)}.{uuid.uuid4().hex}.tmp")
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())  # the rename must not publish bytes that are still only in the page cache
            os.replace(tmp, final)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        return url
    fs, path = url_to_fs(url, storage_options)
    with fs.open(path, "wb") as f:  # one PUT / multipart upload: visible only once complete
        f.write(data)
    return url


def remove(url: str, storage_options: dict | None = None, recursive: bool = False) -> None:
    fs, path = url_to_fs(url, storage_options)
    try:
        fs.rm(path, recursive=recursive)
    except FileNotFoundError:
        pass


def sha256_of(url: str, storage_options: dict | None = None) -> str:
    """Hex SHA-256 of a file's bytes, read in 4 MiB blocks (checkpoints are GBs)."""
    fs, path = url_to_fs(url, storage_options)
    h = hashlib.sha256()
    with fs.open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def local_copy(url: str, storage_options: dict | None = None) -> str:
    """A local path holding `url`'s bytes: the path itself when local, else a fresh temp file (for `torch.load`,
    decoders that need a path, and other readers that cannot take a file object)."""
    if not is_remote(url):
        return local_path(url)
    fs, path = url_to_fs(url, storage_options)
    dst = os.path.join(tempfile.mkdtemp(prefix="vidtok-copy-"), posixpath.basename(path) or "object")
    fs.get(path, dst)
    return dst


def arrow_filesystem(url: str, storage_options: dict | None = None):
    """`(path, pyarrow filesystem or None)` for Ray's readers and Ray Train's `storage_path`: local paths as they are,
    remote URLs without their scheme plus a pyarrow wrapper of the same fsspec filesystem (endpoint, credentials)."""
    if not is_remote(url):
        return local_path(url), None
    import pyarrow.fs as pafs  # here, not at the top: the decode child reads through this module without Arrow

    fs, path = url_to_fs(url, storage_options)
    return path, pafs.PyFileSystem(pafs.FSSpecHandler(fs))


@dataclass
class OutputLayout:
    """A job's output folder (local or object-store prefix); picklable (workers rebuild the filesystem)."""

    url: str
    storage_options: dict = field(default_factory=dict)
    retry: RetryPolicy = field(default_factory=RetryPolicy)  # writes, listings and reads (module docstring)

    def __post_init__(self):
        self.fs, self.root = url_to_fs(self.url, self.storage_options)
        self.root = self.root.rstrip("/")
        self.local = is_local_fs(self.fs)

    def __getstate__(self):
        return {"url": self.url, "storage_options": self.storage_options, "retry": self.retry}

    def __setstate__(self, state):
        self.url, self.storage_options, self.retry = state["url"], state["storage_options"], state["retry"]
        self.__post_init__()

    def call(self, fn, what: str):
        """`fn()` retried under this layout's policy while its error is transient."""
        return retry_call(fn, is_transient_error, self.retry, what)

    def path(self, *parts: str) -> str:
        """Path on `self.fs` (no scheme)."""
        return "/".join([self.root, *parts])

    def url_of(self, *parts: str) -> str:
        return join(self.url, *parts)

    def list(self, folder: str, suffix: str = ".parquet") -> list[str]:
        """Committed files in `folder` (sorted paths); temp files never match (module docstring)."""
        def ls():
            try:
                return (self.fs.ls(self.path(folder), detail=False) if not self.local else
                        [os.path.join(self.path(folder), n) for n in os.listdir(self.path(folder))])
            except FileNotFoundError:
                return []
        names = self.call(ls, f"list {self.url_of(folder)}")
        return sorted(n for n in names if n.endswith(suffix) and not posixpath.basename(n).startswith("."))

    def exists(self, *parts: str) -> bool:
        return self.call(lambda: self.fs.exists(self.path(*parts)), f"exists {self.url_of(*parts)}")

    def read_table(self, path: str, columns=None):
        """A committed Parquet file (a path on `self.fs`, as `list` returns): the `columns` it has (all if None)."""
        import pyarrow.parquet as pq

        def read():
            with self.fs.open(path, "rb") as f:
                pf = pq.ParquetFile(f)
                names = pf.schema_arrow.names
                return pf.read(columns=None if columns is None else [c for c in columns if c in names])
        return self.call(read, f"read {path}")

    def write_bytes(self, rel: str, data: bytes) -> str:
        """Atomically publish `data` at `<root>/<rel>` (retried under `self.retry`); returns the path on `self.fs`."""
        write_bytes(self.url_of(rel), data, self.storage_options, self.retry)
        return self.path(rel)

    def write_table(self, rel: str, table) -> str:
        import pyarrow.parquet as pq  # as above: Arrow only where tables are written

        buf = io.BytesIO()
        pq.write_table(table, buf, compression="zstd")
        return self.write_bytes(rel, buf.getvalue())

    def read_text(self, rel: str) -> str | None:
        return self.call(lambda: read_text(self.url_of(rel), self.storage_options), f"read {self.url_of(rel)}")

    def remove(self, rel: str, recursive: bool = False) -> None:
        self.call(lambda: remove(self.url_of(rel), self.storage_options, recursive=recursive),
                  f"remove {self.url_of(rel)}")
