"""The plan's credentials, each with where it is used, a keyed fingerprint of its value,
and when that value was last seen to change.

After a breach every credential is rotated, and first it must be known. This module
finds them: every ``${VAR}`` reference of the plan (one entry per variable, however
many fields use it) and the repository password (``--password-file`` or
``$DRPLAN_PASSWORD_FILE``, else ``$DRPLAN_PASSWORD``, else the plan's
``password_command``: the order :func:`drplan.repo.password.read_password` reads them in).

A value is never shown. Its fingerprint is HMAC-SHA256 under a random 32-byte key kept
in the state directory (``secrets.key``, 0600), cut to 12 hex digits: a plain hash of a
short password could be reversed by trying every likely password, a keyed one only by
whoever also holds the key, which never leaves this host. So fingerprints may go into
tickets and the incident timeline, and two state directories give the same value two
different fingerprints.

``secrets-seen.json`` in the state directory keeps, per reference, the fingerprints seen
in order and since when: a rotation appears as a new fingerprint with its date, a value
put back after a rotation as ``reused``.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from drplan import clock
from drplan.errors import DrplanError
from drplan.plan.secrets import SecretRef, find_refs
from drplan.plan.source import dotted
from drplan.repo.password import PASSWORD_ENV, PASSWORD_FILE_ENV, read_password

if TYPE_CHECKING:
    from drplan.plan.model import Plan

KEY_FILE = "secrets.key"
HISTORY_FILE = "secrets-seen.json"
KEY_BYTES = 32
FINGERPRINT_DIGITS = 12  # 48 bits: no two values of one reference collide by chance
HISTORY_VERSION = 1
HISTORY_KEEP = 50  # changes kept per reference: years of rotations, bounded

REPOSITORY_PASSWORD = "repository-password"
UNKNOWN_KIND = "secret"

# The kind of each secret field: (model class, field) -> kind. A field added to the plan
# schema without an entry here is listed as "secret"; a unit test walks the schema so
# that it does not stay so.
KINDS: dict[tuple[str, str], str] = {
    ("S3Location", "access_key_id"): "s3-access-key",
    ("S3Location", "secret_access_key"): "s3-secret-key",
    ("PostgresSystem", "password"): "postgres-password",
    ("ImagesSystem", "password"): "registry-password",
    ("ImagesSystem", "restore_password"): "registry-password",
    ("EtcdSystem", "password"): "etcd-password",
    ("SlackChannel", "webhook_url"): "slack-webhook",
    ("PagerDutyChannel", "routing_key"): "pagerduty-routing-key",
    ("EmailChannel", "password"): "smtp-password",
    ("WebhookChannel", "url"): "webhook-url",
    ("WebhookChannel", "signing_secret"): "webhook-secret",
    ("StatusPageChannel", "api_key"): "status-page-api-key",
    ("PhoneChannel", "webhook_url"): "phone-webhook-url",
    ("Oidc", "client_secret"): "oidc-client-secret",
}


@dataclass(frozen=True)
class Use:
    """One place a credential is used: a plan path (``locations.cloud.secret_access_key``)."""

    path: str
    kind: str
    at: tuple[str | int, ...] = field(default=(), compare=False)  # the path, unflattened


@dataclass(frozen=True)
class Credential:
    """A credential the plan needs: how it is referenced and where it is used. ``read``
    gives its value (DrplanError when it cannot), only for fingerprints and probes."""

    reference: str
    uses: tuple[Use, ...]
    read: Callable[[], bytes] = field(repr=False, compare=False)

    @property
    def kind(self) -> str:
        return ", ".join(dict.fromkeys(use.kind for use in self.uses))


def kind_of(plan: Plan, path: tuple[str | int, ...]) -> str:
    """The kind of the secret at ``path`` in the plan, from the model holding it."""
    owner: Any = plan
    for step in path[:-1]:
        if isinstance(owner, dict):
            owner = owner[step]
        elif isinstance(owner, list) and isinstance(step, int):
            owner = owner[step]
        else:
            owner = getattr(owner, str(step))
    return KINDS.get((type(owner).__name__, str(path[-1])), UNKNOWN_KIND)


def repository_source(password_file: str | None, plan: Plan) -> str:
    """Which source the repository password comes from here, as a reference."""
    if password_file:
        return "--password-file"
    if os.environ.get(PASSWORD_FILE_ENV):
        return f"${PASSWORD_FILE_ENV}"
    if os.environ.get(PASSWORD_ENV) or not plan.repository.password_command:
        return f"${PASSWORD_ENV}"
    return "password_command"


def inventory(plan: Plan, password_file: str | None = None) -> list[Credential]:
    """Every credential of the plan, in the order of first use; the repository password last."""
    found: dict[SecretRef, list[Use]] = {}
    for path, ref in find_refs(plan):
        found.setdefault(ref, []).append(Use(dotted(path), kind_of(plan, path), path))
    credentials = [Credential(str(ref), tuple(uses), _reader(ref)) for ref, uses in found.items()]
    # The repository password opens every location's repository (replicas share key files).
    uses = tuple(
        Use(f"locations.{name}", REPOSITORY_PASSWORD, ("locations", name))
        for name in plan.locations
    )
    command = plan.repository.password_command

    def read_repository() -> bytes:
        return read_password(password_file, command)

    credentials.append(Credential(repository_source(password_file, plan), uses, read_repository))
    return credentials


def ambient_s3(plan: Plan) -> list[str]:
    """S3 locations without keys in the plan: boto3 finds theirs (environment, ~/.aws, an
    instance role), credentials this inventory cannot see but a breach may have exposed."""
    return [
        name
        for name, location in plan.locations.items()
        if location.kind == "s3" and location.access_key_id is None
    ]


def _reader(ref: SecretRef) -> Callable[[], bytes]:
    return lambda: ref.resolve().encode()


def read_value(credential: Credential) -> tuple[bytes | None, str | None]:
    """(value, None), or (None, why it cannot be read): unset, a command that failed."""
    try:
        return credential.read(), None
    except DrplanError as exc:
        return None, exc.message


class Fingerprinter:
    """HMAC-SHA256 under this host's fingerprint key, made on first use."""

    def __init__(self, directory: Path) -> None:
        self._key = load_key(directory)

    def __call__(self, value: bytes) -> str:
        return hmac.new(self._key, value, hashlib.sha256).hexdigest()[:FINGERPRINT_DIGITS]


def load_key(directory: Path) -> bytes:
    """``directory/secrets.key``: read, or made (random, 0600) when absent. Made beside its
    place and linked in, so two processes starting at once agree on one key."""
    path = directory / KEY_FILE
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, temp = tempfile.mkstemp(dir=directory, prefix=".secrets.key.")
        try:
            os.write(fd, os.urandom(KEY_BYTES))
            os.fsync(fd)
            os.close(fd)
            with contextlib.suppress(FileExistsError):  # another process made it first
                os.link(temp, path)
        finally:
            os.unlink(temp)
        data = path.read_bytes()
    except OSError as exc:
        raise DrplanError(f"cannot read the fingerprint key {path}: {exc.strerror}") from None
    if len(data) != KEY_BYTES:
        raise DrplanError(
            f"{path} is not a fingerprint key ({len(data)} bytes, not {KEY_BYTES})",
            hint="move it aside: a new key is made, and every fingerprint's history starts over",
        )
    if path.stat().st_mode & 0o077:
        # Whoever reads the key can test guesses against the fingerprints: refuse to go on
        # as if it were private rather than quietly change what its owner set.
        raise DrplanError(
            f"{path} may be read by others than its owner",
            hint=f"chmod 600 {path}",
        )
    return data


@dataclass(frozen=True)
class Seen:
    """What the history says of a reference's current value."""

    last_changed: datetime | None  # when it was first seen after a change; None: never seen to
    first_recorded: datetime  # when this reference's history began
    reused: bool  # the value is one it had before a later rotation


class History:
    """``secrets-seen.json``: per reference, the fingerprints seen, oldest first, each with
    when it was first seen. Only a change adds an entry, so the last entry's time is when
    the value last changed (as far as this host saw)."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / HISTORY_FILE
        self._entries = self._load()

    def _load(self) -> dict[str, list[dict[str, str]]]:
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise DrplanError(
                f"{self.path} cannot be read: {getattr(exc, 'strerror', None) or exc}",
                hint="move it aside to start the history over (rotations before then are"
                " no longer dated)",
            ) from None
        if not isinstance(raw, dict) or raw.get("version") != HISTORY_VERSION:
            raise DrplanError(
                f"{self.path} is not a secrets history this drplan reads",
                hint="move it aside to start the history over",
            )
        references = raw.get("references", {})
        return references if isinstance(references, dict) else {}

    def record(self, reference: str, fingerprint: str, now: datetime) -> Seen:
        entries = self._entries.setdefault(reference, [])
        if not entries or entries[-1]["fingerprint"] != fingerprint:
            entries.append({"fingerprint": fingerprint, "since": clock.rfc3339(now)})
            del entries[:-HISTORY_KEEP]
        first = clock.parse_rfc3339(entries[0]["since"])
        changed = clock.parse_rfc3339(entries[-1]["since"]) if len(entries) > 1 else None
        reused = any(e["fingerprint"] == fingerprint for e in entries[:-1])
        return Seen(changed, first, reused)

    def save(self) -> None:
        """Write atomically (a temporary file renamed over it): a crash leaves the old or
        the new history, never half of one."""
        body = json.dumps(
            {"version": HISTORY_VERSION, "references": self._entries}, indent=2, sort_keys=True
        )
        fd, temp = tempfile.mkstemp(dir=self.path.parent, prefix=".secrets-seen.")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(body + "\n")
                out.flush()
                os.fsync(out.fileno())
            os.replace(temp, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)
            raise


@dataclass(frozen=True)
class Listed:
    """One row of `drplan secrets list`."""

    credential: Credential
    fingerprint: str | None  # None: not set here
    problem: str | None  # why it is not set
    seen: Seen | None
    shared_with: tuple[str, ...]  # other references holding the very same value

    def as_dict(self) -> dict[str, Any]:
        seen = self.seen
        return {
            "reference": self.credential.reference,
            "kind": self.credential.kind,
            "uses": [{"path": u.path, "kind": u.kind} for u in self.credential.uses],
            "set": self.fingerprint is not None,
            "problem": self.problem,
            "fingerprint": self.fingerprint,
            "last_changed": clock.rfc3339(seen.last_changed)
            if seen and seen.last_changed
            else None,
            "first_recorded": clock.rfc3339(seen.first_recorded) if seen else None,
            "reused": bool(seen and seen.reused),
            "shared_with": list(self.shared_with),
        }


def list_secrets(credentials: Iterable[Credential], directory: Path) -> list[Listed]:
    """Fingerprint every credential that is set, record what changed, and say so."""
    fingerprint = Fingerprinter(directory)
    history = History(directory)
    now = clock.now()
    measured: list[tuple[Credential, str | None, str | None]] = []
    for credential in credentials:
        value, problem = read_value(credential)
        measured.append((credential, fingerprint(value) if value is not None else None, problem))
    rows = []
    for credential, print_, problem in measured:
        seen = history.record(credential.reference, print_, now) if print_ else None
        shared = tuple(
            c.reference for c, p, _ in measured if p == print_ and print_ and c is not credential
        )
        rows.append(Listed(credential, print_, problem, seen, shared))
    history.save()
    return rows
