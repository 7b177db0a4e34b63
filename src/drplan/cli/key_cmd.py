"""``drplan key list|add|remove|passwd``: the passwords that open a repository."""

from __future__ import annotations

import os
import sys
from datetime import datetime

import click
from rich.table import Table

from drplan.cli.context import Settings, console, emit_json, pass_settings
from drplan.cli.repo_access import (
    audit_warning,
    open_repo,
    password,
    plan_or_none,
    repo_options,
    resolve_storage,
)
from drplan.clock import rfc3339
from drplan.errors import LocationDownError, UsageError
from drplan.repo.immutability import revoke_key_file
from drplan.repo.key_rotation import NEW_PASSWORD_ENV, Outcome, Target, rotate_locations
from drplan.repo.keys import KEY_PREFIX, KdfParams, add_key, describe, live_keys
from drplan.repo.password import read_password
from drplan.repo.reencrypt import Reencrypted, reencrypt_locations
from drplan.repo.repository import Repository
from drplan.security.repo_audit_record import recorded


def new_password(new_password_file: str | None) -> bytes:
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
    with open_repo(
        settings, repo_ref, password_file, lock=None, operation="key add", index=False
    ) as repo:
        key_id = add_key(
            repo.storage,
            repo.opened_master(),
            new_password(new_password_file),
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
    with open_repo(
        settings, repo_ref, password_file, lock=None, operation="key remove", index=False
    ) as repo:
        names = [n.removeprefix(KEY_PREFIX) for n in live_keys(repo.storage, repo.key, repo.cipher)]
        matches = [n for n in names if n.startswith(key_id)]
        if len(matches) != 1:
            raise UsageError(f"{len(matches)} keys match {key_id!r}", hint="see `drplan key list`")
        if matches[0] == repo.key_id:
            raise UsageError(
                "refusing to remove the key you opened the repository with",
                hint="open with another password to remove this one",
            )
        until = revoke_key_file(repo, matches[0])
        click.echo(f"removed key {matches[0][:12]}")
        _still_locked(matches[0], until)


def _still_locked(key_id: str, until: datetime | None) -> None:
    if until is not None:
        click.echo(
            f"key file {key_id[:12]} stays under Object Lock until {rfc3339(until)} (a delete"
            " would only hide it): drplan refuses it, but its password still unwraps the master"
            " key from it until then, and a prune after that removes it; if that password"
            " leaked, run `drplan key rotate`",
            err=True,
        )


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
    with open_repo(
        settings, repo_ref, password_file, lock=None, operation="key passwd", index=False
    ) as repo:
        new_id = add_key(
            repo.storage,
            repo.opened_master(),
            new_password(new_password_file),
            KdfParams(),
            repo.cipher,
            "",
        )
        until = revoke_key_file(repo, repo.key_id)
        click.echo(f"password changed (key {repo.key_id[:12]} replaced by {new_id[:12]})")
        _still_locked(repo.key_id, until)


@key_group.command("rotate", short_help="Give the repository a new master key (and password).")
@repo_options
@new_password_option
@click.option(
    "--all-locations",
    is_flag=True,
    help="Every location of the plan (the same repository in each), with the same new key.",
)
@click.option("--label", default="rotated", help="A note on the new key file.")
@click.option(
    "--reencrypt",
    is_flag=True,
    help="Also rewrite every pack and object under the new data key, then drop the old keys"
    " (resumable: rerun it). Without a new password: re-encryption alone.",
)
@click.option(
    "--limit-upload",
    type=click.IntRange(min=1),
    metavar="KIB",
    help="With --reencrypt: upload at most KIB KiB/s to each location.",
)
@click.option("--json", "as_json", is_flag=True)
@pass_settings
def rotate_command(
    settings: Settings,
    repo_ref: str | None,
    password_file: str | None,
    new_password_file: str | None,
    all_locations: bool,
    label: str,
    reencrypt: bool,
    limit_upload: int | None,
    as_json: bool,
) -> None:
    """Rotate the master key: a new keyring and one key file for the new password; every
    other key file is revoked, and the old password opens nothing. No pack, index,
    snapshot or WAL object is rewritten. Rerun with the new password to finish a rotation
    a crash or an unreachable location cut short."""
    if all_locations == bool(repo_ref):
        raise UsageError(
            "name one repository (--repo) or pass --all-locations",
            hint="e.g. `drplan key rotate --all-locations --new-password-file FILE`",
        )
    targets = _targets(settings, repo_ref, all_locations)
    current = password(settings, password_file)
    fresh = new_password(new_password_file) if _new_password_given(new_password_file) else None

    redone: list[Reencrypted] = []

    def opened() -> Repository | None:  # what the audit entries are sealed with: the newest
        found: list[Repository | None] = [r.repo for r in redone if r.repo is not None]
        return next((r for r in found or [t.repo for t in targets] if r is not None), None)

    with recorded("key rotate", audit_warning, opened) as record:  # in each location's trail
        for target in targets:
            target.storage = record.use(target.name, target.storage)
        outcomes = rotate_locations(targets, current, fresh, KdfParams(), label, reencrypt)
        if reencrypt and not any(o.error for o in outcomes):
            storages = [(t.name, t.storage) for t in targets]
            limit = limit_upload * 1024 if limit_upload else None
            redone, dropped = reencrypt_locations(storages, fresh or current, limit, _progress)
    failed = [o for o in outcomes if o.error]
    if not as_json:
        _tell_rotated(outcomes)
    if reencrypt and not failed:
        _tell_reencrypted(redone, dropped, as_json, [o.as_dict() for o in outcomes])
        return
    if as_json:
        emit_json([o.as_dict() for o in outcomes])
    if failed:
        raise LocationDownError(
            f"the rotation did not reach {', '.join(o.location for o in failed)}",
            hint="rerun `drplan key rotate` with the new password once they can be reached:"
            " it finishes the rotation there",
        )


def _tell_rotated(outcomes: list[Outcome]) -> None:
    for o in outcomes:
        if o.error:
            click.echo(f"{o.location}: not rotated: {o.error}")
            continue
        click.echo(
            f"{o.location}: master key rotated (data key generation {o.generation});"
            f" {len(o.retired)} old key file(s) revoked"
        )
        _tell_locked(o.locked)


def _tell_locked(locked: dict[str, datetime]) -> None:
    for name, until in sorted(locked.items()):
        click.echo(f"  {name} stays stored until {until:%Y-%m-%d %H:%M} UTC (Object Lock)")


def _progress(text: str) -> None:
    click.echo(text, err=True)


def _tell_reencrypted(
    redone: list[Reencrypted], dropped: bool, as_json: bool, rotated: list[dict[str, object]]
) -> None:
    if as_json:
        emit_json({"rotated": rotated, "reencrypted": [r.as_dict() for r in redone],
                   "old_keys_dropped": dropped})  # fmt: skip
    else:
        for r in redone:
            if r.error:
                click.echo(f"{r.location}: not re-encrypted: {r.error}")
                continue
            click.echo(
                f"{r.location}: re-encrypted under data key generation {r.generation}:"
                f" {r.packs_rewritten} pack(s) rewritten, {r.objects_resealed} object(s) and"
                f" {len(r.snapshots_renamed)} snapshot(s) re-sealed"
            )
            for old, new in sorted(r.snapshots_renamed.items()):
                click.echo(f"  snapshot {old[:8]} is now {new[:8]}")
            for problem in r.damaged:
                click.echo(f"  left as it is: {problem}")
            _tell_locked(r.locked)
        if dropped:
            click.echo("the old data keys are gone: the keyring holds the current one alone")
    if not dropped:
        left = [r.location for r in redone if not r.complete]
        raise LocationDownError(
            f"re-encryption is not finished in {', '.join(left) or 'every location'}:"
            " the old data keys are kept",
            hint="rerun `drplan key rotate --reencrypt` with the new password once they can be"
            " read (damage: see `drplan check --read-data`)",
        )


def _new_password_given(new_password_file: str | None) -> bool:
    return bool(new_password_file or os.environ.get(NEW_PASSWORD_ENV) or sys.stdin.isatty())


def _targets(settings: Settings, repo_ref: str | None, all_locations: bool) -> list[Target]:
    if not all_locations:
        return [Target(repo_ref or "", resolve_storage(settings, repo_ref))]
    plan = plan_or_none(settings)
    if plan is None or not plan.locations:
        raise UsageError("--all-locations needs a plan with locations", hint="pass --plan FILE")
    from drplan.locations.storage import storage_for  # noqa: PLC0415 - boto3 is slow

    return [Target(name, storage_for(location)) for name, location in plan.locations.items()]
