"""Login through the plan's OpenID Connect provider: the authorization code flow with
PKCE (RFC 7636) and a nonce, the ID token's signature checked against the provider's
published keys (joserfc, Authlib's JOSE library) and its issuer, audience, expiry and
nonce checked against ours.

What the login started with (state, nonce, the PKCE verifier, where to go next) waits in
a short-lived HttpOnly cookie scoped to the login's own paths; the callback is refused
unless the provider sends back that state. Who logged in becomes a principal from the ID
token's ``email`` and groups claim, through the plan's roles and grants
(:func:`drplan.web.accounts.granted`); someone the plan gives nothing to is refused.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import httpx
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from drplan.plan.model.web import Oidc
from drplan.web.problems import Problem

PENDING_COOKIE = "drplan_oidc"
PENDING_SECONDS = 600  # a login not finished in 10 minutes starts again
DISCOVERY_SECONDS = 3600  # the provider's metadata and keys are read again after this
TIMEOUT = 10.0


@dataclass
class Provider:
    """One provider, its metadata and keys read when first needed and kept a while."""

    config: Oidc
    _metadata: dict[str, Any] = field(default_factory=dict)
    _read_at: float = 0.0

    def metadata(self) -> dict[str, Any]:
        if not self._metadata or time.monotonic() - self._read_at > DISCOVERY_SECONDS:
            url = f"{self.config.issuer}/.well-known/openid-configuration"
            found = _get_json(url)
            if found.get("issuer") != self.config.issuer:
                raise Problem(503, f"the OIDC provider at {self.config.issuer} says its issuer"
                              f" is {found.get('issuer')!r}: web.oidc.issuer must be that exactly")  # fmt: skip
            self._metadata, self._read_at = found, time.monotonic()
        return self._metadata

    def start(self, redirect_uri: str, after: str) -> tuple[str, str]:
        """Where to send the browser, and the pending login's cookie value."""
        state, nonce = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        verifier = secrets.token_urlsafe(48)
        query = urlencode({
            "response_type": "code", "client_id": self.config.client_id,
            "redirect_uri": redirect_uri, "scope": " ".join(self.config.scopes),
            "state": state, "nonce": nonce,
            "code_challenge": create_s256_code_challenge(verifier),
            "code_challenge_method": "S256",
        })  # fmt: skip
        pending = json.dumps({"state": state, "nonce": nonce, "verifier": verifier,
                              "next": after, "at": time.time()})  # fmt: skip
        return f"{self.metadata()['authorization_endpoint']}?{query}", pending

    def finish(self, params: dict[str, str], pending: str | None,
               redirect_uri: str) -> tuple[dict[str, Any], str]:  # fmt: skip
        """The ID token's claims, and where to go next; Problem when anything is wrong."""
        try:
            started = json.loads(pending or "")
        except ValueError:
            started = None
        if (not isinstance(started, dict) or time.time() - started.get("at", 0) > PENDING_SECONDS
                or not secrets.compare_digest(str(started.get("state", "")),
                                              params.get("state", ""))):  # fmt: skip
            raise Problem(400, "this login did not start here, or took too long: log in again")
        if "error" in params:
            raise Problem(401, f"the provider refused the login: {params['error']}"
                          f"{': ' + params['error_description'] if params.get('error_description') else ''}")  # fmt: skip
        meta = self.metadata()
        answer = httpx.post(meta["token_endpoint"], data={
            "grant_type": "authorization_code", "code": params.get("code", ""),
            "redirect_uri": redirect_uri, "code_verifier": started["verifier"],
        }, auth=(self.config.client_id, self.config.client_secret.resolve()), timeout=TIMEOUT)  # fmt: skip
        if answer.status_code != 200 or "id_token" not in answer.json():
            raise Problem(401, f"the provider did not give an ID token (HTTP {answer.status_code})")
        claims = self._verified(answer.json()["id_token"], started["nonce"])
        return claims, str(started.get("next") or "/")

    def _verified(self, id_token: str, nonce: str) -> dict[str, Any]:
        keys = KeySet.import_key_set(_get_json(self.metadata()["jwks_uri"]))  # type: ignore[arg-type]
        try:
            token = jwt.decode(id_token, keys)
            jwt.JWTClaimsRegistry(
                iss={"essential": True, "value": self.config.issuer},
                aud={"essential": True, "value": self.config.client_id},
                exp={"essential": True}, nonce={"essential": True, "value": nonce},
            ).validate(token.claims)  # fmt: skip
        except (JoseError, ValueError) as exc:
            raise Problem(401, f"the ID token does not verify: {exc}") from None
        return dict(token.claims)


def _get_json(url: str) -> dict[str, Any]:
    try:
        answer = httpx.get(url, timeout=TIMEOUT)
        answer.raise_for_status()
        found: dict[str, Any] = answer.json()
        return found
    except (httpx.HTTPError, ValueError) as exc:
        raise Problem(503, f"the OIDC provider cannot be read at {url}: {exc}") from None
