"""How every repository command finds, opens and locks its repository (one place, not one per command).

``--repo`` takes a path, an ``s3://bucket/prefix`` URL, or the name of a location
of the plan (then the plan supplies region, endpoint, credentials and the rest).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

import click

from drplan.cli.context import Settings
from drplan.errors import PlanNotFoundError, UsageError
from drplan.locations.storage import storage_for
from drplan.repo.locks import RepositoryLock
from drplan.repo.password import PASSWORD_ENV, PASSWORD_FILE_ENV, read_password
from drplan.repo.repository import Repository
from drplan.security.repo_audit_record import audited
from drplan.storage import Storage, open_storage

if TYPE_CHECKING:
    from drplan.plan.model import Plan

F = TypeVar("F", bound=Callable[..., Any])
REPO_ENV = "DRPLAN_REPO"


def repo_options(fn: F) -> F:
    """--repo and --password-file, shared by every command that opens a repository."""
    fn = click.option(
        "--password-file",
        metavar="FILE",
        help="Read the repository password from FILE (else $DRPLAN_PASSWORD, else the plan's password_command).",
    )(fn)
    return click.option(
        "--repo",
        "repo_ref",
        metavar="LOCATION",
        envvar=REPO_ENV,
        help="Repository: a path, s3://bucket/prefix, or a location name of the plan ($DRPLAN_REPO).",
    )(fn)


def plan_or_none(settings: Settings) -> Plan | None:
    try:
        return settings.load().plan
    except PlanNotFoundError:
        return None


def location_is_name(repo_ref: str) -> bool:
    """Whether ``repo_ref`` could name a plan location rather than a path or URL."""
    return "/" not in repo_ref and "://" not in repo_ref and not repo_ref.startswith(".")


def resolve_storage(settings: Settings, repo_ref: str | None) -> Storage:
    if not repo_ref:
        raise UsageError("no repository given", hint=f"pass --repo LOCATION or set ${REPO_ENV}")
    if location_is_name(repo_ref):
        plan = plan_or_none(settings)
        if plan is not None and repo_ref in plan.locations:
            return storage_for(plan.locations[repo_ref])
        # A bare word is a location name: a typo must not become a new directory here.
        known = f"the plan's are {', '.join(plan.locations)}" if plan else "no plan was found"
        raise UsageError(
            f"{repo_ref!r} is not a location of the plan ({known})",
            hint=f"name a location of the plan, or write ./{repo_ref} for a directory here",
        )
    return open_storage(repo_ref)


def password(settings: Settings, password_file: str | None) -> bytes:
    """The password; the plan is read for its password_command only when nothing else gives one."""
    if password_file or os.environ.get(PASSWORD_ENV) or os.environ.get(PASSWORD_FILE_ENV):
        return read_password(password_file)
    plan = plan_or_none(settings)
    return read_password(None, plan.repository.password_command if plan else None)


@contextlib.contextmanager
def open_repo(
    settings: Settings,
    repo_ref: str | None,
    password_file: str | None,
    *,
    lock: str | None = "shared",
    operation: str = "",
    index: bool = True,
    storage: Storage | None = None,
    audit: bool = True,
) -> Iterator[Repository]:
    """Open, optionally lock (shared or exclusive) and load the index of a repository.

    An ``operation`` is recorded in the audit trail of every location it used
    (drplan.security.repo_audit_record), whatever its outcome; ``audit=False`` for what
    changes nothing (a dry run)."""
    storage = storage or resolve_storage(settings, repo_ref)
    with audited(
        operation if audit else "", repo_ref or storage.url, storage, audit_warning
    ) as run:
        repo = run.repo = Repository.open(run.storage, password(settings, password_file))
        held = (
            RepositoryLock(repo, exclusive=lock == "exclusive", operation=operation)
            if lock
            else None
        )
        if held:
            held.acquire()
        try:
            if index:
                repo.load_index()
            yield repo
        finally:
            repo.settle()  # no write of this process may outlive its lock
            if held:
                held.release()


def audit_warning(message: str) -> None:
    """An audit entry that could not be written: told, never a failure of the command."""
    click.echo(f"drplan: warning: {message}", err=True)
