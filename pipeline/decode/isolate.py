"""Run a function in a reusable child process with a per-call time limit.

Why: decord can hang forever or leak memory on some inputs (dmlc/decord issues #269, #363, #157, #208) and a C
decoder can crash the process. The decode stage runs thousands of files in one long-lived Ray actor, so each file is
decoded in a child process that the parent kills (SIGKILL) when the time limit passes or when it dies, and that is
recycled after ``max_tasks`` calls or when its resident memory grows past ``max_rss_bytes`` (leaks stay bounded).

The child is started with ``spawn`` (never ``fork``: forking a threaded Ray worker can deadlock) and imports the
decode stack once; later calls reuse it, so isolation costs a pipe round trip per file, not an interpreter start.

Two kinds of call. ``call`` runs a function and sends its return value back. ``stream`` runs a generator function
and sends its items one by one with credit-based backpressure: the child may run at most ``credit`` items ahead of
what the parent's consumer has taken, then it waits (the generator is suspended at its ``yield``), so a decode of a
two-hour video holds ``credit`` windows in the pipe, not the video. The time limit of a stream is on *progress*: the
parent waits at most ``timeout_s`` for each next item while its consumer is asking for one; time the consumer spends
elsewhere (Ray backpressure downstream) is not counted. A consumer that abandons a stream early gets the child
killed and replaced (the cheapest way back to a clean pipe; it does not happen in normal operation).
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import threading
import time
import traceback
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from .status import DecoderUnavailable

log = logging.getLogger(__name__)


@dataclass
class CallOutcome:
    """``kind``: ``ok`` (``value`` holds the return value), ``error`` (``value`` is the exception the function
    raised, or a string when it could not be pickled), ``timeout`` or ``crashed`` (``message`` says how)."""

    kind: str
    value: Any = None
    message: str = ""


def _send_error(conn, e: BaseException) -> None:
    try:
        conn.send(("error", e))
    except Exception:  # the exception itself does not pickle
        conn.send(("error", f"{type(e).__name__}: {e}\n{traceback.format_exc()}"))


def _child_stream(conn, call_id: int, credit: int, fn, args, kwargs) -> None:
    sent = taken = 0

    def read_credit(block: bool) -> None:
        nonlocal taken
        while block or conn.poll(0):
            msg = conn.recv()
            if msg is None:
                raise EOFError
            if msg[0] == "more" and msg[1] == call_id:
                taken = max(taken, msg[2])
            block = False

    for item in fn(*args, **kwargs):
        # Credit messages are read only here, so at most `credit` of them wait unread in the pipe: neither side can
        # block writing to the other while that one is blocked writing back.
        while sent - taken >= credit:  # the parent's consumer is `credit` items behind: wait for it
            read_credit(block=True)
        conn.send(("item", item))
        sent += 1
    conn.send(("end", None))


def _child_main(conn, warmup: Callable[[], None] | None) -> None:
    if warmup is not None:
        try:
            warmup()
        except BaseException as e:  # the decode stack does not load here: tell the parent why, then exit
            conn.send(("broken", f"{type(e).__name__}: {e}"))
            return
    conn.send(("ready", os.getpid()))
    while True:
        try:
            msg = conn.recv()
        except EOFError:
            return
        if msg is None:
            return
        try:
            if msg[0] == "call":
                conn.send(("ok", msg[1](*msg[2], **msg[3])))
            elif msg[0] == "stream":
                _child_stream(conn, *msg[1:])
            # else: a late "more" of a stream that already ended: nothing to do
        except EOFError:
            return
        except BaseException as e:  # report everything, the parent decides what it means
            _send_error(conn, e)


def _rss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class IsolatedRunner:
    """One child process, used for one call at a time (calls from several threads are serialised)."""

    def __init__(self, max_tasks: int = 500, max_rss_bytes: int = 4 << 30, start_timeout_s: float = 120.0,
                 warmup: Callable[[], None] | None = None):
        self.max_tasks, self.max_rss_bytes, self.start_timeout_s = max_tasks, max_rss_bytes, start_timeout_s
        self.warmup = warmup
        self._proc = None
        self._conn = None
        self._tasks = 0
        self._calls = 0  # stream ids: a late credit message of an earlier stream is told apart
        self._lock = threading.Lock()
        self.restarts = 0  # how many children were killed or recycled (for tests and logs)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def _start(self) -> None:
        ctx = mp.get_context("spawn")
        parent, child = ctx.Pipe(duplex=True)
        proc = ctx.Process(target=_child_main, args=(child, self.warmup), daemon=True, name="vidtok-decode")
        proc.start()
        child.close()
        if not parent.poll(self.start_timeout_s):
            proc.kill()
            proc.join()
            raise RuntimeError(f"isolated decode process did not start within {self.start_timeout_s}s")
        try:
            kind, value = parent.recv()
        except (EOFError, OSError):
            proc.join(timeout=10)
            kind, value = "broken", f"the process exited with code {proc.exitcode} while loading the decoders"
        if kind == "broken":
            proc.join(timeout=10)
            parent.close()
            raise DecoderUnavailable(f"the decode stack does not load: {value}")
        self._proc, self._conn, self._tasks = proc, parent, 0

    def _stop(self, kill: bool) -> None:
        if self._proc is None:
            return
        try:
            if kill:
                self._proc.kill()
            else:
                self._conn.send(None)
            self._proc.join(timeout=10)
            if self._proc.is_alive():
                self._proc.kill()
                self._proc.join()
        except (OSError, ValueError):
            pass
        finally:
            self._conn.close()
            self._proc, self._conn = None, None
            self.restarts += 1

    def call(self, fn: Callable, *args, timeout_s: float, **kwargs) -> CallOutcome:
        """Run ``fn(*args, **kwargs)`` in the child; never raises for anything the child does."""
        with self._lock:
            self._ensure_started()
            t0 = time.monotonic()
            try:
                self._conn.send(("call", fn, args, kwargs))
                ready = self._conn.poll(timeout_s)
            except (OSError, EOFError) as e:
                self._stop(kill=True)
                return CallOutcome("crashed", message=f"decode process lost: {e}")
            if not ready:
                pid = self.pid
                self._stop(kill=True)
                return CallOutcome("timeout", message=f"no result within {timeout_s:g}s (process {pid} killed)")
            try:
                kind, value = self._conn.recv()
            except (EOFError, OSError):
                return self._lost(t0)
            self._after_call()
            return CallOutcome(kind, value)

    def _ensure_started(self) -> None:
        if self._proc is None or not self._proc.is_alive():
            if self._proc is not None:
                self._stop(kill=True)
            self._start()

    def _lost(self, t0: float) -> CallOutcome:
        self._proc.join(timeout=5)
        code = self._proc.exitcode
        self._stop(kill=True)
        how = f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"
        return CallOutcome("crashed", message=f"decode process died ({how}) after {time.monotonic() - t0:.1f}s")

    def stream(self, fn: Callable, *args, timeout_s: float, credit: int = 2, **kwargs) -> Iterator[Any]:
        """Run the generator ``fn(*args, **kwargs)`` in the child and yield its items as they come, then one
        final ``CallOutcome`` (``ok`` with ``value=None`` at the end of the generator, else ``error`` / ``timeout`` /
        ``crashed``). ``timeout_s``: the longest wait for any next item. Never raises for anything the child does."""
        with self._lock:
            self._ensure_started()
            self._calls += 1
            call_id, t0, taken, finished = self._calls, time.monotonic(), 0, False
            try:
                try:
                    self._conn.send(("stream", call_id, credit, fn, args, kwargs))
                except (OSError, EOFError) as e:
                    self._stop(kill=True)
                    finished = True
                    yield CallOutcome("crashed", message=f"decode process lost: {e}")
                    return
                while True:
                    try:
                        ready = self._conn.poll(timeout_s)
                    except (OSError, EOFError):
                        ready = True  # recv below reports the loss
                    if not ready:
                        pid = self.pid
                        self._stop(kill=True)
                        finished = True
                        yield CallOutcome("timeout", message=f"no progress for {timeout_s:g}s after "
                                                             f"{time.monotonic() - t0:.1f}s (process {pid} killed)")
                        return
                    try:
                        kind, value = self._conn.recv()
                    except (EOFError, OSError):
                        finished = True
                        yield self._lost(t0)
                        return
                    if kind != "item":
                        finished = True
                        self._after_call()
                        yield CallOutcome("ok" if kind == "end" else kind, value)
                        return
                    yield value
                    taken += 1
                    self._conn.send(("more", call_id, taken))
            finally:
                if not finished and self._proc is not None:  # the consumer stopped early: the child is mid-stream
                    self._stop(kill=True)

    def _after_call(self) -> None:
        self._tasks += 1
        if self._tasks >= self.max_tasks or _rss_bytes(self._proc.pid) > self.max_rss_bytes:
            self._stop(kill=False)  # recycle: bounded leaks, fresh decoder state

    def close(self) -> None:
        with self._lock:
            self._stop(kill=False)

    def __del__(self):  # best effort; atexit in decode.py closes the shared runners
        try:
            if self._proc is not None:
                self._proc.kill()
        except Exception:
            pass
