"""How the web server is reached: over HTTPS with the plan's certificate (cookies Secure,
HSTS), and behind a proxy whose `X-Forwarded-*` headers are believed only when the plan
trusts it, so that the audit trail and the login throttle see the real client."""

from __future__ import annotations

import json
import ssl
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.conftest import Result
from tests.fixtures.receivers import self_signed
from tests.fixtures.web import PASSWORD, _world

Run = Callable[..., Result]


def test_https_with_the_plans_certificate_and_secure_cookies(
    run: Run, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    cert, key = self_signed(tmp_path)
    made = _world(run, monkeypatch, tmp_path, {"tls": {"certificate": str(cert), "key": str(key)}})
    world = next(made)
    try:
        assert world.url.startswith("https://127.0.0.1:")
        trusting = ssl.create_default_context(cafile=str(cert))
        secure = httpx.Client(base_url=world.url, verify=trusting, timeout=30)
        assert secure.get("/healthz").text == "ok\n"
        world.user("ann", "--role", "ic")
        done = secure.post("/api/v1/login", json={"name": "ann", "password": PASSWORD})
        assert done.status_code == 200, done.text
        cookie = done.headers["set-cookie"]
        assert "; secure" in cookie.lower()
        assert "httponly" in cookie.lower()
        assert done.headers["strict-transport-security"] == "max-age=31536000"
        plain = world.url.replace("https://", "http://")
        with pytest.raises(httpx.HTTPError):  # no plain HTTP on the TLS port
            httpx.get(f"{plain}/healthz", timeout=10).raise_for_status()
        with pytest.raises(httpx.ConnectError):  # nor a certificate nobody vouches for
            httpx.get(f"{world.url}/healthz", timeout=10)
    finally:
        made.close()


@pytest.mark.parametrize("trusted", [True, False])
def test_forwarded_headers_are_believed_from_a_trusted_proxy_only(
    run: Run, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, trusted: bool
) -> None:
    web = {"trusted_proxies": ["127.0.0.1/32"]} if trusted else {}
    made = _world(run, monkeypatch, tmp_path, web)
    world = next(made)
    try:
        world.user("ann", "--role", "ic")
        forwarded = {"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https"}
        client = httpx.Client(base_url=world.url, headers=forwarded, timeout=30)
        failed = client.post("/api/v1/login", json={"name": "ann", "password": "wrong password!"})
        assert failed.status_code == 401
        done = client.post("/api/v1/login", json={"name": "ann", "password": PASSWORD})
        assert done.status_code == 200
        trail = [json.loads(line) for line in world.run("audit", "list", "--json").out.splitlines()]
        sources = {
            e["kind"]: e["data"].get("source") for e in trail if e["kind"].startswith("login")
        }
        client_ip = "203.0.113.9" if trusted else "127.0.0.1"
        assert sources["login.failed"] == sources["login"] == client_ip
        # Secure and HSTS follow the scheme the client used: https at the trusted proxy.
        assert ("; secure" in done.headers["set-cookie"].lower()) is trusted
        assert ("strict-transport-security" in done.headers) is trusted
    finally:
        made.close()
