"""``drplan forget`` (drop snapshots by retention policy) and ``drplan prune`` (drop unused data)."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta

import click

from drplan import clock
from drplan.cli.context import Settings, emit_json, human_bytes, pass_settings
from drplan.cli.repo_access import open_repo, plan_or_none, repo_options, resolve_storage
from drplan.clock import rfc3339
from drplan.errors import UsageError
from drplan.plan.durations import parse_duration
from drplan.repo.immutability import locks_of, renew_locks
from drplan.repo.prune import plan_prune, run_prune
from drplan.repo.repository import SNAPSHOT_PREFIX, Repository
from drplan.repo.retention import Decision, Policy, decide, keep_chains, plan_policies
from drplan.security.repo_audit_record import note
from drplan.sources.postgres.wal_retention import (
    WalRetention,
    apply_wal_retention,
    plan_wal_retention,
    wal_systems,
    wal_window,
)
from drplan.storage.registry import refuse_to_delete

GROUPINGS = ("host", "paths", "tags", "job")


def _duration(_: click.Context, __: click.Parameter, value: str | None) -> timedelta | None:
    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _policies(settings: Settings, repo_ref: str | None, flags: Policy) -> dict[str | None, Policy]:
    """The policy per job: the flags when given, else the plan's retention for each job."""
    if not flags.empty:
        return defaultdict(lambda: flags)
    plan = plan_or_none(settings)
    if plan is None:
        raise UsageError(
            "no retention given",
            hint="pass --keep-* flags, or run with a plan whose jobs set retention",
        )
    return plan_policies(plan, repo_ref)


@click.command("forget")
@repo_options
@click.option("--keep-last", type=click.IntRange(0), default=0, metavar="N")
@click.option("--keep-hourly", type=click.IntRange(0), default=0, metavar="N")
@click.option("--keep-daily", type=click.IntRange(0), default=0, metavar="N")
@click.option("--keep-weekly", type=click.IntRange(0), default=0, metavar="N")
@click.option("--keep-monthly", type=click.IntRange(0), default=0, metavar="N")
@click.option("--keep-yearly", type=click.IntRange(0), default=0, metavar="N")
@click.option(
    "--keep-within",
    callback=_duration,
    metavar="DURATION",
    help="Keep all within DURATION of the newest.",
)
@click.option("--keep-tag", "keep_tags", multiple=True, metavar="TAG")
@click.option(
    "--group-by",
    default="host,paths",
    show_default=True,
    help=f"Comma list of {', '.join(GROUPINGS)}.",
)
@click.option("--host", help="Only consider snapshots of this host.")
@click.option(
    "--dry-run", is_flag=True, help="Show what would go, and why the rest stays; change nothing."
)
@click.option("--prune", "then_prune", is_flag=True, help="Prune unused data afterwards.")
@click.option("--json", "as_json", is_flag=True)
@pass_settings
def forget_command(
    settings: Settings,
    repo_ref: str | None,
    password_file: str | None,
    keep_last: int,
    keep_hourly: int,
    keep_daily: int,
    keep_weekly: int,
    keep_monthly: int,
    keep_yearly: int,
    keep_within: timedelta | None,
    keep_tags: tuple[str, ...],
    group_by: str,
    host: str | None,
    dry_run: bool,
    then_prune: bool,
    as_json: bool,
) -> None:
    """Forget snapshots the retention policy does not keep (the plan's, unless --keep-* flags are given)."""
    by = tuple(g.strip() for g in group_by.split(",") if g.strip())
    if unknown := set(by) - set(GROUPINGS):
        raise UsageError(
            f"--group-by {', '.join(sorted(unknown))}: not one of {', '.join(GROUPINGS)}"
        )
    flags = Policy(
        keep_last,
        keep_hourly,
        keep_daily,
        keep_weekly,
        keep_monthly,
        keep_yearly,
        keep_within,
        frozenset(keep_tags),
    )
    lock = None if dry_run else "exclusive"
    storage = resolve_storage(settings, repo_ref)
    if not dry_run:
        refuse_to_delete(storage.url, "forget")
    with open_repo(
        settings,
        repo_ref,
        password_file,
        lock=lock,
        operation="forget",
        index=then_prune and not dry_run,
        audit=not dry_run,
        storage=storage,
    ) as repo:
        snapshots = [s for s in repo.snapshots() if host is None or s.host == host]
        decisions = decide(snapshots, _policies(settings, repo_ref, flags), by)
        keep_chains(decisions)
        now = clock.now()
        # Locks are renewed for what retention keeps, not for what a lock alone keeps:
        # those must be let go, or nothing would ever expire.
        retained = [d.snapshot for d in decisions if d.keep]
        _keep_locked(repo, decisions, now)
        renewed = 0
        kept = [d.snapshot for d in decisions if d.keep]
        plan = plan_or_none(settings)
        wal = [
            plan_wal_retention(
                repo,
                name,
                kept,
                now,
                wal_window(plan, name) if plan is not None and name in plan.systems else None,
            )
            for name in wal_systems(repo)
        ]
        if not dry_run:
            for d in decisions:
                if not d.keep:
                    repo.storage.delete(SNAPSHOT_PREFIX + d.snapshot.id)
            for decision in wal:  # after the snapshots: a crash between leaves extra WAL only
                apply_wal_retention(repo, decision)
            if repo.storage.lock_days:
                repo.load_index()
                renewed = renew_locks(repo, retained, repo.storage.lock_days, now)
        note(repo, kept=sum(d.keep for d in decisions), removed=sum(not d.keep for d in decisions))
        _report(decisions, dry_run, as_json, renewed, wal)
        if then_prune and not dry_run:
            _prune(repo, dry_run=False, as_json=as_json)


def _keep_locked(repo: Repository, decisions: list[Decision], now: datetime) -> None:
    """A snapshot whose object is still locked stays: deleting it would only hide it."""
    doomed = {SNAPSHOT_PREFIX + d.snapshot.id: d for d in decisions if not d.keep}
    for name, until in locks_of(repo.storage, doomed, now).items():
        doomed[name].keep = True
        doomed[name].reasons.append(f"locked until {rfc3339(until)}")


def _report(
    decisions: list[Decision],
    dry_run: bool,
    as_json: bool,
    renewed: int = 0,
    wal: list[WalRetention] | None = None,
) -> None:
    wal = wal or []
    if as_json:
        emit_json(
            {
                "dry_run": dry_run,
                "snapshots": [
                    {
                        "id": d.snapshot.id,
                        "time": rfc3339(d.snapshot.time),
                        "job": d.snapshot.job,
                        "keep": d.keep,
                        "reasons": d.reasons,
                    }
                    for d in decisions
                ],
                "locks_renewed": renewed,
                "wal": [w.as_dict() for w in wal],
            }
        )
        return
    for d in sorted(decisions, key=lambda d: d.snapshot.time):
        verb = "keep  " if d.keep else ("would remove" if dry_run else "remove")
        why = f" ({'; '.join(d.reasons)})" if d.keep else ""
        click.echo(
            f"{verb} {d.snapshot.short_id} {rfc3339(d.snapshot.time)} {d.snapshot.job or ''}{why}"
        )
    gone = sum(1 for d in decisions if not d.keep)
    click.echo(f"{len(decisions) - gone} kept, {gone} {'to remove' if dry_run else 'removed'}")
    if renewed:
        click.echo(f"renewed the Object Lock of {renewed} object(s) the kept snapshots need")
    for w in wal:
        verb = "would remove" if dry_run else "removed"
        if w.keep_from is None:
            partials = f"; {verb} {len(w.doomed)} replaced partial(s)" if w.doomed else ""
            partials += f"; {len(w.locked)} more stay under Object Lock" if w.locked else ""
            click.echo(f"WAL of {w.system}: all kept ({w.reason}){partials}")
            continue
        span = f"{w.doomed[0].file} to {w.doomed[-1].file}" if w.doomed else "none"
        click.echo(
            f"WAL of {w.system}: kept from {w.keep_from} ({w.reason}); {verb}"
            f" {len(w.doomed)} older file(s): {span}"
            + (f"; {len(w.locked)} more stay under Object Lock" if w.locked else "")
        )


def _prune(repo: Repository, dry_run: bool, as_json: bool) -> None:
    plan = plan_prune(repo)
    if dry_run:
        if as_json:
            emit_json({"dry_run": True, **plan.as_dict()})
        else:
            click.echo(
                f"would delete {len(plan.packs_delete)} packs and repack {len(plan.packs_repack)};"
                f" {human_bytes(plan.bytes_unused)} of {human_bytes(plan.bytes_total)} unused"
            )
            _report_locked(plan.locked)
        return
    result = run_prune(repo, plan)
    note(repo, packs_deleted=len(plan.packs_delete), packs_repacked=len(plan.packs_repack),
         bytes_freed=result.bytes_freed)  # fmt: skip
    if as_json:
        emit_json(
            {
                "dry_run": False,
                **plan.as_dict(),
                "bytes_freed": result.bytes_freed,
                "new_packs": result.new_packs,
            }
        )
    else:
        click.echo(
            f"pruned: deleted {len(plan.packs_delete)} packs, repacked {len(plan.packs_repack)}"
            f" into {result.new_packs}, freed {human_bytes(result.bytes_freed)}"
        )
    _report_locked(plan.locked)


def _report_locked(locked: dict[str, datetime]) -> None:
    if locked:
        click.echo(
            f"kept {len(locked)} object(s) still under Object Lock (the last lock ends"
            f" {rfc3339(max(locked.values()))}); a prune after that removes them",
            err=True,
        )


@click.command("prune")
@repo_options
@click.option("--dry-run", is_flag=True, help="Show what would be deleted; change nothing.")
@click.option("--json", "as_json", is_flag=True)
@pass_settings
def prune_command(
    settings: Settings,
    repo_ref: str | None,
    password_file: str | None,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Delete data no snapshot needs and repack mostly-unused packs (takes an exclusive lock)."""
    storage = resolve_storage(settings, repo_ref)
    if not dry_run:
        refuse_to_delete(storage.url, "prune")
    with open_repo(
        settings,
        repo_ref,
        password_file,
        lock=None if dry_run else "exclusive",
        operation="prune",
        index=False,
        audit=not dry_run,
        storage=storage,
    ) as repo:
        _prune(repo, dry_run, as_json)
