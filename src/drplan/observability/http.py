"""The daemon's HTTP endpoints: ``/metrics`` (Prometheus), ``/status`` (what ``drplan
status --json`` prints), ``/healthz`` (the process answers) and ``/readyz`` (the plan
is loaded, the catalog answers and the locations have been read once)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import CollectorRegistry

DEFAULT_LISTEN = "127.0.0.1:9760"


class Endpoints:
    def __init__(
        self,
        listen: str,
        registry: CollectorRegistry,
        ready: Callable[[], str | None],  # None when ready, else why not
        status: Callable[[], dict[str, Any] | None],
    ) -> None:
        host, _, port = listen.rpartition(":")
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner._answer(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # scrapes every few seconds would drown the daemon's own log

        self.registry = registry
        self.ready = ready
        self.status = status
        self.server = ThreadingHTTPServer((host or "127.0.0.1", int(port)), Handler)
        self.server.daemon_threads = True
        self._thread = threading.Thread(
            target=self.server.serve_forever, name="drplan-http", daemon=True
        )

    @property
    def address(self) -> str:
        host, port = self.server.server_address[:2]
        return f"{host!s}:{port}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _answer(self, request: BaseHTTPRequestHandler) -> None:
        path = request.path.split("?", 1)[0]
        if path == "/metrics":
            self._send(request, 200, generate_latest(self.registry), CONTENT_TYPE_LATEST)
        elif path == "/healthz":
            self._send(request, 200, b"ok\n", "text/plain")
        elif path == "/readyz":
            why = self.ready()
            body = b"ready\n" if why is None else f"not ready: {why}\n".encode()
            self._send(request, 200 if why is None else 503, body, "text/plain")
        elif path == "/status":
            status = self.status()
            if status is None:
                self._send(request, 503, b'{"error": "not assessed yet"}\n', "application/json")
            else:
                body = json.dumps(status, indent=2).encode() + b"\n"
                self._send(request, 200, body, "application/json")
        else:
            self._send(request, 404, b"not found: /metrics, /status, /healthz, /readyz\n",
                       "text/plain")  # fmt: skip

    @staticmethod
    def _send(request: BaseHTTPRequestHandler, code: int, body: bytes, kind: str) -> None:
        request.send_response(code)
        request.send_header("Content-Type", kind)
        request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        request.wfile.write(body)
