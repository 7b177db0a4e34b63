"""Who may use the web server and the API, as the catalog keeps it: local accounts, scoped
API tokens and login sessions, and what each one may do.

No secret is stored. A password is kept as its argon2id hash; a token and a session
cookie as the SHA-256 of their random part (32 random bytes leave nothing to guess from,
so a fast hash is enough, and it lets a request be checked in microseconds). A token is
shown once, when it is made.

What someone may do is an access level (viewer, responder, commander, admin; see
:mod:`drplan.plan.model.web`): the highest that their roles in the plan give them (by
the account's roles, or their e-mail address and groups), the plan's own grants, and
what the account was given. A token may do no more than its scopes allow, and no more
than its user may.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError as DuplicateKey

from drplan.catalog.schema import api_tokens, web_sessions, web_users
from drplan.errors import UsageError
from drplan.plan.model.web import ACCESS_LEVELS, Access, Members

if TYPE_CHECKING:
    from drplan.catalog.store import Catalog
    from drplan.plan.model import Plan

# What a token's scope lets it do, and the access its user needs for that.
SCOPES: dict[str, Access] = {
    "read": "viewer",
    "incidents:write": "responder",
    "drills:run": "commander",
    "events:write": "responder",  # run the jobs scheduled `on EVENT` (a pipeline, a registry)
    "admin": "admin",
}
TOKEN_PREFIX = "drplan_"
USER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@+-]{0,127}$")
TOUCH_EVERY = timedelta(minutes=1)  # how precisely a token's last use is kept
_HASHER = PasswordHasher()  # argon2id, the library's current parameters (RFC 9106's)
# Checked against when the account does not exist, so that a login takes as long either
# way and does not tell which accounts there are.
_DUMMY = _HASHER.hash(secrets.token_hex(16))


def rank(access: Access) -> int:
    return ACCESS_LEVELS.index(access)


def highest(levels: list[Access]) -> Access | None:
    return sorted(levels, key=rank)[-1] if levels else None


@dataclass(frozen=True)
class User:
    name: str
    email: str | None
    roles: tuple[str, ...]
    access: Access | None  # granted to the account itself, besides its roles'
    has_password: bool
    created_at: datetime


@dataclass(frozen=True)
class Token:
    id: str
    name: str
    user: str
    scopes: tuple[str, ...]
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None


@dataclass(frozen=True)
class Principal:
    """Who a request comes from, and what they may do."""

    name: str  # the user
    roles: tuple[str, ...]  # the plan's roles they hold
    access: Access
    via: str  # "session", "token ID"
    scopes: frozenset[str] | None = None  # a token's; None: all that the access allows
    csrf: str | None = None  # a session's form token

    def may(self, needed: Access, scope: str) -> bool:
        """Whether this principal may do what needs ``needed`` access and ``scope``."""
        if rank(self.access) < rank(needed):
            return False
        if self.scopes is None:
            return True
        # A write scope includes reading; admin includes everything.
        return (
            scope in self.scopes
            or "admin" in self.scopes
            or (scope == "read" and bool(self.scopes))
        )


def matches(members: Members, email: str | None, groups: list[str]) -> bool:
    """Whether someone with ``email`` and ``groups`` is one of ``members``."""
    address = (email or "").lower()
    if address and (address in {e.lower() for e in members.emails}
                    or address.rpartition("@")[2] in {d.lower() for d in members.domains}):  # fmt: skip
        return True
    return bool(set(groups) & set(members.groups))


def granted(
    plan: Plan, email: str | None, groups: list[str], roles: tuple[str, ...] = (),
    access: Access | None = None,
) -> tuple[tuple[str, ...], Access | None]:  # fmt: skip
    """The plan's roles someone holds (those given, and those whose e-mail or members
    they match) and the highest access that gives them (None: none at all)."""
    held = {r for r in roles if r in plan.roles}
    address = (email or "").lower()
    for name, role in plan.roles.items():
        if (address and address == (role.email or "").lower()) or matches(
            role.members, email, groups
        ):
            held.add(name)
    levels: list[Access] = [plan.roles[r].access for r in held]
    levels += [level for level, members in plan.web.access.items()
               if matches(members, email, groups)]  # fmt: skip
    if access is not None:
        levels.append(access)
    return tuple(sorted(held)), highest(levels)


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class Accounts:
    """The accounts, tokens and sessions of one catalog."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    # -- accounts ---------------------------------------------------------------------------

    def add_user(
        self, name: str, email: str | None, password: str | None, roles: list[str],
        access: Access | None, now: datetime,
    ) -> User:  # fmt: skip
        if not USER_NAME.match(name):
            raise UsageError(f"{name!r} is not a user name",
                             hint="letters, digits and _ . @ + -, up to 128")  # fmt: skip
        if password is not None and len(password) < 12:
            raise UsageError("the password is shorter than 12 characters",
                             hint="choose a longer one (a passphrase)")  # fmt: skip
        row = {
            "name": name, "email": email, "roles": json.dumps(sorted(set(roles))),
            "access": access, "created_at": now,
            "password": _HASHER.hash(password) if password is not None else None,
        }  # fmt: skip
        try:
            with self.catalog.transaction() as conn:
                conn.execute(insert(web_users).values(**row))
        except DuplicateKey:
            raise UsageError(f"user {name} exists already",
                             hint=f"`drplan user remove {name}` first, or choose another name") from None  # fmt: skip
        user = self.user(name)
        assert user is not None
        return user

    def remove_user(self, name: str) -> None:
        """Remove the account, its tokens and its sessions."""
        with self.catalog.transaction() as conn:
            gone = conn.execute(delete(web_users).where(web_users.c.name == name)).rowcount
            conn.execute(delete(api_tokens).where(api_tokens.c.user == name))
            conn.execute(delete(web_sessions).where(web_sessions.c.user == name))
        if not gone:
            raise UsageError(f"no user {name}", hint="`drplan user list` shows them")

    def set_password(self, name: str, password: str) -> None:
        if len(password) < 12:
            raise UsageError("the password is shorter than 12 characters",
                             hint="choose a longer one (a passphrase)")  # fmt: skip
        with self.catalog.transaction() as conn:
            changed = conn.execute(update(web_users).where(web_users.c.name == name)
                                   .values(password=_HASHER.hash(password))).rowcount  # fmt: skip
            conn.execute(delete(web_sessions).where(web_sessions.c.user == name))
        if not changed:
            raise UsageError(f"no user {name}", hint="`drplan user list` shows them")

    def users(self) -> list[User]:
        with self.catalog.transaction() as conn:
            rows = conn.execute(select(web_users).order_by(web_users.c.name)).all()
        return [_user(row) for row in rows]

    def user(self, name: str) -> User | None:
        with self.catalog.transaction() as conn:
            row = conn.execute(select(web_users).where(web_users.c.name == name)).first()
        return _user(row) if row is not None else None

    def authenticate(self, name: str, password: str) -> User | None:
        """The account, when ``password`` is its password; None otherwise (an unknown
        account takes as long to refuse)."""
        with self.catalog.transaction() as conn:
            row = conn.execute(select(web_users).where(web_users.c.name == name)).first()
        stored = row.password if row is not None and row.password else _DUMMY
        try:
            _HASHER.verify(stored, password)
        except (VerificationError, InvalidHashError):
            return None
        return _user(row) if row is not None and row.password else None

    def principal(self, plan: Plan, user: User, via: str, **extra: Any) -> Principal | None:
        """What an account may do under ``plan``; None when nothing (a local account is a
        viewer at least: an admin made it)."""
        roles, access = granted(plan, user.email, [], user.roles, user.access)
        return Principal(user.name, roles, access or "viewer", via, **extra)

    # -- tokens -----------------------------------------------------------------------------

    def create_token(
        self, user: str, name: str, scopes: list[str], expires: timedelta | None,
        now: datetime,
    ) -> tuple[str, Token]:  # fmt: skip
        """A new token for ``user``: the token itself (shown once) and what is kept."""
        unknown = sorted(set(scopes) - set(SCOPES))
        if unknown or not scopes:
            raise UsageError(f"unknown scope {', '.join(unknown)}" if unknown else "no scope given",
                             hint=f"scopes: {', '.join(SCOPES)}")  # fmt: skip
        if self.user(user) is None:
            raise UsageError(f"no user {user}", hint="`drplan user add` makes one")
        token_id, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
        row = {
            "id": token_id, "name": name, "user": user, "scopes": " ".join(sorted(set(scopes))),
            "secret_hash": _digest(secret), "created_at": now,
            "expires_at": now + expires if expires is not None else None,
        }  # fmt: skip
        with self.catalog.transaction() as conn:
            conn.execute(insert(api_tokens).values(**row))
        return f"{TOKEN_PREFIX}{token_id}_{secret}", self.token(token_id)  # type: ignore[return-value]

    def token(self, token_id: str) -> Token | None:
        with self.catalog.transaction() as conn:
            row = conn.execute(select(api_tokens).where(api_tokens.c.id == token_id)).first()
        return _token(row) if row is not None else None

    def tokens(self, user: str | None = None) -> list[Token]:
        query = select(api_tokens).order_by(api_tokens.c.created_at)
        if user is not None:
            query = query.where(api_tokens.c.user == user)
        with self.catalog.transaction() as conn:
            return [_token(row) for row in conn.execute(query).all()]

    def revoke(self, token_id: str, now: datetime) -> Token:
        with self.catalog.transaction() as conn:
            changed = conn.execute(update(api_tokens).where(api_tokens.c.id == token_id,
                                                            api_tokens.c.revoked_at.is_(None))
                                   .values(revoked_at=now)).rowcount  # fmt: skip
        token = self.token(token_id)
        if token is None:
            raise UsageError(f"no token {token_id}", hint="`drplan token list` shows them")
        if not changed:
            raise UsageError(f"token {token_id} was revoked already", hint="nothing to do")
        return token

    def check_token(self, presented: str, now: datetime) -> tuple[Token | None, str]:
        """The token presented, when it is valid now; else None and why not (said to the
        caller in general terms only)."""
        body = presented.removeprefix(TOKEN_PREFIX)
        token_id, _, secret = body.partition("_")
        if body == presented or not secret:
            return None, "not a drplan token"
        with self.catalog.transaction() as conn:
            row = conn.execute(select(api_tokens).where(api_tokens.c.id == token_id)).first()
            if row is None or not hmac.compare_digest(row.secret_hash, _digest(secret)):
                return None, "unknown token"
            token = _token(row)
            if token.revoked_at is not None:
                return None, "revoked"
            if token.expires_at is not None and token.expires_at <= now:
                return None, "expired"
            # Its last use to the minute: a write per request would serialize the
            # server's readers behind the catalog's write lock for nothing.
            if token.last_used_at is None or now - token.last_used_at >= TOUCH_EVERY:
                conn.execute(update(api_tokens).where(api_tokens.c.id == token_id)
                             .values(last_used_at=now))  # fmt: skip
        return token, ""

    # -- sessions ---------------------------------------------------------------------------

    def open_session(
        self, who: Principal, origin: str, source: str, now: datetime, lifetime: timedelta
    ) -> tuple[str, str]:
        """A new session (a new id at every login: one planted before it is worth
        nothing): the cookie's value and the session's CSRF token."""
        cookie, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        with self.catalog.transaction() as conn:
            conn.execute(insert(web_sessions).values(
                id_hash=_digest(cookie), user=who.name, origin=origin,
                roles=json.dumps(list(who.roles)), access=who.access, csrf=csrf,
                source=source[:64], created_at=now, expires_at=now + lifetime,
            ))  # fmt: skip
        return cookie, csrf

    def session(self, plan: Plan, cookie: str, now: datetime) -> Principal | None:
        """Who holds the session ``cookie`` names, while it lasts. A local account's roles
        and access are read anew (a change applies at once; a removed account's sessions
        end); an OIDC login's are those its claims gave at login."""
        with self.catalog.transaction() as conn:
            row = conn.execute(select(web_sessions)
                               .where(web_sessions.c.id_hash == _digest(cookie))).first()  # fmt: skip
        if row is None or _utc(row.expires_at) <= now:
            return None
        if row.origin == "local":
            user = self.user(row.user)
            if user is None:
                return None
            return self.principal(plan, user, "session", csrf=row.csrf)
        return Principal(row.user, tuple(json.loads(row.roles)), row.access, "session",
                         csrf=row.csrf)  # fmt: skip

    def close_session(self, cookie: str) -> None:
        with self.catalog.transaction() as conn:
            conn.execute(delete(web_sessions).where(web_sessions.c.id_hash == _digest(cookie)))

    def forget_expired(self, now: datetime) -> int:
        with self.catalog.transaction() as conn:
            return int(conn.execute(delete(web_sessions)
                                    .where(web_sessions.c.expires_at <= now)).rowcount)  # fmt: skip


def _utc(value: datetime) -> datetime:
    from datetime import UTC  # noqa: PLC0415

    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _user(row: Any) -> User:
    return User(row.name, row.email, tuple(json.loads(row.roles)), row.access,
                row.password is not None, _utc(row.created_at))  # fmt: skip


def _token(row: Any) -> Token:
    def when(value: datetime | None) -> datetime | None:
        return _utc(value) if value is not None else None

    return Token(row.id, row.name, row.user, tuple(row.scopes.split()), _utc(row.created_at),
                 when(row.expires_at), when(row.revoked_at), when(row.last_used_at))  # fmt: skip
