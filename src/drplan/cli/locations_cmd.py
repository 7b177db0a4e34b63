"""``drplan locations status``: every location of the plan, reachable or not, and how far behind.

Every location is shown, however many are down; then, when one is, the command fails
(exit 23) naming them, so scripts and monitoring can tell without reading the table."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from functools import partial
from typing import TYPE_CHECKING, Any

import click

from drplan.cli.context import Settings, console, emit_json, human_bytes, pass_settings
from drplan.cli.repo_access import password
from drplan.errors import DrplanError, LocationDownError, WrongPasswordError
from drplan.locations.storage import storage_for
from drplan.repo.repository import Repository

if TYPE_CHECKING:
    from drplan.locations.status import LocationState
    from drplan.plan.model import Location, Plan


@click.group("locations")
def locations_group() -> None:
    """The plan's locations: primary, secondary, cloud and archive copies."""


def _reference(
    plan: Plan, settings: Settings, password_file: str | None
) -> tuple[Repository | None, dict[str, DrplanError]]:
    """The repository most locations hold (the primary's on a tie): it supplies the key
    that tells replicas from foreign repositories. Trusting whichever location opened
    first would call every real replica foreign after one location was re-initialised.
    With it, what opening each other location raised; None when no location opened
    (each is then shown with why), unless it was the password: that is the thing to fix."""
    secret = password(settings, password_file)
    opened: list[tuple[str, Repository]] = []
    failed: dict[str, DrplanError] = {}
    for name, location in plan.locations.items():
        try:
            opened.append((name, Repository.open(storage_for(location), secret)))
        except DrplanError as exc:  # lost, unreachable: status says
            failed[name] = exc
    wrong = [exc for exc in failed.values() if isinstance(exc, WrongPasswordError)]
    if not opened and wrong:
        problems = "; ".join(f"{name}: {exc.message}" for name, exc in failed.items())
        raise WrongPasswordError(
            f"the password opens no location of the plan ({problems})", hint=wrong[0].hint
        )
    if not opened:
        return None, failed
    votes = Counter(repo.config.id for _, repo in opened)
    primary = [repo.config.id for name, repo in opened if plan.locations[name].role == "primary"]
    best = max(votes, key=lambda rid: (votes[rid], rid in primary))
    return next(repo for _, repo in opened if repo.config.id == best), failed


def _protection(location: Location) -> dict[str, Any]:
    lock = getattr(location, "immutability", None)
    return {
        "role": location.role.value,
        "kind": location.kind,
        "offsite": location.is_offsite,
        "storage_class": getattr(location, "storage_class", None),
        "immutability": f"{lock.mode} {lock.days}d" if lock else None,
    }


def _seconds(value: timedelta | None) -> float | None:
    return None if value is None else value.total_seconds()


def _as_dict(state: LocationState, location: Location) -> dict[str, Any]:
    return {
        "location": state.name,
        "url": state.url,
        "state": state.state,
        "healthy": state.healthy,
        "error": state.error,
        **_protection(location),
        "snapshots": state.snapshots,
        "free_bytes": state.free_bytes,
        "jobs": {
            job: {
                "snapshots": lag.snapshots,
                "newest": lag.newest.isoformat().replace("+00:00", "Z") if lag.newest else None,
                "missing": lag.missing,
                "lag_seconds": _seconds(lag.lag),
                "bytes_behind": lag.bytes_behind,
            }
            for job, lag in state.jobs.items()
        },
    }


def _lag_text(state: LocationState) -> str:
    parts = []
    for job, lag in state.jobs.items():
        if lag.newest is None:
            parts.append(f"{job}: none yet")
        elif lag.missing:
            behind = "?" if lag.bytes_behind is None else human_bytes(lag.bytes_behind)
            parts.append(f"{job}: {lag.missing} behind ({lag.lag}, {behind})")
        else:
            parts.append(f"{job}: current")
    return "\n".join(parts) or "-"


@locations_group.command("status", short_help="Per location: state, snapshots, lag, free space.")
@click.option("--password-file", metavar="FILE", help="Read the repository password from FILE.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (durations in seconds).")
@pass_settings
def status_command(settings: Settings, /, password_file: str | None, as_json: bool) -> None:
    """Per location: reachable, repository, snapshots, replication lag, free space, protection."""
    from drplan.locations.status import locations_status  # noqa: PLC0415 - see cli.COMMANDS
    from drplan.repo.retention import plan_policies  # noqa: PLC0415

    plan = settings.load().plan
    reference, failed = _reference(plan, settings, password_file)
    reach = {name: partial(storage_for, loc) for name, loc in plan.locations.items()}
    jobs = {name: list(job.locations) for name, job in plan.jobs.items()}
    states = locations_status(reference, reach, jobs, partial(plan_policies, plan), failed=failed)
    if as_json:
        emit_json([_as_dict(s, plan.locations[s.name]) for s in states])
    else:
        _print_table(plan, states)
    down = [s for s in states if s.down]
    if down:
        raise LocationDownError(
            f"{len(down)} of {len(states)} locations cannot be used:"
            f" {', '.join(f'{s.name} ({s.state})' for s in down)}",
            hint="each one's row says why and what to do; a location that comes back gets what"
            " it missed at the next backup",
        )


def _print_table(plan: Plan, states: list[LocationState]) -> None:
    from rich.table import Table  # noqa: PLC0415

    table = Table("location", "role", "state", "snapshots", "jobs", "free", "protection")
    for s in states:
        info = _protection(plan.locations[s.name])
        protection = ", ".join(
            p for p in (info["immutability"], info["storage_class"]) if p and p != "STANDARD"
        )
        table.add_row(
            f"{s.name}\n{s.url}",
            info["role"],
            s.state + (f"\n{s.error}" if s.error else ""),
            str(s.snapshots),
            _lag_text(s),
            "-" if s.free_bytes is None else human_bytes(s.free_bytes),
            protection or "-",
        )
    console().print(table)
