"""A fault-injecting HTTP/1.1 proxy on loopback, put between drplan and an S3 endpoint.

``running_faultproxy(upstream)`` starts one on a free port of 127.0.0.1 and stops it on
exit; point the client at its :attr:`FaultProxy.endpoint_url` instead of the server's.
It understands enough HTTP to act per request on keep-alive connections (bodies by
``Content-Length`` or chunked, ``Expect: 100-continue``), so a :class:`FaultPlan` can
target one request: by method, by a substring of its path (``/data/``), the nth such
request, or at random with a seeded generator and a probability.

Faults (:class:`Fault`):

latency
    Wait before forwarding the request, or before sending the response.
reset
    Close the client's connection with a TCP RST (``SO_LINGER`` 0): before the request
    reaches the server, after the server answered (the request was carried out), or in
    the middle of the response body.
truncate
    Send the response's headers and part of its body, then close (FIN).
error
    Answer for the server: an S3 error (``500 InternalError``, ``503 SlowDown``) with its
    XML body, keeping the connection open or closing it.

Everything that passed through is in :attr:`FaultProxy.exchanges`, with the fault it
met (for a test's assertions and the torture report). The plan may be swapped while
requests run (:meth:`FaultProxy.set_plan`, :meth:`FaultProxy.clear`). Loopback only:
the proxy neither listens nor connects anywhere else.
"""

from __future__ import annotations

import contextlib
import random
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Literal
from urllib.parse import urlsplit

FaultKind = Literal["latency", "reset", "truncate", "error"]
Moment = Literal["request", "response", "before", "after", "mid-response"]

MAX_HEAD = 64 * 1024  # bytes of request or status line and headers
UPSTREAM_TIMEOUT = 60.0  # seconds to wait for the server
JOIN_TIMEOUT = 5.0  # seconds for connection threads to end when the proxy stops
_REASONS = {500: "Internal Server Error", 503: "Slow Down"}
_MESSAGES = {
    "InternalError": "We encountered an internal error. Please try again.",
    "SlowDown": "Please reduce your request rate.",
}


@dataclass(frozen=True)
class Fault:
    """What to do to one request; build one with the class methods."""

    kind: FaultKind
    when: Moment = "request"
    seconds: float = 0.0  # latency
    keep: float = 0.5  # share of the response body sent before a truncation or a reset
    status: int = 503  # error
    code: str = "SlowDown"  # error
    close: bool = False  # error: close the connection after answering

    @classmethod
    def latency(cls, seconds: float, when: Literal["request", "response"] = "request") -> Fault:
        return cls("latency", when, seconds=seconds)

    @classmethod
    def reset(cls, when: Literal["before", "after", "mid-response"], keep: float = 0.5) -> Fault:
        return cls("reset", when, keep=keep)

    @classmethod
    def truncate(cls, keep: float = 0.5) -> Fault:
        return cls("truncate", "response", keep=keep)

    @classmethod
    def error(cls, status: int, code: str, *, close: bool = False) -> Fault:
        return cls("error", "response", status=status, code=code, close=close)

    @property
    def label(self) -> str:
        """How the log names it: ``reset/after``, ``error/503 SlowDown``, ``latency/request 0.2s``."""
        if self.kind == "error":
            return f"error/{self.status} {self.code}"
        if self.kind == "latency":
            return f"latency/{self.when} {self.seconds:g}s"
        return f"{self.kind}/{self.when}" if self.kind == "reset" else self.kind


INTERNAL_ERROR = Fault.error(500, "InternalError")
SLOW_DOWN = Fault.error(503, "SlowDown")


@dataclass(frozen=True)
class Rule:
    """Requests a fault applies to: every filter given must match."""

    fault: Fault
    method: str | None = None  # GET, PUT, POST, HEAD, DELETE
    path: str | None = None  # a substring of the request target (path and query)
    nth: int | None = None  # only the nth request the filters above match (from 1)
    probability: float = 1.0  # of injecting into each request that matches
    times: int | None = None  # at most this many injections

    def matches(self, method: str, target: str) -> bool:
        return (self.method is None or self.method == method) and (
            self.path is None or self.path in target
        )


class FaultPlan:
    """Rules tried in order, the first that matches and fires wins; thread-safe."""

    def __init__(self, *rules: Rule, seed: int = 0) -> None:
        self.rules = rules
        self._random = random.Random(seed)
        self._seen = [0] * len(rules)
        self._fired = [0] * len(rules)
        self._lock = threading.Lock()

    def choose(self, method: str, target: str) -> Fault | None:
        """The fault for this request, if any. Every rule whose filters match counts the
        request (for ``nth``), whether or not a rule before it fires."""
        chosen: Fault | None = None
        with self._lock:
            for i, rule in enumerate(self.rules):
                if not rule.matches(method, target):
                    continue
                self._seen[i] += 1
                if chosen is not None:
                    continue
                if rule.nth is not None and self._seen[i] != rule.nth:
                    continue
                if rule.times is not None and self._fired[i] >= rule.times:
                    continue
                if rule.probability < 1.0 and self._random.random() >= rule.probability:
                    continue
                self._fired[i] += 1
                chosen = rule.fault
        return chosen


@dataclass(frozen=True)
class Exchange:
    """One request through the proxy: what it was, the fault it met, what came back."""

    method: str
    target: str
    fault: str | None = None  # Fault.label
    status: int | None = None  # of the answer sent (or begun); None: the client got none


@dataclass
class _Request:
    method: str
    target: str
    head: bytes
    headers: dict[str, str]
    body: bytes = b""


@dataclass
class _Response:
    status: int
    head: bytes
    headers: dict[str, str]
    body: bytes = b""


class _Closed(Exception):
    """The peer closed the connection (between requests: the normal end)."""


class _Stream:
    """Buffered reads from a socket, by line, by head and by length."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def _fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise _Closed
        self.buffer += data

    def until(self, marker: bytes, limit: int = MAX_HEAD) -> bytes:
        while (end := self.buffer.find(marker)) < 0:
            if len(self.buffer) > limit:
                raise ValueError("HTTP head too large")
            self._fill()
        end += len(marker)
        data, self.buffer = self.buffer[:end], self.buffer[end:]
        return data

    def exactly(self, size: int) -> bytes:
        while len(self.buffer) < size:
            self._fill()
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def rest(self) -> bytes:
        with contextlib.suppress(_Closed):
            while True:
                self._fill()
        data, self.buffer = self.buffer, b""
        return data

    def body(self, headers: dict[str, str]) -> bytes:
        """A message body as framed by its headers, framing included (relayed as is)."""
        if "chunked" in headers.get("transfer-encoding", "").lower():
            raw = b""
            while True:
                line = self.until(b"\r\n")
                raw += line
                size = int(line.split(b";")[0].strip(), 16)
                if size == 0:
                    while (trailer := self.until(b"\r\n")) != b"\r\n":
                        raw += trailer
                    return raw + b"\r\n"
                raw += self.exactly(size + 2)
        return self.exactly(int(headers.get("content-length", "0")))


def _parse_head(head: bytes) -> tuple[str, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    return lines[0], headers


def _reset(sock: socket.socket) -> None:
    """Close with RST, not FIN: the peer's next read fails with "connection reset"."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def _error_response(fault: Fault, request: _Request, seq: int, close: bool) -> bytes:
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{fault.code}</Code><Message>{_MESSAGES.get(fault.code, fault.code)}"
        f"</Message><Resource>{request.target.split('?')[0]}</Resource>"
        f"<RequestId>faultproxy-{seq}</RequestId></Error>"
    ).encode()
    if request.method == "HEAD":
        body = b""  # a HEAD answer has no body, errors included
    lines = [
        f"HTTP/1.1 {fault.status} {_REASONS.get(fault.status, 'Error')}",
        "Content-Type: application/xml",
        f"Content-Length: {len(body)}",
        f"x-amz-request-id: faultproxy-{seq}",
        f"Date: {time.strftime('%a, %d %b %Y %H:%M:%S GMT', time.gmtime())}",
        "Server: faultproxy",
    ]
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class FaultProxy:
    """A proxy from 127.0.0.1:<free port> to ``upstream`` (``http://127.0.0.1:PORT``)."""

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        if parts.hostname not in ("127.0.0.1", "localhost") or parts.port is None:
            raise ValueError(f"the fault proxy forwards to loopback only, not {upstream}")
        self.upstream = ("127.0.0.1", parts.port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.endpoint_url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._plan = FaultPlan()
        self._exchanges: list[Exchange] = []
        self._sockets: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._acceptor = threading.Thread(target=self._accept, name="faultproxy", daemon=True)

    # -- what a test uses ----------------------------------------------------------------------

    def set_plan(self, plan: FaultPlan) -> None:
        with self._lock:
            self._plan = plan

    def clear(self) -> None:
        """Pass everything through from now on."""
        self.set_plan(FaultPlan())

    @property
    def exchanges(self) -> list[Exchange]:
        with self._lock:
            return list(self._exchanges)

    def injected(self) -> Counter[str]:
        """How many of each fault were injected so far, by label."""
        return Counter(e.fault for e in self.exchanges if e.fault is not None)

    def start(self) -> None:
        self._acceptor.start()

    def stop(self) -> None:
        self._stopping.set()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() under way
        self._listener.close()
        with self._lock:
            sockets, threads = list(self._sockets), list(self._threads)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self._acceptor.join(JOIN_TIMEOUT)
        for thread in threads:
            thread.join(JOIN_TIMEOUT)

    # -- the proxy -----------------------------------------------------------------------------

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            thread = threading.Thread(target=self._serve, args=(client,), daemon=True)
            with self._lock:
                self._threads = [t for t in self._threads if t.is_alive()]
                self._threads.append(thread)
            thread.start()

    def _track(self, sock: socket.socket) -> socket.socket:
        with self._lock:
            self._sockets.add(sock)
        return sock

    def _serve(self, client: socket.socket) -> None:
        """Requests of one client connection, each on a new connection to the server (so a
        server closing an idle connection never looks like a fault of ours)."""
        self._track(client)
        try:
            source = _Stream(client)
            while not self._stopping.is_set() and self._exchange(source, client):
                pass
        except (_Closed, OSError, ValueError):
            pass
        finally:
            self._untrack(client)

    def _untrack(self, sock: socket.socket) -> None:
        with contextlib.suppress(OSError):
            sock.close()
        with self._lock:
            self._sockets.discard(sock)

    def _log(self, request: _Request, fault: Fault | None) -> int:
        """Record the request as it arrives (a test may look while it is held up)."""
        with self._lock:
            self._exchanges.append(
                Exchange(request.method, request.target, fault.label if fault else None)
            )
            return len(self._exchanges) - 1

    def _answered(self, seq: int, status: int) -> None:
        with self._lock:
            self._exchanges[seq] = replace(self._exchanges[seq], status=status)

    def _exchange(self, source: _Stream, client: socket.socket) -> bool:
        """Carry one request and its response; False when the client connection is done."""
        head = source.until(b"\r\n\r\n")
        line, headers = _parse_head(head)
        method, target, _ = line.split(" ", 2)
        request = _Request(method, target, head, headers)
        with self._lock:
            plan = self._plan
        fault = plan.choose(method, target)
        seq = self._log(request, fault)
        expects = headers.get("expect", "").lower() == "100-continue"

        if fault is not None and fault.kind == "error":
            if not expects:  # read it all, so the connection stays in step
                request.body = source.body(headers)
            self._answered(seq, fault.status)
            closing = fault.close or expects  # the body of a refused Expect may still come
            client.sendall(_error_response(fault, request, seq, closing))
            return not closing
        if fault is not None and fault.kind == "reset" and fault.when == "before":
            _reset(client)
            return False
        if fault is not None and fault.kind == "latency" and fault.when == "request":
            self._stopping.wait(fault.seconds)

        upstream = self._track(socket.create_connection(self.upstream, UPSTREAM_TIMEOUT))
        try:
            response = self._forward(request, source, client, _Stream(upstream), expects)
        finally:
            self._untrack(upstream)
        if fault is not None and fault.kind == "reset" and fault.when == "after":
            _reset(client)
            return False
        if fault is not None and fault.kind == "latency" and fault.when == "response":
            self._stopping.wait(fault.seconds)
        self._answered(seq, response.status)
        if fault is not None and fault.kind in ("truncate", "reset"):  # mid-response
            client.sendall(response.head + response.body[: int(len(response.body) * fault.keep)])
            if fault.kind == "reset":
                _reset(client)
            else:
                client.shutdown(socket.SHUT_RDWR)
            return False
        client.sendall(response.head + response.body)
        return "close" not in (
            headers.get("connection", "").lower(),
            response.headers.get("connection", "").lower(),
        )

    def _forward(
        self,
        request: _Request,
        source: _Stream,
        client: socket.socket,
        server: _Stream,
        expects: bool,
    ) -> _Response:
        """Send the request on, with its body; the server's response, read whole."""
        server.sock.sendall(request.head)
        if expects:
            interim = self._read_response(server, request.method)
            if interim.status != 100:  # refused before the body, which may still come: the
                interim.headers["connection"] = "close"  # connection ends after the answer
                return interim
            client.sendall(interim.head)
        request.body = source.body(request.headers)
        server.sock.sendall(request.body)
        response = self._read_response(server, request.method)
        while response.status == 100:  # an unasked-for 100 Continue: skipped, as clients do
            response = self._read_response(server, request.method)
        return response

    @staticmethod
    def _read_response(server: _Stream, method: str) -> _Response:
        head = server.until(b"\r\n\r\n")
        line, headers = _parse_head(head)
        status = int(line.split(" ", 2)[1])
        response = _Response(status, head, headers)
        if method == "HEAD" or status < 200 or status in (204, 304):
            return response
        if "content-length" in headers or "chunked" in headers.get("transfer-encoding", ""):
            response.body = server.body(headers)
        else:  # delimited by the end of the connection
            response.body = server.rest()
            response.headers["connection"] = "close"
        return response


@contextlib.contextmanager
def running_faultproxy(upstream: str, plan: FaultPlan | None = None) -> Iterator[FaultProxy]:
    """A proxy to ``upstream`` for the duration of the block."""
    proxy = FaultProxy(upstream)
    if plan is not None:
        proxy.set_plan(plan)
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.stop()


__all__ = [
    "INTERNAL_ERROR",
    "SLOW_DOWN",
    "Exchange",
    "Fault",
    "FaultPlan",
    "FaultProxy",
    "Rule",
    "running_faultproxy",
]
