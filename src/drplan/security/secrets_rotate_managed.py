"""What drplan changes itself when it rotates a credential: a PostgreSQL role's password,
and the repository password (its key files in every location of the plan). Any other
credential is changed and revoked at its provider by a person; drplan only proves it.

A change makes three moves, which :mod:`secrets_rotate` calls in this order only:
``apply`` (the new value set), ``undo`` (the old one back, when the new one does not
prove out) and ``revoke`` (the old one no longer opens anything).

PostgreSQL keeps one password per role, so ``apply`` replaces the old one at once. The
session that logged in with the old password stays open until the end, so that ``undo``
can put it back. The password travels as a SCRAM-SHA-256 verifier computed here (libpq's
PQencryptPasswordConn, as psql's ``\\password``): the server, its statement log and
pg_stat_statements never see the password itself.

The repository keeps one key file per password: ``apply`` writes a key file for the new
one to every location (the same bytes wherever the master key is the same, so replicas
stay identical) and reads each back with the new password; ``revoke`` revokes every key
file the old one opens (its tombstone first; one under Object Lock stays until its lock
ends, refused by drplan) until it opens none. Each location's audit trail records the
operation as ``secrets rotate``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from drplan import clock
from drplan.errors import DrplanError, WrongPasswordError
from drplan.repo.crypto import object_id
from drplan.repo.immutability import revoke_key_file
from drplan.repo.keys import KEY_PREFIX, KdfParams, wrap
from drplan.repo.repository import Repository
from drplan.security.repo_audit_record import recorded
from drplan.security.secrets_verify import PROBE_TIMEOUT, postgres_refused

if TYPE_CHECKING:
    from drplan.plan.model import Plan, PostgresSystem
    from drplan.storage import Storage

OPERATION = "secrets rotate"  # in each location's audit trail
MAX_REVOKED = 100  # key files one password may open at one location: far more than any has


class ChangeFailed(Exception):
    """A change could not be made or undone; the message says what, in one line."""


class Change(Protocol):
    """One thing drplan changes for a credential (see the module docstring). Each move
    says what it did in one line, or raises ChangeFailed."""

    @property
    def covers(self) -> tuple[str, ...]:
        """The plan paths (uses) whose old value this change revokes."""
        ...

    def apply(self) -> str: ...

    def undo(self) -> str: ...

    def revoke(self) -> list[dict[str, Any]]:
        """Each old thing revoked (what, and until when a lock keeps it)."""
        ...

    def close(self) -> None: ...


# -- PostgreSQL ---------------------------------------------------------------------------


@dataclass
class PgRole:
    """The password of the role a PostgreSQL system of the plan logs in as."""

    system: str
    spec: PostgresSystem
    old: bytes
    new: bytes
    path: str
    _session: Any = None  # logged in with the old password: how undo reaches the server
    _user: str = ""
    _changed: bool = False

    @property
    def covers(self) -> tuple[str, ...]:
        return (self.path,)

    def apply(self) -> str:
        import psycopg  # noqa: PLC0415 - slow to import

        try:
            session = _connect(self.spec, self.old)
        except psycopg.Error as exc:
            if postgres_refused(exc) and self._accepts(self.new):  # an earlier run changed it
                return f"PostgreSQL {self.system}: the new password was set already"
            raise ChangeFailed(f"PostgreSQL {self.system}: cannot log in with the current"
                               f" password to change it: {exc}") from None  # fmt: skip
        user, where = session.info.user, f"{session.info.host}:{session.info.port}"
        if not session.pgconn.used_password:
            session.close()
            raise ChangeFailed(f"PostgreSQL {where} lets {user} in without asking for a password"
                               " (trust or peer): a new one would prove nothing")  # fmt: skip
        self._session, self._user = session, user
        try:
            _set_password(session, user, self.new)
        except psycopg.Error as exc:
            raise ChangeFailed(f"PostgreSQL {where} refused the new password of {user}:"
                               f" {exc}") from None  # fmt: skip
        self._changed = True
        return f"PostgreSQL {where}: password of {user} changed (ALTER ROLE, SCRAM verifier)"

    def undo(self) -> str:
        import psycopg  # noqa: PLC0415

        session, self._session = self._session, None
        try:
            if session is None or not self._changed:
                return ""  # nothing changed here, or an earlier run did: nothing to put back
            try:
                _set_password(session, self._user, self.old)
            except psycopg.Error as exc:
                raise ChangeFailed(f"PostgreSQL {self.system}: the old password of {self._user}"
                                   f" could not be put back: {exc}") from None  # fmt: skip
            return f"PostgreSQL {self.system}: the old password of {self._user} is back"
        finally:
            if session is not None:
                session.close()

    def revoke(self) -> list[dict[str, Any]]:
        self.close()  # ALTER ROLE replaced it: the role has one password
        return []

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None

    def _accepts(self, password: bytes) -> bool:
        import psycopg  # noqa: PLC0415

        try:
            with _connect(self.spec, password) as session:
                return bool(session.pgconn.used_password)
        except psycopg.Error:
            return False


def _connect(spec: PostgresSystem, password: bytes) -> Any:
    import psycopg  # noqa: PLC0415

    return psycopg.connect(spec.connection, password=password.decode("utf-8", "surrogateescape"),
                           autocommit=True, connect_timeout=int(PROBE_TIMEOUT),
                           application_name="drplan secrets rotate")  # fmt: skip


def _set_password(session: Any, user: str, password: bytes) -> None:
    from psycopg import sql  # noqa: PLC0415

    verifier = session.pgconn.encrypt_password(password, user.encode(), b"scram-sha-256")
    statement = sql.SQL("ALTER ROLE {} PASSWORD {}")
    session.execute(statement.format(sql.Identifier(user), sql.Literal(verifier.decode())))


# -- the repository -----------------------------------------------------------------------


@dataclass
class RepositoryKeys:
    """The repository password: a key file per location (``storages``: the plan's
    locations, each recorded in its audit trail)."""

    storages: dict[str, Storage]
    old: bytes
    new: bytes
    label: str = "rotated"
    opened: Repository | None = None  # the last repository opened: seals the audit entries
    written: list[tuple[str, str]] = field(default_factory=list)  # (location, key id)

    @property
    def covers(self) -> tuple[str, ...]:
        return tuple(f"locations.{name}" for name in self.storages)

    def close(self) -> None:
        pass  # nothing held open: each move opens what it needs

    def apply(self) -> str:
        made: dict[bytes, bytes] = {}  # master key -> the new key file: one per repository
        for name, storage in self.storages.items():
            if self._opens(name, storage, self.new):  # an earlier run wrote it
                continue
            repo = self._open(name, storage, self.old)
            master = repo.opened_master()
            mine = master.encryption + master.id_key
            if mine not in made:  # argon2 once per repository, not per location
                made[mine] = wrap(master, self.new, KdfParams(), repo.cipher, self.label)
            data = made[mine]
            key_id = object_id(data)
            _step(name, "writing the new key file", storage.write, KEY_PREFIX + key_id, data)
            self.written.append((name, key_id))
            if not self._opens(name, storage, self.new):
                raise ChangeFailed(f"{name}: the new key file was written, but the new password"
                                   " does not open it")  # fmt: skip
        return f"a key file for the new password in {len(self.written)} location(s)"

    def undo(self) -> str:
        undone = []
        for name, key_id in reversed(self.written):
            repo = self._open(name, self.storages[name], self.old)
            _step(name, "revoking the new key file", revoke_key_file, repo, key_id)
            undone.append(name)
        self.written.clear()
        return f"the new key file revoked in {', '.join(undone)}" if undone else ""

    def revoke(self) -> list[dict[str, Any]]:
        """Every key file the old password opens, revoked; ChangeFailed when it still
        opens one anywhere."""
        revoked = []
        for name, storage in self.storages.items():
            for _ in range(MAX_REVOKED):
                try:
                    repo = Repository.open(storage, self.old)
                except WrongPasswordError:
                    break
                except DrplanError as exc:
                    raise ChangeFailed(f"{name}: {exc.message}") from None
                self.opened = repo
                until = _step(name, "revoking the old key file", revoke_key_file, repo,
                              repo.key_id)  # fmt: skip
                revoked.append({"location": name, "key": repo.key_id[:12],
                                "locked_until": clock.rfc3339(until) if until else None})  # fmt: skip
            else:
                raise ChangeFailed(f"{name}: the old password still opens a key file")
        return revoked

    def _open(self, name: str, storage: Storage, password: bytes) -> Repository:
        try:
            self.opened = Repository.open(storage, password)
        except DrplanError as exc:
            raise ChangeFailed(f"{name}: {exc.message}") from None
        return self.opened

    def _opens(self, name: str, storage: Storage, password: bytes) -> bool:
        try:
            self._open(name, storage, password)
        except ChangeFailed:
            return False
        return True


def _step(name: str, doing: str, act: Callable[..., Any], *args: Any) -> Any:
    try:
        return act(*args)
    except DrplanError as exc:
        raise ChangeFailed(f"{name}: {doing}: {exc.message}") from None


@contextlib.contextmanager
def repository_keys(
    plan: Plan, old: bytes, new: bytes, warn: Callable[[str], None]
) -> Iterator[RepositoryKeys]:
    """The repository password's change over every location of the plan, recorded in the
    audit trail of each one it used."""
    from drplan.locations.storage import storage_for  # noqa: PLC0415 - boto3 is slow

    made: list[RepositoryKeys] = []
    with recorded(OPERATION, warn, lambda: made[0].opened if made else None) as recorder:
        storages: dict[str, Storage] = {
            name: recorder.use(name, storage_for(location))
            for name, location in plan.locations.items()
        }
        made.append(RepositoryKeys(storages, old, new))
        yield made[0]
