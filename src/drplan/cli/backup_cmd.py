"""``drplan backup files PATH... --repo LOCATION`` and ``drplan backup JOB`` (a files job of the plan)."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from drplan import clock
from drplan.cli.context import (
    DefaultToCommand,
    Settings,
    counted,
    emit_json,
    human_bytes,
    pass_settings,
)
from drplan.cli.progress import progress_shown
from drplan.cli.repo_access import open_repo, repo_options
from drplan.cli.suggest import nearest
from drplan.errors import (
    DrplanError,
    IncompleteCopyError,
    PartialBackupError,
    SourceError,
    UsageError,
)
from drplan.locations.storage import storage_for
from drplan.repo.repository import Repository
from drplan.security.repo_audit_record import note, reached
from drplan.sources.files import BackupOptions, BackupResult, backup_files
from drplan.sources.files.archiver import find_parent
from drplan.sources.files.excludes import read_exclude_file

if TYPE_CHECKING:
    from drplan.locations.fanout import FanOut
    from drplan.plan.model import Job, Plan, PostgresSystem
    from drplan.plan.model.systems import System


class _DefaultToJob(DefaultToCommand):
    """``drplan backup JOB`` runs a plan job; ``drplan backup files ...`` backs up paths."""

    default_command = "job"
    default_metavar = "JOB"

    def takes(self, ctx: click.Context, word: str) -> bool:
        try:
            return word in ctx.ensure_object(Settings).load().plan.jobs
        except DrplanError:
            return False  # no plan to run a job of: `fils` can only be a slip of `files`


@click.group("backup", cls=_DefaultToJob)
def backup_group() -> None:
    """Back up files, or run a backup job of the plan: `drplan backup JOB`."""


def _postgres_base(
    job_name: str,
    system_name: str,
    system: PostgresSystem,
    job: Job,
    kwargs: dict[str, Any],
    plan: Plan,
) -> Callable[[Repository], BackupResult] | None:
    """A base backup of the system, its cluster checked once before any location. An
    incremental builds on the newest base backup of the cluster in the location written;
    where there is none yet, it is taken as a full. Where the server cannot take one
    at all, the job's ``incremental_fallback`` decides: a full, nothing (None: the WAL
    archive carries the changes), or a failure."""
    from drplan.sources.postgres.basebackup import base_backup, latest_base  # noqa: PLC0415
    from drplan.sources.postgres.cluster import (  # noqa: PLC0415
        ClusterError,
        incremental_problems,
        preflight,
        wal_loss_warnings,
    )

    password = system.password.resolve() if system.password else None
    ready = preflight(system.connection, password, system.bin_dir, system_name, "full")

    def warn_of_wal_loss() -> None:
        """Told when the job goes on (a failing job's one line stays alone), never a stop."""
        for warning in wal_loss_warnings(plan, system_name, ready.info, clock.now()):
            click.echo(f"drplan: warning: {warning}", err=True)

    incremental = job.type == "incremental"
    blocked = incremental_problems(ready.info) if incremental else []
    if blocked and job.incremental_fallback == "fail":
        raise ClusterError(
            f"system {system_name} cannot be backed up (incremental): {'; '.join(blocked)}",
            hint="fix it, or set the job's incremental_fallback to full or wal",
        )
    if blocked and job.incremental_fallback == "wal":
        if ready.info.setting("archive_mode") not in ("on", "always"):
            raise ClusterError(
                f"job {job_name}: {'; '.join(blocked)}, and its fallback (wal) needs WAL"
                " archiving, but archive_mode is off",
                hint="set archive_mode = on and archive_command, or incremental_fallback: full",
            )
        click.echo(
            f"job {job_name}: {'; '.join(blocked)}; no base backup taken (incremental_fallback:"
            " wal): the WAL archive carries the changes since the last base backup",
            err=True,
        )
        warn_of_wal_loss()
        return None
    if blocked:
        click.echo(
            f"drplan: warning: job {job_name}: {'; '.join(blocked)}; taking a full backup"
            " instead (incremental_fallback: full)",
            err=True,
        )
        incremental = False
    warn_of_wal_loss()

    def take(repo: Repository) -> BackupResult:
        if kwargs.get("compression_level") is not None:
            repo.compression_level = kwargs["compression_level"]
        parent = latest_base(repo, system_name, ready.info)
        snapshot = base_backup(
            repo,
            ready,
            dsn=system.connection,
            password=password,
            system=system_name,
            job=job_name,
            tags=kwargs["tags"],
            parent=parent if incremental else None,
        )
        return BackupResult(snapshot, [])

    return take


def _job_backup(
    job_name: str, job: Job, system: System, kwargs: dict[str, Any], as_json: bool, plan: Plan
) -> Callable[[Repository], BackupResult] | None:
    """What the job takes, for the location it is written to; None when nothing is due."""
    from drplan.plan.model import CommandSystem, FilesSystem, PostgresSystem  # noqa: PLC0415

    kwargs["tags"] = [*kwargs["tags"], f"job:{job_name}"]
    if kwargs.get("compression_level") is None:
        kwargs["compression_level"] = job.compression_level
    if isinstance(system, FilesSystem):
        kwargs["excludes"] = [*system.exclude, *kwargs["excludes"]]
        kwargs["one_file_system"] = kwargs["one_file_system"] or system.one_file_system
        options = _options(paths=list(system.paths), job=job_name, system=job.system, **kwargs)
        return partial(_run, options=options, as_json=as_json)
    if isinstance(system, PostgresSystem) and job.type in ("full", "incremental"):
        return _postgres_base(job_name, job.system, system, job, kwargs, plan)
    if isinstance(system, CommandSystem):
        return partial(_command, command=system.command, system=job.system, job=job_name,
                       kwargs=kwargs)  # fmt: skip
    if system.kind in ("etcd", "git", "images"):
        return partial(_platform, spec=system, system=job.system, job=job_name, kwargs=kwargs)
    raise UsageError(
        f"job {job_name!r} is a {job.type} backup of a {system.kind} system; `drplan backup`"
        " runs files, command, etcd, git, images, and full and incremental PostgreSQL backups",
        hint="WAL jobs run as archive_command (`drplan wal push`), see docs/postgres.md",
    )


def _command(
    repo: Repository, command: str, system: str, job: str, kwargs: dict[str, Any]
) -> BackupResult:
    from drplan.sources.command import command_backup  # noqa: PLC0415

    if kwargs.get("compression_level") is not None:
        repo.compression_level = kwargs["compression_level"]
    snapshot = command_backup(repo, command=command, system=system, job=job, tags=kwargs["tags"])
    return BackupResult(snapshot, [])


def _platform(
    repo: Repository, spec: System, system: str, job: str, kwargs: dict[str, Any]
) -> BackupResult:
    """An etcd snapshot, git repositories or container images (docs/sources.md)."""
    from drplan.catalog.paths import state_dir  # noqa: PLC0415
    from drplan.plan.model import EtcdSystem, GitSystem, ImagesSystem  # noqa: PLC0415

    if kwargs.get("compression_level") is not None:
        repo.compression_level = kwargs["compression_level"]
    tags = kwargs["tags"]
    if isinstance(spec, EtcdSystem):
        from drplan.sources.etcd.backup import etcd_backup  # noqa: PLC0415

        return BackupResult(etcd_backup(repo, system=system, spec=spec, job=job, tags=tags), [])
    if isinstance(spec, GitSystem):
        from drplan.sources.git import git_backup  # noqa: PLC0415

        snapshot = git_backup(repo, system=system, spec=spec, job=job, tags=tags,
                              cache_dir=Path(state_dir()) / "git" / system)  # fmt: skip
        return BackupResult(snapshot, [])
    assert isinstance(spec, ImagesSystem)
    from drplan.sources.images.backup import images_backup  # noqa: PLC0415

    taken = images_backup(repo, system=system, spec=spec, job=job, tags=tags)
    return BackupResult(taken.snapshot, taken.warnings)


def _run(repo: Repository, options: BackupOptions, as_json: bool) -> BackupResult:
    if options.parent is None:
        options.parent = find_parent(repo, options.paths, options.host, options.job)
    with progress_shown("backup", "files", as_json) as progress:
        return backup_files(repo, options, progress)


def _report(
    result: BackupResult, location: str, as_json: bool, spread: FanOut | None = None
) -> None:
    snap = result.snapshot
    s = snap.summary
    failed = dict(spread.failed) if spread else {}
    if as_json:
        data: dict[str, Any] = {
            "snapshot": snap.id,
            "location": location,
            "time": snap.time.isoformat().replace("+00:00", "Z"),
            "parent": snap.parent,
            "paths": snap.paths,
            "source": snap.source,
            "summary": {**vars(s), "errors": s.errors},
        }
        if spread is not None:
            data["copies"] = {n: o.as_dict() for n, o in spread.outcomes.items()}
            data["caught_up"] = spread.caught_up
        emit_json(data)
    else:
        click.echo(
            f"snapshot {snap.short_id} saved to {location}: {counted(s.files, 'file')},"
            f" {s.dirs} director{'y' if s.dirs == 1 else 'ies'}, {human_bytes(s.bytes_total)}"
            f" ({s.files_new} new, {s.files_changed} changed, {s.files_unchanged} unchanged files);"
            f" read {human_bytes(s.bytes_read)}, added {human_bytes(s.bytes_added)},"
            f" stored {human_bytes(s.bytes_stored)} in {s.duration_seconds:.1f}s"
        )
        for name, outcome in (spread.outcomes if spread else {}).items():
            if outcome.error is None:
                click.echo(
                    f"copied to {name}: {len(outcome.copied)} snapshot(s),"
                    f" {human_bytes(outcome.bytes_copied)} sent, verified"
                )
        if spread and spread.caught_up:
            click.echo(
                f"caught up {spread.written}: {len(spread.caught_up)} snapshot(s) from others"
            )
        for warning in result.warnings:
            click.echo(f"warning: {warning}", err=True)
        for error in failed.values():
            click.echo(f"warning: {error}", err=True)
    if failed:
        raise IncompleteCopyError(
            f"snapshot {snap.short_id} was saved to {location} but not to {', '.join(failed)}",
            hint="see `drplan locations status`: one that was unreachable gets what it missed at"
            " the next backup; one that holds no repository must be seeded with `drplan copy`",
        )
    if result.warnings:
        raise PartialBackupError(
            f"snapshot {snap.short_id} was saved, but {len(result.warnings)} item(s) could not be backed up",
            hint="see the warnings above",
        )


def _options(**kwargs: Any) -> BackupOptions:
    exclude_file = kwargs.pop("exclude_file")
    excludes = list(kwargs.pop("excludes"))
    if exclude_file:
        try:
            excludes += read_exclude_file(exclude_file)
        except OSError as exc:
            raise UsageError(f"cannot read exclude file {exclude_file}: {exc.strerror}") from None
    return BackupOptions(excludes=excludes, **{k: v for k, v in kwargs.items() if v is not None})


common = [
    click.option(
        "--exclude",
        "excludes",
        multiple=True,
        metavar="PATTERN",
        help="Glob to leave out (repeatable).",
    ),
    click.option(
        "--exclude-file", metavar="FILE", help="Read exclude globs from FILE, one per line."
    ),
    click.option(
        "--one-file-system", is_flag=True, help="Do not cross into other mounted file systems."
    ),
    click.option(
        "--tag", "tags", multiple=True, metavar="TAG", help="Tag the snapshot (repeatable)."
    ),
    click.option(
        "--workers",
        type=click.IntRange(1, 64),
        help="Threads reading files (bounds memory: about 20 MiB each).",
    ),
    click.option(
        "--compression-level",
        type=click.IntRange(1, 22),
        help="zstd level for this backup (default: the repository's, or the job's).",
    ),
    click.option("--json", "as_json", is_flag=True, help="Print a JSON summary."),
]


def _with_common(fn: Any) -> Any:
    for option in reversed(common):
        fn = option(fn)
    return fn


@backup_group.command("files", short_help="Back up paths into a repository.")
@click.argument("paths", nargs=-1, required=True)
@repo_options
@_with_common
@click.option("--host", help="Host name recorded in the snapshot (default: this host).")
@pass_settings
def files_command(
    settings: Settings,
    /,
    paths: tuple[str, ...],
    repo_ref: str | None,
    password_file: str | None,
    as_json: bool,
    host: str | None,
    **kwargs: Any,
) -> None:
    """Back up PATHS into the repository."""
    options = _options(paths=list(paths), host=host, **kwargs)
    with open_repo(settings, repo_ref, password_file, operation="backup") as repo:
        result = _run(repo, options, as_json)
        _report(result, repo.storage.url, as_json)


@backup_group.command("job", hidden=True)
@click.argument("job_name")
@click.option("--password-file", metavar="FILE")
@_with_common
@pass_settings
def job_command(
    settings: Settings, /, job_name: str, password_file: str | None, as_json: bool, **kwargs: Any
) -> None:
    """Run backup job JOB_NAME of the plan, to the first of its locations that can be reached."""
    # Imported here: the plan schema is slow to import, and `backup files` does not need it.
    from drplan.locations.copying import about_location  # noqa: PLC0415
    from drplan.locations.fanout import LocationOutcome, fan_out  # noqa: PLC0415
    from drplan.repo.retention import plan_policies  # noqa: PLC0415

    plan = settings.load().plan
    job = plan.jobs.get(job_name)
    if job is None:
        near = nearest(job_name, plan.jobs)
        raise UsageError(
            f"the plan has no job {job_name!r}" + (f" (did you mean {near!r}?)" if near else ""),
            hint=f"jobs: {', '.join(plan.jobs) or 'none'}",
        )
    take = _job_backup(job_name, job, plan.systems[job.system], kwargs, as_json, plan)
    if take is None:
        if as_json:
            emit_json({"snapshot": None, "job": job_name, "skipped": "incremental_fallback: wal"})
        return
    unreachable: dict[str, str] = {}
    for name in job.locations:
        spread = None
        saved = False
        try:
            with about_location(name):
                storage = storage_for(plan.locations[name])
                with open_repo(
                    settings, name, password_file, operation=f"backup {job_name}", storage=storage
                ) as repo:
                    result = take(repo)
                    saved = True
                    if job.replicate == "after-backup":
                        others = {
                            n: reached(repo, n, partial(storage_for, plan.locations[n]))
                            for n in job.locations
                            if n != name and n not in unreachable
                        }
                        spread = fan_out(name, repo, others, job_name, partial(plan_policies, plan))
                        note(repo, copies={n: o.as_dict() for n, o in spread.outcomes.items()})
        except DrplanError as exc:
            if isinstance(exc, UsageError | SourceError) or saved:
                raise  # only a location that could not take the backup is worth skipping
            unreachable[name] = exc.message
            continue
        if spread is not None:
            for failed, message in unreachable.items():
                spread.outcomes[failed] = LocationOutcome(error=message)
        _report(result, f"{name} ({repo.storage.url})", as_json, spread)
        return
    raise DrplanError(
        f"job {job_name}: no location could be written: {'; '.join(unreachable.values())}",
        hint="check the locations with `drplan locations status`",
    )
