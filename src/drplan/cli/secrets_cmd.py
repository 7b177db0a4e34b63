"""``drplan secrets list|verify|rotate``: every credential the plan needs, fingerprinted and
dated; each proven against its service; rotated inside an incident, new value proven before
the old one is revoked. Values are never printed (docs/security.md)."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

import click

from drplan.cli.context import Settings, console, counted, emit_json, pass_settings
from drplan.errors import DrplanError, SecretMissingError, UsageError

if TYPE_CHECKING:
    from drplan.security.secrets_inventory import Credential, Listed
    from drplan.security.secrets_rotate import Outcome
    from drplan.security.secrets_verify import Verdict

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for machines.")
password_file_option = click.option(
    "--password-file",
    metavar="FILE",
    help="Read the repository password from FILE (else $DRPLAN_PASSWORD, else the plan's"
    " password_command).",
)


@click.group("secrets")
def secrets_group() -> None:
    """The credentials the plan references: list them, prove they work."""


@secrets_group.command("list", short_help="Every credential: uses, fingerprint, last change.")
@json_option
@password_file_option
@pass_settings
def list_command(settings: Settings, /, as_json: bool, password_file: str | None) -> None:
    """Every secret the plan references, where it is used, whether it is set here, its
    keyed fingerprint and when it last changed (recorded in the state directory)."""
    from drplan.catalog.paths import state_dir  # noqa: PLC0415 - see cli.COMMANDS
    from drplan.security.secrets_inventory import (  # noqa: PLC0415
        ambient_s3,
        inventory,
        list_secrets,
    )

    plan = settings.load().plan
    rows = list_secrets(inventory(plan, password_file), Path(state_dir()))
    if as_json:
        emit_json([row.as_dict() for row in rows])
        return
    _print_list(rows, ambient_s3(plan))


def _print_list(rows: list[Listed], ambient: list[str]) -> None:
    from rich.table import Table  # noqa: PLC0415

    table = Table("reference", "kind", "used by", "set", "fingerprint", "last changed")
    for row in rows:
        data = row.as_dict()
        notes = [data["last_changed"] or "unknown" if data["set"] else "-"]
        if data["reused"]:
            notes.append("an earlier value, back again")
        if data["shared_with"]:
            notes.append("same value as " + ", ".join(data["shared_with"]))
        table.add_row(
            row.credential.reference,
            row.credential.kind,
            "\n".join(u.path for u in row.credential.uses),
            "yes" if data["set"] else f"no: {data['problem']}",
            data["fingerprint"] or "-",
            "\n".join(notes),
        )
    console().print(table)
    unset = sum(1 for row in rows if row.fingerprint is None)
    click.echo(
        f"{counted(len(rows), 'secret')}, {unset} not set here; fingerprints are HMAC-SHA256"
        " under this host's key, never the values; `unknown`: not seen to change since first"
        " listed here"
    )
    if ambient:
        click.echo(
            f"not listed: S3 location(s) {', '.join(ambient)} take AWS's own credentials"
            " (environment, ~/.aws, instance role); rotate those too"
        )


@secrets_group.command("verify", short_help="Prove each credential works, changing nothing.")
@click.argument("references", nargs=-1, metavar="[REFERENCE]...")
@json_option
@password_file_option
@pass_settings
def verify_command(
    settings: Settings, /, references: tuple[str, ...], as_json: bool, password_file: str | None
) -> None:
    """Prove each credential (or only REFERENCE: `${VAR}`, `VAR`, `$DRPLAN_PASSWORD`,
    `password_command`) against its real service, without changing anything there and
    without sending anything to people. Exit 1 when one failed, 5 when one is not set."""
    from drplan.security.secrets_inventory import inventory  # noqa: PLC0415
    from drplan.security.secrets_verify import verify_secrets  # noqa: PLC0415

    plan = settings.load().plan
    chosen = _chosen(inventory(plan, password_file), references)
    verdicts = verify_secrets(plan, chosen)
    if as_json:
        emit_json([v.as_dict() for v in verdicts])
    else:
        for verdict in verdicts:
            click.echo(_line(verdict))
    _conclude(verdicts)


def _line(verdict: Verdict) -> str:
    return (
        f"{verdict.status:<14} {verdict.credential.reference}  {verdict.credential.kind}"
        f"  {verdict.seconds:.2f}s  {verdict.detail}"
    )


def _conclude(verdicts: list[Verdict]) -> None:
    failed = [v.credential.reference for v in verdicts if v.status == "failed"]
    unset = [v.credential.reference for v in verdicts if v.status == "not set"]
    if failed:
        raise DrplanError(
            f"{counted(len(failed), 'secret')} of {len(verdicts)} failed verification:"
            f" {', '.join(failed)}",
            hint="each one's line says what its service answered; fix or rotate it, then run"
            " `drplan secrets verify` again",
        )
    if unset:
        raise SecretMissingError(
            f"{counted(len(unset), 'secret')} not set here, so not verified: {', '.join(unset)}",
            hint="export them (or name the references to verify) and run again",
        )


@secrets_group.command("rotate", short_help="New values proven, then the old ones revoked.")
@click.argument("references", nargs=-1, metavar="[REFERENCE]...")
@click.option("--incident", metavar="INC", envvar="DRPLAN_INCIDENT",
              help="The incident it is recorded in (in a runbook step: the step's own).")  # fmt: skip
@click.option("--new-values", metavar="FILE", help="The new values as NAME=value lines (the"
              " file mode 0600): PG_PASSWORD for ${PG_PASSWORD}, DRPLAN_PASSWORD for the"
              " repository password.")  # fmt: skip
@click.option("--from-env-prefix", metavar="PREFIX", help="Else each new value from"
              " $PREFIX<NAME> (default NEW_: $NEW_PG_PASSWORD).")  # fmt: skip
@click.option("--confirm-revoked", is_flag=True, help="Prove the old values refused (revoked at"
              " the provider since) and record them revoked.")  # fmt: skip
@click.option("--old-values", metavar="FILE", help="With --confirm-revoked: the old values"
              " (else $OLD_<NAME>, else the plan's current value), each taken only with the"
              " fingerprint the timeline recorded.")  # fmt: skip
@click.option("--as", "role", metavar="ROLE", help="The role acting (recorded).")
@click.option("--catalog", metavar="URL", help="The catalog incidents are recorded in.")
@json_option
@password_file_option
@pass_settings
def rotate_command(
    settings: Settings, /, references: tuple[str, ...], incident: str | None,
    new_values: str | None, from_env_prefix: str | None, confirm_revoked: bool,
    old_values: str | None, role: str | None, catalog: str | None, as_json: bool,
    password_file: str | None,
) -> None:  # fmt: skip
    """Rotate each credential with a new value given (or only REFERENCE) inside incident
    INC: the new value set where drplan can (a PostgreSQL role, the repository's key
    files), proven against every service that uses it, recorded verified; then the old one
    revoked where drplan can and proven refused, recorded revoked. Elsewhere a person
    revokes it at the provider, and --confirm-revoked proves and records it later. Exit 1
    when one failed (what drplan changed for it undone), 5 when one is not set here, 24
    when an old value would be recorded revoked before its new one was verified."""
    from drplan.catalog.paths import state_dir  # noqa: PLC0415
    from drplan.cli.evidence_cmd import _incidents  # noqa: PLC0415 - it imports this module
    from drplan.cli.repo_access import audit_warning  # noqa: PLC0415
    from drplan.security import secrets_rotate_values as given  # noqa: PLC0415
    from drplan.security.secrets_inventory import inventory  # noqa: PLC0415
    from drplan.security.secrets_rotate import Rotator, raise_for, rotate  # noqa: PLC0415
    from drplan.security.secrets_rotate_confirm import confirm  # noqa: PLC0415

    if not incident:
        raise UsageError("give the incident the rotation is recorded in",
                         hint="--incident INC (a runbook step passes its own, $DRPLAN_INCIDENT)")  # fmt: skip
    if confirm_revoked and (new_values or from_env_prefix):
        raise UsageError("--confirm-revoked proves old values: it takes no new ones",
                         hint="--old-values FILE, or $OLD_<NAME>")  # fmt: skip
    if old_values and not confirm_revoked:
        raise UsageError("--old-values goes with --confirm-revoked")
    plan = settings.load().plan
    credentials = _chosen(inventory(plan, password_file), references)
    olds = given.read_values_file(old_values) if old_values else {}
    if not confirm_revoked:
        values, source = given.new_values(new_values, from_env_prefix, os.environ)
        chosen = given.chosen_new(credentials, values, bool(references), source, bool(new_values))
    with _incidents(catalog) as service:
        found = service.load(incident)
        found.writable()
        rotator = Rotator(plan, service, found.id, service.actor(role, found.roles),
                          Path(state_dir()), audit_warning)  # fmt: skip
        if confirm_revoked:
            outcomes = confirm(rotator, credentials, bool(references), olds, os.environ)
        else:
            outcomes = rotate(rotator, chosen)
    if as_json:
        emit_json({"incident": found.id, "secrets": [o.as_dict() for o in outcomes]})
    else:
        _print_rotation(found.id, outcomes)
    raise_for(outcomes, confirm_revoked)


def _print_rotation(incident: str, outcomes: list[Outcome]) -> None:
    for outcome in outcomes:
        click.echo(outcome.line())
    if any(o.status in ("rotated", "pending") for o in outcomes):
        click.echo(f"recorded in {incident}'s timeline (fingerprints, never values). Give the"
                   " plan its new values where it reads them (environment, secret store,"
                   " password_command), and delete the file of new values")  # fmt: skip


_BARE = re.compile(r"\$?\{?([A-Za-z_][A-Za-z0-9_]*)\}?")
REPOSITORY_ALIASES = ("$DRPLAN_PASSWORD", "DRPLAN_PASSWORD", "password_command", "--password-file",
                      "$DRPLAN_PASSWORD_FILE", "repository-password")  # fmt: skip


def _chosen(credentials: list[Credential], wanted: tuple[str, ...]) -> list[Credential]:
    """The credentials REFERENCE names (all without any): `VAR`, `$VAR` or `${VAR}`; any of
    the repository password's sources name it, whichever one is in use."""
    if not wanted:
        return credentials
    by_reference = {c.reference: c for c in credentials}
    repository = credentials[-1]  # inventory() puts it last
    chosen: list[Credential] = []
    for word in wanted:
        match = _BARE.fullmatch(word)
        name = "${" + match.group(1) + "}" if match else word
        if word in REPOSITORY_ALIASES:
            found = repository
        elif name in by_reference:
            found = by_reference[name]
        else:
            known = ", ".join(c.reference for c in credentials)
            raise UsageError(
                f"{word!r} is not a secret of the plan (its secrets are {known})",
                hint="see `drplan secrets list`",
            )
        if found not in chosen:
            chosen.append(found)
    return chosen
