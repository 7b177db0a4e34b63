"""Proving each credential of the plan works against its real service, changing nothing
there and telling nobody.

One probe per kind, each with a short timeout:

- S3 keys: list the location's ``keys/`` (ListObjectsV2), signed with exactly those keys;
- PostgreSQL: connect as the system's user with the password, ``select 1``;
- registry: ``GET /v2/`` with the credentials (basic, or the token flow the registry asks for);
- SMTP: connect, STARTTLS when the channel asks or the server offers it, AUTH, QUIT;
- etcd: ``etcdctl endpoint status`` as the system's user;
- status page API key: ``GET {api_url}/v1/pages/{page_id}``, read-only;
- the repository password: open a key file of the first job's first location (no lock).

Slack webhooks, PagerDuty routing keys, webhook URLs and secrets and OIDC client secrets
have no call that proves them without a delivery (a message, a page, a login), so they
are reported ``not verifiable`` with the reason, and nothing is sent.

A password a server never asked for proves nothing: a PostgreSQL server that let us in
without one (trust), a registry that answers ``/v2/`` to anyone, a field drplan never
sends (a password without a user name) give ``not verifiable`` too, with why.

Details are what the service answered, in one line; any secret value that slipped into
one is masked before it is shown.

A probe may be given a value that is not the plan's (``probes_for``'s ``value``, and a
plan whose references read other values): `secrets rotate` proves a new value with the
same probes before it records it, and an old one refused (:class:`Refused`: the service
said no to the credential, not merely failed to answer) before it records it revoked.
"""

from __future__ import annotations

import contextlib
import smtplib
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal

from drplan.errors import DrplanError, SecretMissingError, WrongPasswordError
from drplan.plan.model import (
    EtcdSystem,
    ImagesSystem,
    LocalLocation,
    Location,
    Plan,
    PostgresSystem,
    S3Location,
)
from drplan.plan.model.response import EmailChannel, StatusPageChannel
from drplan.security.secrets_inventory import REPOSITORY_PASSWORD, Credential, Use, read_value

PROBE_TIMEOUT = 10.0  # seconds per probe: a service that does not answer by then is down
SMTP_REFUSED = 535
PG_REFUSED = "28P01"  # invalid_password
# S3 error codes that say the keys themselves are wrong (an AccessDenied may be a policy).
S3_REFUSED = ("InvalidAccessKeyId", "SignatureDoesNotMatch")
DETAIL_MAX = 300

Status = Literal["ok", "failed", "not set", "not verifiable"]

# Why a kind cannot be proven without sending something to people or a third party.
UNVERIFIABLE: dict[str, str] = {
    "slack-webhook": "a Slack incoming webhook has no read-only call: any request to it"
    " posts to the channel",
    "pagerduty-routing-key": "the PagerDuty Events API has no read-only call: an event it"
    " accepts opens an alert that pages people",
    "webhook-url": "any request to a webhook is a delivery to whoever receives it",
    "phone-webhook-url": "any request to the call service may place calls",
    "webhook-secret": "only the receiver checks the signature: proving it means sending a"
    " signed delivery",
    "oidc-client-secret": "the provider checks it only in a login's token exchange",
    "secret": "drplan does not know what this field's secret opens",
}


class ProbeFailed(Exception):
    """The service refused the credential, or could not be asked; the message says which."""


class Refused(ProbeFailed):
    """The service answered, and said no to this credential (a wrong password, an unknown
    key): what proves an old value revoked. A service that could not be asked is only
    ProbeFailed."""


class NotProven(Exception):
    """The service answered, but without checking the credential; the message says why."""


@dataclass(frozen=True)
class Verdict:
    """One credential's result."""

    credential: Credential
    status: Status
    detail: str
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "reference": self.credential.reference,
            "kind": self.credential.kind,
            "uses": [u.path for u in self.credential.uses],
            "status": self.status,
            "detail": self.detail,
            "seconds": round(self.seconds, 3),
        }


Probe = Callable[[], str]


def verify_secrets(plan: Plan, credentials: Iterable[Credential]) -> list[Verdict]:
    """Probe each credential's services. A probe shared by several credentials (both keys of
    one S3 location) runs once."""
    # Each read once: a password_command may be slow, or ask a vault that logs each read.
    read = [(credential, *read_value(credential)) for credential in credentials]
    values = [value for _, value, _ in read if value is not None]
    done: dict[str, tuple[str, str, float]] = {}  # probe key -> (status, detail, seconds)
    verdicts = []
    for credential, value, problem in read:
        if value is None:
            verdicts.append(Verdict(credential, "not set", problem or "not set", 0.0))
            continue
        outcomes = []
        for use in credential.uses:
            reason = UNVERIFIABLE.get(use.kind)
            if reason is not None:
                outcomes.append((use.path, "not verifiable", reason, 0.0))
                continue
            for key, probe in probes_for(plan, use, value):
                if key not in done:
                    done[key] = _run(probe, values)
                outcomes.append((use.path, *done[key]))
        verdicts.append(_verdict(credential, outcomes))
    return verdicts


@dataclass(frozen=True)
class Attempt:
    """One probe's outcome: ``refused`` when the service said no to the credential itself."""

    status: Status
    detail: str
    seconds: float
    refused: bool = False


def attempt(probe: Probe, values: list[bytes]) -> Attempt:
    """Run ``probe``; its detail in one line with none of ``values`` in it."""
    started = time.monotonic()
    status: Status = "failed"
    refused = False
    try:
        status, detail = "ok", probe()
    except ProbeFailed as exc:
        detail, refused = str(exc), isinstance(exc, Refused)
    except NotProven as exc:
        status, detail = "not verifiable", str(exc)
    except DrplanError as exc:
        detail = exc.message
    except Exception as exc:  # a client's error drplan does not translate: still one line
        detail = f"{type(exc).__name__}: {exc}"
    return Attempt(status, mask(detail, values), time.monotonic() - started, refused)


def _run(probe: Probe, values: list[bytes]) -> tuple[str, str, float]:
    done = attempt(probe, values)
    return done.status, done.detail, done.seconds


def _verdict(credential: Credential, outcomes: list[tuple[str, str, str, float]]) -> Verdict:
    """Failed if any use failed; ok if every use that can be proven was; else not verifiable."""
    seconds = sum(o[3] for o in outcomes)
    order: tuple[Status, ...] = ("failed", "ok", "not verifiable")
    for wanted in order:
        picked = [o for o in outcomes if o[1] == wanted]
        if picked:
            detail = "; ".join(f"{path}: {detail}" for path, _, detail, _ in picked)
            return Verdict(credential, wanted, detail, seconds)
    return Verdict(credential, "not verifiable", "it is used nowhere drplan can reach", seconds)


def mask(text: str, values: Iterable[bytes]) -> str:
    """One line, without any of the secret values (a service that echoed one)."""
    line = " ".join(text.split())
    for value in values:
        secret = value.decode("utf-8", "replace")
        if len(secret) >= 4:
            line = line.replace(secret, "***")
    return line[:DETAIL_MAX]


# -- the probes --------------------------------------------------------------------------


def smtp_login(host: str, port: int, starttls: bool, username: str, password: str) -> str:
    """Connect, STARTTLS when asked or offered, AUTH, QUIT: no mail is sent."""
    try:
        with smtplib.SMTP(host, port, timeout=PROBE_TIMEOUT) as smtp:
            smtp.ehlo()
            secured = starttls or smtp.has_extn("starttls")
            if secured:
                smtp.starttls(context=ssl.create_default_context())
                smtp.ehlo()
            _smtp_auth(smtp, username, password)
    except smtplib.SMTPResponseException as exc:
        said = (
            exc.smtp_error.decode("utf-8", "replace")
            if isinstance(exc.smtp_error, bytes)
            else exc.smtp_error
        )
        # 535: "authentication credentials invalid" (RFC 4954); other codes are no verdict.
        failure = Refused if exc.smtp_code == SMTP_REFUSED else ProbeFailed
        raise failure(f"SMTP {host}:{port} answered {exc.smtp_code} {said}") from None
    except (smtplib.SMTPException, ssl.SSLError, OSError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        raise ProbeFailed(f"SMTP {host}:{port}: {reason}") from None
    return f"SMTP {host}:{port} accepted the login as {username}" + (" over TLS" if secured else "")


def _smtp_auth(smtp: smtplib.SMTP, username: str, password: str) -> None:
    """One AUTH attempt: smtplib's login() tries each mechanism in turn, and each failure
    counts against the account's lockout (and some servers stall after the first)."""
    if not smtp.has_extn("auth"):
        raise ProbeFailed("the server offers no AUTH (SMTP login)")
    offered = smtp.esmtp_features["auth"].upper().split()
    mechanism = next((m for m in ("PLAIN", "LOGIN", "CRAM-MD5") if m in offered), None)
    if mechanism is None:
        raise ProbeFailed(f"the server offers AUTH {' '.join(offered)}, none smtplib speaks")
    smtp.user, smtp.password = username, password
    answer = getattr(smtp, "auth_" + mechanism.lower().replace("-", "_"))
    smtp.auth(mechanism, answer, initial_response_ok=True)


def http_get(url: str, headers: dict[str, str], cafile: str | None = None) -> int:
    """The status of a GET (urllib follows redirects); ProbeFailed when nothing answers."""
    request = urllib.request.Request(url, headers=headers, method="GET")
    context = ssl.create_default_context(cafile=cafile)
    try:
        with urllib.request.urlopen(request, timeout=PROBE_TIMEOUT, context=context) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        with contextlib.suppress(Exception):
            exc.close()
        return int(exc.code)
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise ProbeFailed(f"{redact(url)} cannot be reached: {reason}") from None


def redact(url: str) -> str:
    """The URL without a query (tokens travel there): fit for a message."""
    return url.split("?", 1)[0]


def probes_for(plan: Plan, use: Use, value: bytes) -> list[tuple[str, Probe]]:
    """(key, probe) for each service that proves ``value`` at ``use``; [] when this use
    needs no probe of its own (the repository password is proven at one location). S3 and
    etcd probes read their references through the plan's (a plan whose references hold
    other values proves those)."""
    section, name, field = (*map(str, use.at), "", "", "")[:3]
    secret = value.decode("utf-8", "surrogateescape")
    container = getattr(plan, section, None) if section else None
    owner = container.get(name) if isinstance(container, dict) else None
    if use.kind == REPOSITORY_PASSWORD and isinstance(owner, LocalLocation | S3Location):
        if name != first_job_location(plan):
            return []
        return [("repository", partial(_repository, owner, value))]
    if isinstance(owner, S3Location):
        return [(f"s3:{name}", partial(_s3, owner))]
    if isinstance(owner, PostgresSystem):
        return [(f"postgres:{name}", partial(_postgres, owner, secret))]
    if isinstance(owner, EtcdSystem):
        return [(f"etcd:{name}", partial(_etcd, name, owner))]
    if isinstance(owner, ImagesSystem):
        return _registry_probes(name, owner, field, secret)
    if isinstance(owner, EmailChannel):
        return [(f"smtp:{name}", partial(_smtp, owner, secret))]
    if isinstance(owner, StatusPageChannel):
        return [(f"statuspage:{name}", partial(_status_page, owner, secret))]
    raise NotImplementedError(f"no probe for {use.kind} at {use.path}")


def first_job_location(plan: Plan) -> str:
    """Where the repository password is proven: the first job's first location (where
    backups go first), else the plan's first location."""
    for job in plan.jobs.values():
        return job.locations[0]
    return next(iter(plan.locations))


def _repository(location: Location, password: bytes) -> str:
    from drplan.locations.storage import storage_for  # noqa: PLC0415 - boto3 is slow
    from drplan.repo.keys import open_with_password  # noqa: PLC0415

    storage = storage_for(location)
    try:
        key_id = open_with_password(storage, password).key_id  # reads key files only: no lock
    except WrongPasswordError as exc:
        raise Refused(exc.message) from None
    return f"{storage.url}: opens key file {key_id[:12]}"


def _s3(location: S3Location) -> str:
    from drplan.locations.storage import storage_for  # noqa: PLC0415 - boto3 is slow

    for ref in (location.access_key_id, location.secret_access_key):
        try:
            if ref is not None:
                ref.resolve()  # the plan's value, or the one a rotation gives it
        except SecretMissingError:
            raise NotProven(f"its pair {ref} is not set, and S3 signs with both") from None
    storage = storage_for(location)
    # One listing under the repository's prefix: read-only, and signed with both keys.
    try:
        next(iter(storage.list("keys/")), None)
    except DrplanError as exc:
        if any(code in exc.message for code in S3_REFUSED):
            raise Refused(exc.message) from None
        raise
    return f"{storage.url}: the keys may list the repository (ListObjectsV2)"


def _postgres(spec: PostgresSystem, password: str) -> str:
    import psycopg  # noqa: PLC0415 - slow to import

    try:
        with psycopg.connect(
            spec.connection,
            password=password,
            connect_timeout=int(PROBE_TIMEOUT),
            application_name="drplan secrets verify",
        ) as conn:
            conn.execute("select 1")
            used = conn.pgconn.used_password
            user = conn.info.user
            where = f"{conn.info.host}:{conn.info.port}"
    except psycopg.Error as exc:
        raise (Refused if postgres_refused(exc) else ProbeFailed)(f"PostgreSQL: {exc}") from None
    if not used:
        raise NotProven(
            f"PostgreSQL {where} let {user} in without asking for the password"
            " (trust or peer authentication): it proves nothing"
        )
    return f"PostgreSQL {where} accepted the password of {user} (select 1)"


def postgres_refused(exc: Exception) -> bool:
    """Whether the server said no to the password (not: could not be reached)."""
    said = getattr(exc, "sqlstate", None)
    return said == PG_REFUSED or "password authentication failed" in str(exc)


def _registry_probes(
    name: str, spec: ImagesSystem, field: str, password: str
) -> list[tuple[str, Probe]]:
    """The registries a password opens: `password` the source (and the restore registry
    when it has no password of its own), `restore_password` the restore registry."""
    targets = []
    if field == "password":
        targets.append((spec.registry, spec.username))
        if spec.restore_registry and spec.restore_password is None:
            targets.append((spec.restore_registry, spec.restore_username or spec.username))
    else:
        targets.append(
            (spec.restore_registry or spec.registry, spec.restore_username or spec.username)
        )
    return [
        (f"registry:{name}:{field}:{url}", partial(_registry, url, user, password, spec.cacert))
        for url, user in targets
    ]


def _registry(url: str, username: str | None, password: str, cacert: str | None) -> str:
    from drplan.sources.images.manifest import RegistryAuthError  # noqa: PLC0415
    from drplan.sources.images.registry import RegistryClient  # noqa: PLC0415

    if username is None:
        raise NotProven(
            f"registry {url}: the system has no username, so the password is never sent"
        )
    # Asked without credentials first: a registry that answers /v2/ to anyone would
    # answer with a wrong password too.
    anonymous = http_get(url.rstrip("/") + "/v2/", {}, cacert)
    if 200 <= anonymous < 300:
        raise NotProven(
            f"registry {url} answers /v2/ without credentials: it does not check them there"
        )
    client = RegistryClient(url, username=username, password=password, cacert=cacert,
                            timeout=PROBE_TIMEOUT)  # fmt: skip
    try:
        client.ping()
    except RegistryAuthError as exc:  # 401 refuses the credentials; 403 only the access
        raise (Refused if "(401)" in exc.message else ProbeFailed)(exc.message) from None
    return f"registry {client.address} accepted {username} (GET /v2/)"


def _etcd(name: str, spec: EtcdSystem) -> str:
    from drplan.sources.etcd.etcdctl import Etcdctl  # noqa: PLC0415

    if not spec.user:
        raise NotProven("the system has no `user`, so the password is never sent")
    failures = []
    for endpoint in spec.endpoints:
        try:
            Etcdctl(name, spec, endpoint).run("endpoint", "status", timeout=PROBE_TIMEOUT)
        except DrplanError as exc:
            failures.append(exc.message)
            continue
        return f"etcd {endpoint} answered endpoint status as {spec.user}"
    refused = "authentication failed" in failures[-1] or "invalid auth" in failures[-1]
    raise (Refused if refused else ProbeFailed)(failures[-1])


def _smtp(channel: EmailChannel, password: str) -> str:
    if not channel.username:
        raise NotProven("the channel has no username, so drplan never logs in with the password")
    return smtp_login(channel.smtp_host, channel.smtp_port, channel.starttls, channel.username,
                      password)  # fmt: skip


def _status_page(channel: StatusPageChannel, api_key: str) -> str:
    # Statuspage's "Get a page": read-only, and the key goes only where it is sent anyway.
    page = urllib.parse.quote(channel.page_id, safe="")
    url = f"{channel.api_url.rstrip('/')}/v1/pages/{page}"
    status = http_get(url, {"Authorization": f"OAuth {api_key}"})
    if 200 <= status < 300:
        return f"{url} answered {status} to the key (read-only GET)"
    raise (Refused if status == 401 else ProbeFailed)(f"{url} answered {status} to the key")
