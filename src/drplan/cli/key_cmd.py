"""``drplan key list|add|remove|passwd``: the passwords that open a repository."""

from __future__ import annotations

import os
import sys

import click
from rich.table import Table

from drplan.cli.context import Settings, console, emit_json, pass_settings
from drplan.cli.repo_access import open_repo, repo_options
from drplan.errors import UsageError
from drplan.repo.keys import KEY_PREFIX, KdfParams, add_key, describe, live_keys, revoke_key
from drplan.repo.password import read_password

NEW_PASSWORD_ENV = "DRPLAN_NEW_PASSWORD"


def _new_password(new_password_file: str | None) -> bytes:
    if new_password_file or os.environ.get(NEW_PASSWORD_ENV):
        if new_password_file:
            return read_password(new_password_file)
        return os.environ[NEW_PASSWORD_ENV].encode()
    if not sys.stdin.isatty():
        raise UsageError(
            "no new password given",
            hint=f"pass --new-password-file FILE or set ${NEW_PASSWORD_ENV}",
        )
    text: str = click.prompt("new password", hide_input=True, confirmation_prompt=True)
    if not text:
        raise UsageError("the new password is empty")
    return text.encode()


new_password_option = click.option(
    "--new-password-file",
    metavar="FILE",
    help=f"The new password (else ${NEW_PASSWORD_ENV}, else a prompt).",
)


@click.group("key")
def key_group() -> None:
    """Manage the passwords (key files) that open a repository."""


@key_group.command("list", short_help="List key files; the one your password opened is marked.")
@repo_options
@click.option("--json", "as_json", is_flag=True)
@pass_settings
def list_command(
    settings: Settings, repo_ref: str | None, password_file: str | None, as_json: bool
) -> None:
    """List key files; the one your password opened is marked."""
    with open_repo(settings, repo_ref, password_file, lock=None, index=False) as repo:
        keys = [
            describe(name, repo.storage.read(name))
            for name in live_keys(repo.storage, repo.key, repo.cipher)
        ]
        if as_json:
            emit_json([{**vars(k), "current": k.id == repo.key_id} for k in keys])
            return
        table = Table("", "id", "created", "host", "user", "label")
        for k in sorted(keys, key=lambda k: k.created):
            table.add_row(
                "*" if k.id == repo.key_id else "", k.id[:12], k.created, k.host, k.user, k.label
            )
        console().print(table)


@key_group.command("add", short_help="Add a password that opens the repository.")
@repo_options
@new_password_option
@click.option("--label", default="", help="A note to tell keys apart.")
@pass_settings
def add_command(
    settings: Settings,
    repo_ref: str | None,
    password_file: str | None,
    new_password_file: str | None,
    label: str,
) -> None:
    """Add a password that opens the repository."""
    with open_repo(settings, repo_ref, password_file, lock=None, index=False) as repo:
        key_id = add_key(
            repo.storage,
            repo.key,
            _new_password(new_password_file),
            KdfParams(),
            repo.cipher,
            label,
        )
        click.echo(f"added key {key_id[:12]}")


@key_group.command("remove", short_help="Remove a key file (not the one in use, never the last).")
@click.argument("key_id")
@repo_options
@pass_settings
def remove_command(
    settings: Settings, key_id: str, repo_ref: str | None, password_file: str | None
) -> None:
    """Remove a key file (not the one in use, and never the last)."""
    with open_repo(settings, repo_ref, password_file, lock=None, index=False) as repo:
        names = [n.removeprefix(KEY_PREFIX) for n in live_keys(repo.storage, repo.key, repo.cipher)]
        matches = [n for n in names if n.startswith(key_id)]
        if len(matches) != 1:
            raise UsageError(f"{len(matches)} keys match {key_id!r}", hint="see `drplan key list`")
        if matches[0] == repo.key_id:
            raise UsageError(
                "refusing to remove the key you opened the repository with",
                hint="open with another password to remove this one",
            )
        revoke_key(repo.storage, repo.key, repo.cipher, matches[0])
        click.echo(f"removed key {matches[0][:12]}")


@key_group.command("passwd", short_help="Change the password of the key file in use.")
@repo_options
@new_password_option
@pass_settings
def passwd_command(
    settings: Settings,
    repo_ref: str | None,
    password_file: str | None,
    new_password_file: str | None,
) -> None:
    """Change the password: write a key file for the new one, then remove the old."""
    with open_repo(settings, repo_ref, password_file, lock=None, index=False) as repo:
        new_id = add_key(
            repo.storage, repo.key, _new_password(new_password_file), KdfParams(), repo.cipher, ""
        )
        revoke_key(repo.storage, repo.key, repo.cipher, repo.key_id)
        click.echo(f"password changed (key {repo.key_id[:12]} replaced by {new_id[:12]})")
