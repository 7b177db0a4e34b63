"""The web server run in a thread of its own (uvicorn): bound before it starts, so that a
port in use is a one-line error and the address is known at once; HTTPS with the plan's
certificate; ``X-Forwarded-*`` believed only from the plan's trusted proxies."""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
import time
from typing import TYPE_CHECKING

from drplan.errors import UsageError

if TYPE_CHECKING:
    from fastapi import FastAPI

    from drplan.plan.model.web import Web

START_TIMEOUT = 30.0


class WebServer:
    def __init__(self, app: FastAPI, listen: str, web: Web) -> None:
        import uvicorn  # noqa: PLC0415

        host, _, port = listen.rpartition(":")
        host = host.strip("[]") or "127.0.0.1"
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.sock.bind((host, int(port)))
        except OSError as exc:
            self.sock.close()
            raise UsageError(f"cannot listen on {listen}: {exc.strerror}",
                             hint="choose another address with --listen or web.listen") from None  # fmt: skip
        self.sock.listen(128)
        self.tls = web.tls is not None
        if web.tls is not None:
            try:
                ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(
                    web.tls.certificate, web.tls.key
                )
            except (OSError, ssl.SSLError) as exc:
                self.sock.close()
                raise UsageError(f"web.tls: cannot use the certificate and key: {exc}",
                                 hint="check both paths and that the key matches") from None  # fmt: skip
        config = uvicorn.Config(
            app, log_level="warning", access_log=False, lifespan="off", timeout_graceful_shutdown=5,
            proxy_headers=True, forwarded_allow_ips=",".join(web.trusted_proxies) or "",
            ssl_certfile=web.tls.certificate if web.tls else None,
            ssl_keyfile=web.tls.key if web.tls else None,
        )  # fmt: skip
        self.app = app
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._run, name="drplan-web", daemon=True)

    @property
    def address(self) -> str:
        host, port = self.sock.getsockname()[:2]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.address}"

    def start(self) -> None:
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise UsageError("the web server did not start", hint="its log says why")
            time.sleep(0.01)

    def stop(self) -> None:
        changes = getattr(self.app.state, "changes", None)
        if changes is not None:  # the live streams end, so that the server can
            changes.stopping.set()
        self.server.should_exit = True
        self._thread.join(10)
        self.sock.close()

    def _run(self) -> None:
        asyncio.run(self.server.serve(sockets=[self.sock]))
