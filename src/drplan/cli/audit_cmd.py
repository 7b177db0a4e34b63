"""``drplan audit list|log|verify``: the two audit trails.

``list`` reads the catalog's trail of changes made through the web server, the API and
``user``/``token`` (drplan.security.audit); ``log`` reads the trail of repository
operations each location keeps (drplan.security.repo_audit); ``verify`` checks both: the
catalog's chain, and every location's chain on its own and against the others and this
host's anchors (exit 13 on a gap or damage, 1 when a location cannot be read).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import click

from drplan import clock
from drplan.cli.access_cmd import CATALOG_HELP, catalog_at
from drplan.cli.context import Settings, console, emit_json, human_bytes, pass_settings
from drplan.cli.repo_access import password, plan_or_none, resolve_storage
from drplan.errors import DrplanError, IntegrityError, RepositoryNotFoundError, UsageError
from drplan.repo.repository import Repository
from drplan.security.repo_audit import Entry
from drplan.security.repo_audit_verify import Trail, cross_check, read_trail

LOCATION_HELP = (
    "Only this location: a plan location's name, a path or an s3:// URL (repeatable);"
    " default every location of the plan."
)
location_option = click.option("--location", "locations", multiple=True, metavar="LOCATION",
                               help=LOCATION_HELP)  # fmt: skip
since_option = click.option("--since", metavar="TIME", help="From this moment on (RFC 3339).")
_ID = re.compile(r"[0-9a-f]{64}")  # a snapshot's, a key's: shown as their first 8 digits
password_option = click.option("--password-file", metavar="FILE",
                               help="Read the repository password from FILE.")  # fmt: skip


@click.group("audit")
def audit_group() -> None:
    """The audit trails: changes made through the web server and the API (in the catalog),
    and every operation on a repository (in each location)."""


def _since(since: str | None) -> Any:
    try:
        return clock.parse_rfc3339(since) if since else None
    except ValueError as exc:
        raise UsageError(f"--since: {exc}", hint="e.g. 2026-12-01T00:00:00Z") from None


@audit_group.command("list", short_help="The catalog's trail, the oldest entry first.")
@since_option
@click.option("--catalog", metavar="URL", help=CATALOG_HELP)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per entry.")
def audit_list(since: str | None, catalog: str | None, as_json: bool) -> None:
    """Every change made through the web server and the API, the oldest first: when, who,
    what, from where."""
    from drplan.security.audit import AuditTrail  # noqa: PLC0415 - see cli.COMMANDS

    start = _since(since)
    with catalog_at(catalog) as store:
        for event in AuditTrail(store).entries(start):
            if as_json:
                click.echo(json.dumps(event.as_dict(), sort_keys=True))
            else:
                said = ", ".join(f"{k}={v}" for k, v in sorted(event.data.items()) if v is not None)
                console().print(f"{clock.rfc3339(event.at)}  {event.actor}  {event.kind}  {said}",
                                highlight=False, markup=False)  # fmt: skip


# -- the repository trails ------------------------------------------------------------------


def _trails(
    settings: Settings, refs: tuple[str, ...], password_file: str | None
) -> Iterator[tuple[str, Trail | str]]:
    """Each location's trail as read, or why it could not be (a location of the plan
    without a repository is left out: nothing was ever recorded there)."""
    explicit = bool(refs)
    if not explicit:
        plan = plan_or_none(settings)
        refs = tuple(plan.locations) if plan is not None else ()
    if not refs:
        return
    try:
        secret = password(settings, password_file)
    except DrplanError as exc:
        if explicit:
            raise
        for ref in refs:
            yield ref, f"not read: {exc.message}"
        return
    for ref in refs:
        try:
            repo = Repository.open(resolve_storage(settings, ref), secret)
            yield ref, read_trail(repo, ref)
        except RepositoryNotFoundError as exc:
            if explicit:
                yield ref, exc.message
        except UsageError:
            raise
        except DrplanError as exc:
            yield ref, exc.message


@audit_group.command("verify", short_help="Check both trails: nothing altered, removed or cut.")
@location_option
@click.option("--catalog", metavar="URL", help=CATALOG_HELP)
@password_option
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON.")
@pass_settings
def audit_verify(
    settings: Settings, locations: tuple[str, ...], catalog: str | None,
    password_file: str | None, as_json: bool,
) -> None:  # fmt: skip
    """Check the catalog's trail, and every location's trail of repository operations:
    each entry authentic, no gap, no entry replaced, none of the newest removed (against
    the other locations and this host's anchors). Exit 13 when one is wrong, 1 when a
    location cannot be read."""
    from drplan.security.audit import AuditTrail  # noqa: PLC0415 - see cli.COMMANDS

    with catalog_at(catalog) as store:
        trail = AuditTrail(store)
        problems = trail.verify()
        count = sum(1 for _ in trail.entries())
    read = list(_trails(settings, locations, password_file))
    trails = [t for _, t in read if isinstance(t, Trail)]
    unreadable = {ref: why for ref, why in read if isinstance(why, str)}
    cross_check(trails)
    if as_json:
        emit_json({
            "catalog": {"entries": count, "problems": problems},
            "locations": [t.as_dict() for t in trails]
            + [{"location": ref, "error": why} for ref, why in unreadable.items()],
        })  # fmt: skip
    else:
        _print_verified(problems, count, trails, unreadable)
    damaged = [t.label for t in trails if t.errors]
    if problems or damaged:
        where = (["the catalog"] if problems else []) + damaged
        raise IntegrityError(
            f"the audit trail of {', '.join(where)} has gaps or damage (see above)",
            hint="what was there: the catalog's backups, the other locations' trails, and under"
            " Object Lock the removed entries' versions (docs/security.md, Audit trail)",
        )
    if unreadable:
        raise DrplanError(f"the audit trail of {', '.join(unreadable)} could not be read",
                          hint="see `drplan locations status`")  # fmt: skip


def _print_verified(
    problems: list[str], count: int, trails: list[Trail], unreadable: dict[str, str]
) -> None:
    for problem in problems:
        click.echo(f"drplan: catalog: {problem}", err=True)
    if not problems:
        click.echo(f"the audit trail holds: {count} entries, every link intact")
    for trail in trails:
        facts = trail.as_dict()
        span = f", {facts['first']} to {facts['last']}" if facts["first"] else ""
        state = "intact" if not trail.errors else f"{len(trail.errors)} problem(s)"
        click.echo(f"{trail.label} ({trail.url}): {facts['entries']} entries{span}: {state}")
        for finding in trail.findings:
            if finding.error:
                click.echo(f"drplan: {trail.label}: {finding.kind}: {finding.message}", err=True)
            else:
                click.echo(f"  {finding.message}")
    for ref, why in unreadable.items():
        click.echo(f"drplan: {ref}: {why}", err=True)


@audit_group.command("log", short_help="Every repository operation, the oldest first.")
@location_option
@since_option
@password_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object per entry.")
@pass_settings
def audit_log(
    settings: Settings, locations: tuple[str, ...], since: str | None,
    password_file: str | None, as_json: bool,
) -> None:  # fmt: skip
    """Every operation recorded in the locations, the oldest first: when, where, who, what it
    touched, how it ended. Entries that cannot be read are counted on standard error."""
    start = _since(since)
    read = list(_trails(settings, locations, password_file))
    if not read:
        raise UsageError("no location to read", hint="pass --location, or run with a plan")
    rows: list[tuple[str, Entry]] = []
    for ref, trail in read:
        if isinstance(trail, str):
            click.echo(f"drplan: {ref}: {trail}", err=True)
            continue
        rows += [(ref, e) for e in trail.entries if start is None or e.time >= start]
        unread = [f for f in trail.findings if f.kind == "damaged"]
        if unread:
            click.echo(f"drplan: {ref}: {len(unread)} entries cannot be read; run `drplan audit"
                       " verify`", err=True)  # fmt: skip
    for ref, entry in sorted(rows, key=lambda row: (row[1].time, row[0], row[1].ref)):
        if as_json:
            click.echo(json.dumps({"location": ref, "name": entry.ref.name, **entry.fields},
                                  sort_keys=True))  # fmt: skip
        else:
            console().print(_line(ref, entry), highlight=False, markup=False)


def _line(ref: str, entry: Entry) -> str:
    f = entry.fields
    outcome = f["outcome"] if f["outcome"] != "failed" else f"failed ({f['error']})"
    late = " (written late)" if f["late"] else ""
    said = "; ".join(p for p in (_details(f["details"]), _touched(f["touched"])) if p)
    return (f"{clock.rfc3339(entry.time)}  {ref} #{entry.ref.seq}  {f['user']}@{f['host']}"
            f"  {entry.action}  {outcome}{late}  {said}")  # fmt: skip


def _details(details: dict[str, Any]) -> str:
    """``snapshot=1a2b3c4d target=/srv/out``: what the command noted, its plain values."""
    said = []
    for key, value in sorted(details.items()):
        if isinstance(value, str) and _ID.fullmatch(value):
            said.append(f"{key}={value[:8]}")
        elif isinstance(value, str | int | float):
            said.append(f"{key}={value}")
    return " ".join(said)


def _touched(touched: dict[str, Any]) -> str:
    """``wrote snapshots 1a2b3c4d, data 3 (40 MiB); read 12 (41 MiB)``."""
    parts = []
    for action, verb in (("written", "wrote"), ("deleted", "deleted")):
        kinds = touched.get(action) or {}
        said = [
            f"{kind} {' '.join(i[:8] for i in c['ids'])}" if c.get("ids")
            else f"{kind} {c['objects']}" + (f" ({human_bytes(c['bytes'])})" if c["bytes"] else "")
            for kind, c in sorted(kinds.items())
        ]  # fmt: skip
        if said:
            parts.append(f"{verb} {', '.join(said)}")
    reads = (touched.get("read") or {}).values()
    if reads:
        parts.append(f"read {sum(c['objects'] for c in reads)}"
                     f" ({human_bytes(sum(c['bytes'] for c in reads))})")  # fmt: skip
    return "; ".join(parts)
