"""The web server's section: where it listens, TLS, the proxies it trusts, sessions, OIDC
login, and who may do what (the four access levels, granted by the plan's roles and by
grants of their own).

Access levels, each including the ones before it:

- ``viewer``: read everything the dashboard and the API show;
- ``responder``: record steps and notes of an incident;
- ``commander``: declare, approve, resolve and notify; run a drill;
- ``admin``: users and API tokens.
"""

from __future__ import annotations

import ipaddress
from datetime import timedelta
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, StrictBool, StrictInt

from drplan.plan.durations import Duration
from drplan.plan.model.base import PlanModel
from drplan.plan.secrets import Secret

Access = Literal["viewer", "responder", "commander", "admin"]
ACCESS_LEVELS: tuple[Access, ...] = ("viewer", "responder", "commander", "admin")


def _listen(value: str) -> str:
    _, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError("must be HOST:PORT, e.g. 127.0.0.1:9760")
    return value


def _network(value: str) -> str:
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise ValueError(
            "must be an IP address or a network (10.0.0.0/8): forwarded headers are"
            " trusted by address, never by name"
        ) from None
    return value


def _url(value: str) -> str:
    if not value.startswith(("https://", "http://")) or value.endswith("/"):
        raise ValueError("must be an http(s) URL without a trailing '/'")
    return value


Listen = Annotated[str, AfterValidator(_listen)]
Network = Annotated[str, AfterValidator(_network)]
Url = Annotated[str, AfterValidator(_url)]


class Members(PlanModel):
    emails: list[str] = Field(default_factory=list)
    """E-mail addresses (as the login or the OIDC `email` claim gives them)."""
    groups: list[str] = Field(default_factory=list)
    """OIDC groups (the claim `web.oidc.groups_claim` names)."""
    domains: list[str] = Field(default_factory=list)
    """E-mail domains, e.g. `smartwatts.example`: everyone whose address is there."""


class Tls(PlanModel):
    certificate: str
    """PEM file of the certificate (and its chain)."""
    key: str
    """PEM file of its private key."""


class Oidc(PlanModel):
    issuer: Url
    """The provider's issuer URL; its `/.well-known/openid-configuration` is read."""
    client_id: str
    """drplan's client id at the provider."""
    client_secret: Secret
    """drplan's client secret, e.g. `${OIDC_CLIENT_SECRET}`."""
    scopes: list[str] = Field(default_factory=lambda: ["openid", "email", "profile"])
    """Scopes asked for; `openid` and `email` are needed."""
    groups_claim: str = "groups"
    """The claim that lists the user's groups."""


class Web(PlanModel):
    listen: Listen = "127.0.0.1:9760"
    """Where `drplan serve` and `drplan web` answer (`--listen` overrides it). Loopback by
    default: expose it on purpose, with TLS or behind a proxy."""
    url: Url | None = None
    """The address people reach it at, e.g. `https://drplan.smartwatts.example` (links in
    messages, the OIDC redirect). Default: `http(s)://listen`."""
    tls: Tls | None = None
    """Serve HTTPS with this certificate."""
    trusted_proxies: list[Network] = Field(default_factory=list)
    """Proxies whose `X-Forwarded-For` and `X-Forwarded-Proto` are believed; from any other
    address they are ignored."""
    public_metrics: StrictBool = False
    """`/metrics` without credentials (a Prometheus on the same network)."""
    session_lifetime: Duration = Field(default=timedelta(hours=12))
    """How long a login lasts."""
    login_attempts: StrictInt = Field(default=5, ge=1, le=1000)
    """Failed logins allowed per account and per address in 15 minutes; more wait."""
    oidc: Oidc | None = None
    """Login through an OpenID Connect provider, besides local accounts."""
    access: dict[Access, Members] = Field(default_factory=dict)
    """Access granted besides the plan's roles, e.g. `viewer: {domains: [smartwatts.example]}`."""
