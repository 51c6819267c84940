"""A fault-injecting HTTP proxy in front of the tests' moto S3 server: what a flaky S3-compatible store does.

    proxy = FaultProxy(s3_server.endpoint_url, seed=7, p_slowdown=0.1, outages=[Outage(after=40, seconds=5)]).start()
    ... storage.endpoint_url=proxy.endpoint_url ...
    proxy.stats  # {'requests': 212, 'slowdown_503': 19, 'internal_500': 8, 'cut': 11, 'refused': 57, ...}
    proxy.served  # {'/bucket/videos/a.mp4': 1234567, ...}: GET body bytes sent per object path (reads counted)

Faults, decided per request from one `random.Random(seed)` in arrival order (so a seed gives the same sequence of
decisions; which request gets which decision depends on the clients' timing):

* `p_slowdown`: answer 503 with S3's `SlowDown` XML error body, without forwarding (the request did not happen);
* `p_internal`: answer 500 `InternalError` the same way;
* `p_cut`: forward the request (the upload lands, the read happens), then send the response's headers with its full
  `Content-Length` and only half its body, and close the connection: a body cut half-way;
* outages: from the `after`-th request on, for `seconds`, every connection is reset at once (RST, no response): the
  store is unreachable, longer than a client's own retries.

`paths` limits the probabilistic faults to requests whose path contains that string, `Outage.paths` an outage.

Bounded: it injects at most `max_faults` probabilistic faults and nothing after `active_s` seconds; outages end by
themselves. Then it is a plain pass-through. The moto server does not check signatures, so requests are forwarded
with their own `Host` header and bytes unchanged.
"""

from __future__ import annotations

import http.client
import random
import socket
import struct
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

def proxy_options(endpoint: str, client_tries: int | None = None) -> dict:
    """Storage options that reach the moto server through a proxy at ``endpoint``. ``client_tries``: botocore's own
    attempts per request (the jobs use 3: `pipeline.storage.S3_CLIENT_CONFIG`); 1 where a test needs only its
    ``retry.*`` tries to run out through a long outage, and not each try's client-side retries (seconds each)."""
    opts = {"key": "testing", "secret": "testing", "client_kwargs": {"endpoint_url": endpoint}}
    if client_tries:
        opts["config_kwargs"] = {"retries": {"mode": "standard", "total_max_attempts": client_tries}}
    return opts


_ERROR_XML = ('<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{message}</Message>'
              '<RequestId>fault-{n}</RequestId></Error>')
_FAULTS = {"slowdown_503": (503, "SlowDown", "Please reduce your request rate."),
           "internal_500": (500, "InternalError", "We encountered an internal error. Please try again.")}


@dataclass
class Outage:
    """Reset every connection for `seconds`, starting at the `after`-th request (of those matching `paths`, when
    given: an outage of the inputs' prefix only, say)."""

    after: int
    seconds: float
    paths: str | None = None
    started: float | None = None
    seen: int = 0


@dataclass
class FaultProxy:
    upstream: str
    seed: int = 0
    p_slowdown: float = 0.0
    p_internal: float = 0.0
    p_cut: float = 0.0
    outages: list[Outage] = field(default_factory=list)
    max_faults: int = 1000
    active_s: float = 600.0
    paths: str | None = None  # probabilistic faults only for paths containing this (e.g. "/videos/")
    stats: Counter = field(default_factory=Counter)
    served: Counter = field(default_factory=Counter)  # GET body bytes sent, by object path (no query string)
    gets: Counter = field(default_factory=Counter)  # GET requests answered with a body, by object path

    def start(self) -> "FaultProxy":
        self._rng = random.Random(self.seed)
        self._lock = threading.Lock()
        self._t0 = time.monotonic()
        self.decisions: list[str] = []  # per request, in arrival order
        up = urlsplit(self.upstream)
        self._up = (up.hostname, up.port)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as clients pool connections

            def log_message(self, *args):  # quiet
                pass

            def _serve(self):
                proxy._handle(self)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _serve

        self._server = _QuietServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True, name="fault-proxy")
        self._thread.start()
        return self

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()

    @property
    def faults(self) -> int:
        return sum(v for k, v in self.stats.items() if k in ("slowdown_503", "internal_500", "cut", "refused"))

    # ---------------------------------------------------------------------------------------------------- decisions
    def _decide(self, path: str) -> str:
        with self._lock:
            self.stats["requests"] += 1
            now = time.monotonic()
            for o in self.outages:
                if o.paths is not None and o.paths not in path:
                    continue
                o.seen += 1
                if o.started is None and o.seen >= o.after:
                    o.started = now
                if o.started is not None and now - o.started < o.seconds:
                    self.decisions.append("refused")
                    return "refused"
            if self.paths is not None and self.paths not in path:
                return "pass"
            x = self._rng.random()  # drawn for every request, so the sequence depends on the seed only
            kind = "pass"
            budget = self.stats["slowdown_503"] + self.stats["internal_500"] + self.stats["cut"] < self.max_faults
            if budget and now - self._t0 < self.active_s:
                if x < self.p_slowdown:
                    kind = "slowdown_503"
                elif x < self.p_slowdown + self.p_internal:
                    kind = "internal_500"
                elif x < self.p_slowdown + self.p_internal + self.p_cut:
                    kind = "cut"
            self.decisions.append(kind)
            return kind

    # ------------------------------------------------------------------------------------------------------ serving
    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        body = _read_body(h)
        kind = self._decide(h.path)
        if kind == "refused":
            self.stats["refused"] += 1
            _reset(h)
            return
        if kind in _FAULTS:
            self.stats[kind] += 1
            status, code, message = _FAULTS[kind]
            data = _ERROR_XML.format(code=code, message=message, n=self.stats["requests"]).encode()
            h.send_response(status)
            for k, v in (("Content-Type", "application/xml"), ("Content-Length", str(len(data))),
                         ("x-amz-request-id", f"fault-{self.stats['requests']}")):
                h.send_header(k, v)
            h.end_headers()
            if h.command != "HEAD":
                h.wfile.write(data)
            return
        conn = http.client.HTTPConnection(*self._up, timeout=60)
        try:
            conn.request(h.command, h.path, body=body, headers={k: v for k, v in h.headers.items()
                                                                if k.lower() != "transfer-encoding"})
            resp = conn.getresponse()
            data = resp.read()
        finally:
            conn.close()
        cut = kind == "cut" and h.command != "HEAD" and len(data) >= 2
        self.stats["cut" if cut else "forwarded"] += 1
        h.send_response(resp.status, resp.reason)
        for k, v in resp.getheaders():
            if k.lower() not in ("content-length", "transfer-encoding", "connection", "date", "server"):
                h.send_header(k, v)
        # a HEAD answer has no body but the object's length (what s3fs reads as the size)
        h.send_header("Content-Length", resp.getheader("Content-Length", "0") if h.command == "HEAD" else str(len(data)))
        h.end_headers()
        if h.command == "HEAD":
            return
        if h.command == "GET":
            with self._lock:
                key = urlsplit(h.path).path
                self.served[key] += len(data) // 2 if cut else len(data)
                self.gets[key] += 1
        if cut:
            h.wfile.write(data[: len(data) // 2])
            h.wfile.flush()
            _reset(h)
            return
        h.wfile.write(data)


def _read_body(h: BaseHTTPRequestHandler) -> bytes | None:
    if h.headers.get("Transfer-Encoding", "").lower() == "chunked":
        parts = []
        while True:
            size = int(h.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while h.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                return b"".join(parts)
            parts.append(h.rfile.read(size))
            h.rfile.readline()
    n = int(h.headers.get("Content-Length") or 0)
    return h.rfile.read(n) if n else None


def _reset(h: BaseHTTPRequestHandler) -> None:
    """Close with RST (SO_LINGER 0): the client sees 'connection reset', as from a store that went away."""
    try:
        h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    h.close_connection = True
    try:
        h.rfile.close()  # the file object holds a reference: the descriptor closes (with RST) only without it
        h.connection.close()
    except OSError:
        pass


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):  # a reset connection is the point, not an error
        pass
