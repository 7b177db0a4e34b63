"""``drplan trigger EVENT [--job JOB]``: run the jobs scheduled ``on EVENT`` (a pipeline calls
it after a deployment). Handed to the daemon of this state directory when one runs, else
run here in the foreground (see drplan.scheduler.triggers)."""

from __future__ import annotations

import os
import socket
from typing import Any

import click

from drplan import clock
from drplan.cli.context import Settings, emit_json, pass_settings
from drplan.errors import CatalogError, DrplanError

TAKE_TIMEOUT = 5.0  # seconds: the daemon reads its inbox every second


@click.command("trigger")
@click.argument("event")
@click.option("--job", metavar="JOB", help="Only this job (it must listen to EVENT).")
@click.option("--password-file", metavar="FILE",
              help="Read the repository password from FILE (for a run in the foreground).")  # fmt: skip
@click.option("--catalog", metavar="URL",
              help="Where a run in the foreground is recorded (default $DRPLAN_CATALOG, else"
              " SQLite in the state directory).")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_settings
def trigger_command(
    settings: Settings,
    /,
    event: str,
    job: str | None,
    password_file: str | None,
    catalog: str | None,
    as_json: bool,
) -> None:
    """Run the jobs scheduled `on EVENT` (`on deployment`): queued by the running `drplan
    serve` of this state directory, which is told at once; without one, run here one after
    the other as `drplan backup JOB` runs them, and exit with their outcome. Exit 2 when
    no job listens to EVENT."""
    from drplan.catalog.paths import state_dir  # noqa: PLC0415 - see cli.COMMANDS
    from drplan.scheduler.inbox import daemon_pid, hand_over, wait_taken  # noqa: PLC0415
    from drplan.scheduler.triggers import jobs_for  # noqa: PLC0415

    plan_file = settings.load()
    names = jobs_for(plan_file.plan, event, job)
    state = state_dir()
    pid = daemon_pid(state)
    if pid is not None:
        path = hand_over(state, event.lower(), job, clock.now())
        if not wait_taken(path, TAKE_TIMEOUT):
            raise DrplanError(
                f"drplan serve (pid {pid}) did not take event {event} within"
                f" {TAKE_TIMEOUT:.0f}s; it is left in {os.path.dirname(path)} for it",
                hint="see the daemon's log; it takes the event once it ticks again",
            )
        if as_json:
            emit_json({"event": event.lower(), "daemon": pid, "queued": names})
        else:
            click.echo(f"event {event.lower()}: queued {', '.join(names)} in drplan serve"
                       f" (pid {pid}); `drplan status` shows how they end")  # fmt: skip
        return
    code = _foreground(settings, os.path.abspath(plan_file.path), event.lower(), names,
                       password_file, catalog, as_json, state)  # fmt: skip
    if code:
        raise _Failed(code)


class _Failed(DrplanError):
    """A job run in the foreground failed: its own error was said; its exit code is ours."""

    def __init__(self, code: int) -> None:
        super().__init__("a triggered job failed (see above)")
        self.exit_code = code


def _foreground(
    settings: Settings,
    plan_path: str,
    event: str,
    names: list[str],
    password_file: str | None,
    catalog_url: str | None,
    as_json: bool,
    state: str,
) -> int:
    """Run each job as the daemon would (a child `drplan backup JOB --json`), recorded in
    the catalog and the ledger; the first failure's exit code, or 0."""
    from drplan.catalog.store import SUCCEEDED  # noqa: PLC0415
    from drplan.repo.password import PASSWORD_FILE_ENV  # noqa: PLC0415
    from drplan.scheduler.ledger import Ledger  # noqa: PLC0415
    from drplan.scheduler.runs import JobProcess, child_env  # noqa: PLC0415

    env = child_env(plan_path, (PASSWORD_FILE_ENV, os.path.abspath(password_file))
                    if password_file else None)  # fmt: skip
    ledger = Ledger(state)
    store = _catalog(catalog_url)
    holder = f"{socket.gethostname()}:{os.getpid()}:trigger"
    plan = settings.load().plan
    results: list[dict[str, Any]] = []
    first_failure = 0
    try:
        for name in names:
            started = clock.now()
            trigger = {"event": event, "source": "cli", "detail": "in the foreground",
                       "count": 1, "sources": ["cli"]}  # fmt: skip
            ledger.changed(name, started)  # until a run backs it up, it counts as exposure
            ledger.started(name, started)
            run_id = _recorded(store, "start_run", name, holder, started, None, 1, trigger)
            if not as_json:
                click.echo(f"job {name}: running (event {event})", err=True)
            outcome = JobProcess(plan_path, name, ("backup", name, "--json"),
                                 plan.jobs[name].timeout, env).wait()  # fmt: skip
            report = outcome.report
            summary = report.get("summary") or {}
            if run_id is not None:
                location = str(report.get("location", "")).split(" (", 1)[0] or None
                _recorded(store, "finish_run", run_id, outcome.status, clock.now(),
                          snapshot=report.get("snapshot"), location=location,
                          bytes_added=summary.get("bytes_added"),
                          bytes_stored=summary.get("bytes_stored"), error=outcome.error)  # fmt: skip
            if outcome.status == SUCCEEDED:
                ledger.succeeded(name, started)
            results.append({"job": name, "status": outcome.status, "snapshot":
                            report.get("snapshot"), "error": outcome.error,
                            "exit_code": outcome.exit_code})  # fmt: skip
            if not as_json:
                snapshot = report.get("snapshot")
                said = f"snapshot {str(snapshot)[:8]} saved" if snapshot else outcome.error
                click.echo(f"job {name}: {outcome.status}" + (f": {said}" if said else ""))
            if outcome.exit_code and not first_failure:
                first_failure = outcome.exit_code
    finally:
        if store is not None:
            store.close()
    if as_json:
        emit_json({"event": event, "daemon": None, "runs": results})
    return first_failure


def _catalog(url: str | None) -> Any:
    """The catalog runs are recorded in; None (said once) when it cannot be opened: the
    backup matters more than its record."""
    from drplan.catalog.paths import default_url  # noqa: PLC0415
    from drplan.catalog.store import Catalog  # noqa: PLC0415

    try:
        return Catalog.open(url or default_url())
    except CatalogError as exc:
        click.echo(f"drplan: warning: the runs are not recorded: {exc.message}", err=True)
        return None


def _recorded(store: Any, method: str, *args: Any, **kwargs: Any) -> Any:
    """``store.method(...)``; None (said) when there is no catalog or it failed."""
    if store is None:
        return None
    try:
        return getattr(store, method)(*args, **kwargs)
    except CatalogError as exc:
        click.echo(f"drplan: warning: the run is not recorded: {exc.message}", err=True)
        return None
