"""``drplan user`` and ``drplan token``: who may use the web server and the API (see
drplan.web.accounts). These commands act on the catalog directly: whoever runs them on a
host of the daemon is trusted as its administrator, and each change they make is in the
catalog's audit trail (drplan.security.audit, read by ``drplan audit``, audit_cmd.py)
under ``cli:USER@HOST``."""

from __future__ import annotations

import getpass
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import click

from drplan import clock
from drplan.cli.context import console, emit_json
from drplan.errors import UsageError

if TYPE_CHECKING:
    from drplan.catalog.store import Catalog
    from drplan.security.audit import AuditTrail
    from drplan.web.accounts import Accounts

CATALOG_HELP = "The catalog (default $DRPLAN_CATALOG, else SQLite in the state directory)."
ACCESS = ("viewer", "responder", "commander", "admin")


@contextmanager
def catalog_at(url: str | None) -> Iterator[Catalog]:
    """The catalog at ``url`` (default: $DRPLAN_CATALOG, else the state directory's)."""
    from drplan.catalog.paths import default_url  # noqa: PLC0415 - see cli.COMMANDS
    from drplan.catalog.store import Catalog  # noqa: PLC0415

    catalog = Catalog.open(url or default_url())
    try:
        yield catalog
    finally:
        catalog.close()


@contextmanager
def _access(url: str | None) -> Iterator[tuple[Accounts, AuditTrail]]:
    from drplan.security.audit import AuditTrail  # noqa: PLC0415
    from drplan.web.accounts import Accounts  # noqa: PLC0415

    with catalog_at(url) as catalog:
        yield Accounts(catalog), AuditTrail(catalog)


def cli_actor() -> str:
    return f"cli:{getpass.getuser()}@{socket.gethostname()}"


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\n")
    if not sys.stdin.isatty():
        raise UsageError("no terminal to ask the password on",
                         hint="pipe it in with --password-stdin")  # fmt: skip
    return str(click.prompt("password", hide_input=True, confirmation_prompt=True))


# -- users --------------------------------------------------------------------------------


@click.group("user")
def user_group() -> None:
    """Local accounts of the web dashboard and the API."""


@user_group.command("add", short_help="Add a local account.")
@click.argument("name")
@click.option("--email", metavar="ADDRESS", help="Their e-mail address (roles may map from it).")
@click.option(
    "--role",
    "roles",
    multiple=True,
    metavar="ROLE",
    help="A role of the plan they hold (repeatable).",
)
@click.option("--access", type=click.Choice(ACCESS), help="Access besides what their roles give.")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@click.option("--no-password", is_flag=True, help="No local login (OIDC only, or tokens only).")
@click.option("--catalog", metavar="URL", help=CATALOG_HELP)
def user_add(
    name: str, email: str | None, roles: tuple[str, ...], access: str | None,
    password_stdin: bool, no_password: bool, catalog: str | None,
) -> None:  # fmt: skip
    """Add the account NAME (a password of 12 characters or more, asked for or read from
    standard input)."""
    secret = None if no_password else _read_password(password_stdin)
    with _access(catalog) as (accounts, trail):
        user = accounts.add_user(name, email, secret, list(roles), access, clock.now())  # type: ignore[arg-type]
        trail.record(cli_actor(), "user.add", {"user": name, "email": email,
                     "roles": list(user.roles), "access": access}, clock.now())  # fmt: skip
    click.echo(f"added user {name}")


@user_group.command("remove", short_help="Remove an account, its tokens and sessions.")
@click.argument("name")
@click.option("--catalog", metavar="URL", help=CATALOG_HELP)
def user_remove(name: str, catalog: str | None) -> None:
    """Remove the account NAME, its tokens and its sessions."""
    with _access(catalog) as (accounts, trail):
        accounts.remove_user(name)
        trail.record(cli_actor(), "user.remove", {"user": name}, clock.now())
    click.echo(f"removed user {name}, its tokens and its sessions")


@user_group.command("passwd", short_help="Set an account's password.")
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@click.option("--catalog", metavar="URL", help=CATALOG_HELP)
def user_passwd(name: str, password_stdin: bool, catalog: str | None) -> None:
    """Set the password of NAME (its sessions end)."""
    secret = _read_password(password_stdin)
    with _access(catalog) as (accounts, trail):
        accounts.set_password(name, secret)
        trail.record(cli_actor(), "user.passwd", {"user": name}, clock.now())
    click.echo(f"password of {name} set; its sessions ended")


@user_group.command("list", short_help="Every account.")
@click.option("--catalog", metavar="URL", help=CATALOG_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print them as JSON.")
def user_list(catalog: str | None, as_json: bool) -> None:
    """Every account (never a password)."""
    with _access(catalog) as (accounts, _):
        users = accounts.users()
    if as_json:
        emit_json([{"name": u.name, "email": u.email, "roles": list(u.roles),
                    "access": u.access, "password": u.has_password,
                    "created_at": clock.rfc3339(u.created_at)} for u in users])  # fmt: skip
        return
    if not users:
        click.echo("no users: `drplan user add NAME` makes one")
    for u in users:
        extra = f" +{u.access}" if u.access else ""
        console().print(f"{u.name}  {u.email or '-'}  roles: {', '.join(u.roles) or '-'}{extra}"
                        f"{'' if u.has_password else '  (no local login)'}", highlight=False)  # fmt: skip


# -- tokens -------------------------------------------------------------------------------


@click.group("token")
def token_group() -> None:
    """Scoped API tokens: shown once, stored hashed, revocable."""


@token_group.command("create", short_help="Make a token and print it, once.")
@click.argument("name")
@click.option(
    "--user", required=True, metavar="NAME", help="Whose token: it may do no more than they may."
)
@click.option("--scope", "scopes", multiple=True, required=True, metavar="SCOPE",
              help="read, incidents:write, drills:run, events:write or admin (repeatable).")  # fmt: skip
@click.option("--expires", metavar="DURATION", default="90d", show_default=True,
              help="How long it is valid, e.g. 30d; `never` for no end.")  # fmt: skip
@click.option("--catalog", metavar="URL", help=CATALOG_HELP)
def token_create(
    name: str, user: str, scopes: tuple[str, ...], expires: str, catalog: str | None
) -> None:
    """Make a token NAME for a user and print it, once: it is stored hashed."""
    from drplan.plan.durations import parse_duration  # noqa: PLC0415

    try:
        lasting = None if expires == "never" else parse_duration(expires)
    except ValueError as exc:
        raise UsageError(f"--expires: {exc}", hint="e.g. 30d, 12h; or never") from None
    with _access(catalog) as (accounts, trail):
        secret, token = accounts.create_token(user, name, list(scopes), lasting, clock.now())
        trail.record(cli_actor(), "token.create", {"token": token.id, "name": name,
                     "user": user, "scopes": list(token.scopes), "expires":
                     clock.rfc3339(token.expires_at) if token.expires_at else None},
                     clock.now())  # fmt: skip
    click.echo(secret)
    until = f"until {clock.rfc3339(token.expires_at)}" if token.expires_at else "with no end"
    click.echo(f"token {token.id} for {user} ({', '.join(token.scopes)}), valid {until}:"
               " it is not shown again", err=True)  # fmt: skip


@token_group.command("list", short_help="Every token (never its secret).")
@click.option("--user", metavar="NAME", help="Only this user's.")
@click.option("--catalog", metavar="URL", help=CATALOG_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print them as JSON.")
def token_list(user: str | None, catalog: str | None, as_json: bool) -> None:
    """Every token (never its secret)."""
    with _access(catalog) as (accounts, _):
        tokens = accounts.tokens(user)

    def when(value: Any) -> str | None:
        return clock.rfc3339(value) if value is not None else None

    if as_json:
        emit_json([{"id": t.id, "name": t.name, "user": t.user, "scopes": list(t.scopes),
                    "created_at": when(t.created_at), "expires_at": when(t.expires_at),
                    "revoked_at": when(t.revoked_at), "last_used_at": when(t.last_used_at)}
                   for t in tokens])  # fmt: skip
        return
    for t in tokens:
        state = (f"revoked {when(t.revoked_at)}" if t.revoked_at
                 else f"expires {when(t.expires_at)}" if t.expires_at else "no end")  # fmt: skip
        console().print(f"{t.id}  {t.name}  {t.user}  {' '.join(t.scopes)}  {state}",
                        highlight=False)  # fmt: skip


@token_group.command("revoke", short_help="Revoke a token.")
@click.argument("token_id", metavar="ID")
@click.option("--catalog", metavar="URL", help=CATALOG_HELP)
def token_revoke(token_id: str, catalog: str | None) -> None:
    """Revoke the token ID: refused from now on."""
    with _access(catalog) as (accounts, trail):
        token = accounts.revoke(token_id, clock.now())
        trail.record(cli_actor(), "token.revoke", {"token": token.id, "user": token.user},
                     clock.now())  # fmt: skip
    click.echo(f"revoked token {token.id} ({token.name}, {token.user})")
