"""Connecting to Ray: the cluster a job was submitted to, or a private local Ray for the embedded defaults and tests.

This machine (and many laptops) is shared, so a local Ray gets its own `_temp_dir` and a small object store, and the
code only ever shuts down the Ray it started itself (never `ray stop`, which kills every Ray on the host); its
session folder is removed once it stopped.

`ray_session` is how a job holds Ray: it starts or joins it (`init_ray`; a failure to start is `RayStartError`,
exit code 4, with one line saying what to try) and, unless `ray.console_logs=true`, keeps Ray's own console output
(Ray Data's progress bars and execution lines, Ray-internal log lines, the workers' log lines) off the console and in
one file (`RayLogs.path`), which the job then keeps under its output (`_logs/`), so the console shows the job's own
lines: start, plan, progress, failures, summary, next step.
"""

from __future__ import annotations

import glob
import logging
import os
import re
import shutil
import sys
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path

from pipeline.errors import RayStartError
from pipeline.storage import is_remote

log = logging.getLogger(__name__)
LOCAL_START_ATTEMPTS = 2  # a private Ray that times out at start on a loaded machine usually starts the second time
WORKER_LOG_CAP_BYTES = 16 << 20  # workers' log lines copied into RayLogs.path at the end of a private local Ray

DEFAULT_LOCAL_OBJECT_STORE_BYTES = 1 << 30  # 1 GiB: plenty for the sample corpus; bounded on shared machines


def local_temp_dir() -> str:
    """A short per-user temp dir for a private local Ray (AF_UNIX socket paths must stay under ~107 chars)."""
    base = Path(os.environ.get("VIDTOK_RAY_TMP", Path(tempfile.gettempdir()) / f"vtray-{os.getuid()}"))
    base.mkdir(parents=True, exist_ok=True)
    return tempfile.mkdtemp(prefix="r", dir=base)


def init_ray(
    address: str | None = None,
    *,
    num_cpus: int | None = None,
    num_gpus: int | None = None,
    object_store_memory: int | None = None,
    temp_dir: str | None = None,
    runtime_env: dict | None = None,
    log_to_driver: bool = True,
) -> bool:
    """Connect to Ray; returns True if this call started a private local Ray (the caller shuts it down).

    address: None -> `RAY_ADDRESS` if set (a job submitted with `ray job submit` has it), else start a local Ray.
             "local" forces a new local Ray; anything else ("auto", "ray://host:10001", "host:6379") connects.
    """
    import ray

    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS") or "local"
    if address != "local":
        log.info("connecting to Ray at %s", address)
        _check_reachable(address)
        try:
            ray.init(address=address, runtime_env=runtime_env, log_to_driver=log_to_driver)
        except Exception as e:
            raise RayStartError(f"cannot connect to Ray at {address} ({_line(e)}): check that the cluster is up "
                                "(`ray status` there), the address (ray.address= or RAY_ADDRESS) and, with Ray's "
                                "token authentication, RAY_AUTH_MODE=token and the token") from e
        return False
    last = None
    for attempt in range(LOCAL_START_ATTEMPTS):
        temp_dir = temp_dir or local_temp_dir()
        os.makedirs(temp_dir, exist_ok=True)
        log.info("starting a private local Ray (temp dir %s)", temp_dir)
        try:
            ray.init(
                num_cpus=num_cpus,
                num_gpus=num_gpus,
                object_store_memory=object_store_memory or DEFAULT_LOCAL_OBJECT_STORE_BYTES,
                include_dashboard=False,
                _temp_dir=temp_dir,
                runtime_env=runtime_env,
                log_to_driver=log_to_driver,
            )
            return True
        except Exception as e:  # e.g. "The current node timed out during startup" on a loaded machine
            last = e
            try:
                ray.shutdown()
            finally:
                shutil.rmtree(temp_dir, ignore_errors=True)  # the same folder again: the caller may remove it
            if attempt + 1 < LOCAL_START_ATTEMPTS:
                log.warning("the private local Ray did not start (%s): trying once more", _line(e))
    raise RayStartError(f"a private local Ray did not start ({_line(last)}), twice: on a loaded or shared machine "
                        "wait a little and run again; otherwise lower ray.num_cpus / ray.object_store_mb, free "
                        "/dev/shm and the temp disk, set VIDTOK_RAY_TMP to a short local folder, or join a running "
                        "Ray with ray.address=") from last


def _check_reachable(address: str, timeout_s: float = 10.0) -> None:
    """A `host:port` address must accept a TCP connection: `ray.init` would otherwise retry for minutes."""
    import socket

    host, _, port = address.rpartition(":")
    if is_remote(address) or not host or not port.isdigit():
        return  # "auto", "ray://...": Ray resolves these itself
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as e:
        raise RayStartError(f"nothing answers at ray.address={address} ({e}): start the cluster's head there "
                            "(`ray start --head`), fix the address, or leave ray.address unset for a private "
                            "local Ray") from None


def _line(e: BaseException) -> str:
    return f"{type(e).__name__}: " + (str(e).strip().splitlines() or [""])[0][:200]


# Lines of this project's own loggers (`LOG_FORMAT`: "... LEVEL pipeline.x: ..."), also when a Ray worker's line
# is forwarded to the driver with its "(Actor pid=...)" prefix: the ones RayLogs keeps on the console.
OWN_LINE = re.compile(r"\b(?:INFO|WARNING|ERROR|CRITICAL) (?:pipeline|vidtok)[\w.]*: ")
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class RayLogs:
    """Ray's own console output, sent to one file (`path`) unless `console` (module docstring).

    Inside the `with` block the process's stdout and stderr file descriptors point at a pipe whose reader writes
    every line to the file, so everything printed there goes to it whatever its origin (Python loggers, tqdm bars,
    C++ log lines of the core worker, the workers' lines Ray forwards to the driver); the lines of this project's
    loggers among them (`OWN_LINE`: a training worker's step lines, say) are also copied to the console. The root
    logger's console handlers (the driver's own lines: plan, progress, failures) point at a copy of the original
    stderr meanwhile, so they reach the console directly."""

    def __init__(self, console: bool = False):
        self.console = console
        fd, self.path = tempfile.mkstemp(prefix="vidtok-ray-", suffix=".log")
        os.close(fd)
        self._saved: dict[int, int] = {}
        self._handlers: list[logging.StreamHandler] = []
        self._console_stream = None
        self._pump: threading.Thread | None = None

    def __enter__(self) -> "RayLogs":
        if self.console:
            return self
        import ray.data

        ray.data.DataContext.get_current().enable_progress_bars = False  # bars in a log file are noise
        sys.stdout.flush()
        sys.stderr.flush()
        self._saved = {fd: os.dup(fd) for fd in (1, 2)}
        self._console_stream = os.fdopen(os.dup(self._saved[2]), "w", buffering=1)
        for h in logging.getLogger().handlers:
            if isinstance(h, logging.StreamHandler) and getattr(h, "stream", None) in (sys.stderr, sys.stdout):
                h.setStream(self._console_stream)
                self._handlers.append(h)
        read_end, write_end = os.pipe()
        self._pump = threading.Thread(target=self._copy, args=(read_end,), name="RayLogs", daemon=True)
        self._pump.start()
        for fd in (1, 2):
            os.dup2(write_end, fd)
        os.close(write_end)
        return self

    def _copy(self, read_end: int) -> None:
        with os.fdopen(read_end, "rb") as src, open(self.path, "ab", buffering=0) as out:
            for line in src:
                out.write(line)
                text = _ANSI.sub("", line.decode("utf-8", "replace"))
                if OWN_LINE.search(text):
                    try:
                        self._console_stream.write(text)
                    except (ValueError, OSError):  # the console copy is closed: the file has the line
                        pass

    def __exit__(self, *exc) -> None:
        if not self._saved:
            return
        sys.stdout.flush()
        sys.stderr.flush()
        for fd, saved in self._saved.items():
            os.dup2(saved, fd)  # the pipe's last writers (fds 1, 2) are gone: the pump reads to its end
            os.close(saved)
        self._saved = {}
        if self._pump is not None:
            self._pump.join(timeout=10)
        for h in self._handlers:
            h.setStream(sys.stderr)
        self._handlers = []
        self._console_stream.close()

    def add_worker_logs(self, temp_dir: str) -> None:
        """Append the workers' log files of a private Ray's session (before it is removed), up to a cap."""
        left = WORKER_LOG_CAP_BYTES
        with open(self.path, "ab") as out:
            for f in sorted(glob.glob(os.path.join(temp_dir, "session_*", "logs", "worker-*.err"))):
                if left <= 0 or os.path.getsize(f) == 0:
                    continue
                with open(f, "rb") as src:
                    data = src.read(left)
                out.write(f"\n==> {os.path.basename(f)} <==\n".encode() + data)
                left -= len(data)

    def read(self) -> bytes:
        with open(self.path, "rb") as f:
            return f.read()

    def keep(self, write_bytes) -> None:
        """Hand the file's bytes to `write_bytes` (e.g. a layout's `_logs/<run>.log` writer) if there are any, then
        remove the local file; `write_bytes=None` (a job without an output folder): leave the file, log its path.
        Never raises: the logs are informational."""
        if write_bytes is None:
            if not self.console and os.path.getsize(self.path):
                log.info("Ray's own output of this run: %s", self.path)
                return
            write_bytes = lambda data: None  # noqa: E731  (nothing to keep: the empty file goes below)
        try:
            data = self.read()
            if data.strip():
                write_bytes(data)
        except Exception as e:
            log.warning("Ray's log file %s not kept (%s)", self.path, e)
            return
        try:
            os.remove(self.path)
        except OSError:
            pass


@contextmanager
def ray_session(ray_cfg, logs: RayLogs, num_cpus: int | None = None):
    """Start or join Ray for one job (`ray_cfg`: a `pipeline.config.RayConfig`), for the `with` block.

    Ray's console output goes to the `logs` file unless `ray_cfg.console_logs`; a private local Ray is shut down
    at the end and its session folder removed (its workers' logs copied into the `logs` file first)."""
    import ray

    with logs:
        temp_dir = None if ray_cfg.address or os.environ.get("RAY_ADDRESS") else local_temp_dir()
        started = init_ray(ray_cfg.address, num_cpus=num_cpus if num_cpus is not None else ray_cfg.num_cpus,
                           object_store_memory=ray_cfg.object_store_mb << 20, temp_dir=temp_dir)
        try:
            yield
        finally:
            if started:
                ray.shutdown()
                logs.add_worker_logs(temp_dir)
                shutil.rmtree(temp_dir, ignore_errors=True)
            elif temp_dir:
                shutil.rmtree(temp_dir, ignore_errors=True)
