"""``drplan restore etcd|git|images SYSTEM --to latest|TIME|SNAPSHOT``: the platform's
own state back from its snapshots.

Without ``--repo``, the system's job locations are tried in the plan's order (in an
incident's step, only those its scenario recovers from), and the first that holds a
snapshot at or before the point asked for is used. ``--to`` takes ``latest``, an
RFC 3339 time (the newest snapshot taken at or before it) or a snapshot id.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from string import hexdigits
from typing import Any

import click

from drplan import clock
from drplan.cli.context import Settings, emit_json, human_bytes, pass_settings
from drplan.cli.repo_access import open_repo, repo_options
from drplan.cli.suggest import nearest
from drplan.errors import DrplanError, UsageError
from drplan.plan.model import Plan
from drplan.repo.repository import Repository
from drplan.repo.snapshot import Snapshot
from drplan.security.repo_audit_record import note

POINTS = "latest|TIME|SNAPSHOT"


def system_of(plan: Plan, name: str, kind: str) -> Any:
    system = plan.systems.get(name)
    if system is None:
        near = nearest(name, plan.systems)
        raise UsageError(f"the plan has no system {name!r}"
                         + (f" (did you mean {near!r}?)" if near else ""),
                         hint=f"{kind} systems: {', '.join(n for n, s in plan.systems.items() if s.kind == kind) or 'none'}")  # fmt: skip
    if system.kind != kind:
        raise UsageError(f"system {name} is a {system.kind} system, not {kind}",
                         hint=f"restore it with the command for {system.kind} systems")  # fmt: skip
    return system


def locations_of(plan: Plan, system: str) -> list[str]:
    """The locations the system's jobs write to, in the plan's order."""
    out: list[str] = []
    for job in plan.jobs.values():
        if job.system == system:
            out += [n for n in job.locations if n not in out]
    return out


def pick(snapshots: list[Snapshot], system: str, kind: str, point: str) -> Snapshot | None:
    """The snapshot ``point`` names among the system's; None when there is none."""
    mine = sorted((s for s in snapshots if s.system == system and s.source.get("kind") == kind),
                  key=lambda s: s.time)  # fmt: skip
    if point == "latest":
        return mine[-1] if mine else None
    if len(point) >= 4 and all(c in hexdigits for c in point):
        found = [s for s in mine if s.id.startswith(point)]
        if len(found) > 1:
            raise UsageError(f"snapshot id {point} is ambiguous", hint="give more of its digits")
        return found[0] if found else None
    try:
        moment: datetime = clock.parse_rfc3339(point)
    except ValueError as exc:
        raise UsageError(f"--to {point!r}: {exc}", hint=f"--to takes {POINTS}") from None
    before = [s for s in mine if s.time <= moment]
    return before[-1] if before else None


@contextlib.contextmanager
def chosen(settings: Settings, plan: Plan, system: str, kind: str, point: str,
           repo_ref: str | None, password_file: str | None,
           ) -> Iterator[tuple[Repository, Snapshot, str]]:  # fmt: skip
    """The repository (locked shared), the snapshot and the location name to restore from."""
    from drplan.incidents.points import incident_locations  # noqa: PLC0415

    if repo_ref:
        refs = [repo_ref]
    else:
        refs = locations_of(plan, system)
        allowed = incident_locations()
        if allowed is not None:
            refs = [r for r in refs if r in allowed]
        if not refs:
            raise UsageError(f"no job of the plan backs up {system}",
                             hint="pass --repo LOCATION")  # fmt: skip
    tried = []
    for ref in refs:
        try:
            with open_repo(settings, ref, password_file, operation=f"restore {system}") as repo:
                snapshot = pick(repo.readable_snapshots()[0], system, kind, point)
                if snapshot is None:
                    tried.append(f"{ref}: no snapshot of {system} at {point}")
                    continue
                note(repo, snapshot=snapshot.id)
                yield repo, snapshot, ref
                return
        except DrplanError as exc:
            if len(refs) == 1 or isinstance(exc, UsageError):
                raise
            tried.append(f"{ref}: {exc.message}")
    raise DrplanError(f"no location can restore {system} to {point}: {'; '.join(tried)}",
                      hint="see `drplan snapshots` and `drplan locations status`")  # fmt: skip


def _to_option(fn: Any) -> Any:
    return click.option("--to", "point", default="latest", show_default=True, metavar=POINTS,
                        help="The newest snapshot, the newest at or before a time"
                        " ('2026-11-25T10:15:00Z'), or a snapshot id.")(fn)  # fmt: skip


@click.command("etcd", short_help="Make an etcd member's data directory from a snapshot.")
@click.argument("system_name", metavar="SYSTEM")
@_to_option
@click.option(
    "--data-dir", required=True, metavar="DIR", help="New data directory (absent or empty)."
)
@click.option("--name", default="default", show_default=True, help="The member's name.")
@click.option("--initial-advertise-peer-urls", "peer_url", default="http://localhost:2380",
              show_default=True, metavar="URL", help="The member's peer URL.")  # fmt: skip
@click.option(
    "--initial-cluster",
    metavar="NAME=URL,...",
    help="Every member of the restored cluster (default: this one alone).",
)
@click.option("--initial-cluster-token", "token", default="drplan-restore", show_default=True,
              help="A token no other cluster uses.")  # fmt: skip
@click.option("--prove", is_flag=True,
              help="Start a scratch member from it on loopback and check its keys against the backup's.")  # fmt: skip
@repo_options
@click.option("--json", "as_json", is_flag=True)
@pass_settings
def etcd_command(settings: Settings, system_name: str, point: str, data_dir: str, name: str,
                 peer_url: str, initial_cluster: str | None, token: str, prove: bool,
                 repo_ref: str | None, password_file: str | None, as_json: bool) -> None:  # fmt: skip
    """Restore SYSTEM's etcd snapshot into a data directory a member starts from (every
    member of a cluster is restored from the same snapshot, each with its --name)."""
    from drplan.recovery import etcd  # noqa: PLC0415

    plan = settings.load().plan
    spec = system_of(plan, system_name, "etcd")
    member = etcd.Member(name, peer_url, initial_cluster, token)
    with chosen(settings, plan, system_name, "etcd", point, repo_ref, password_file) as (
        repo,
        snap,
        ref,
    ):
        restored = etcd.restore_etcd(repo, snap, Path(data_dir), member, spec.bin_dir)
    if prove:
        etcd.prove(restored, system_name, spec, snap, member)
    if as_json:
        emit_json({"system": system_name, "snapshot": snap.id, "location": ref,
                   "data_dir": data_dir, "revision": restored.revision, "proven": prove,
                   "checks": restored.checks})  # fmt: skip
        return
    click.echo(f"restored {system_name} from {ref} (snapshot {snap.short_id} of"
               f" {clock.rfc3339(snap.time)}, revision {restored.revision},"
               f" {human_bytes(restored.size)}) into {data_dir} for member {name}")  # fmt: skip
    if prove:
        click.echo(
            "proven: a scratch member started from it holds "
            + ", ".join(f"{k} {v}" for k, v in restored.checks.items())
        )


@click.command("git", short_help="Bring back git repositories, every ref, checked by git fsck.")
@click.argument("system_name", metavar="SYSTEM")
@_to_option
@click.option("--target", required=True, metavar="DIR",
              help="Directory the repositories are made in, one per repository (new or empty).")  # fmt: skip
@click.option("--bare", is_flag=True, help="Bare repositories (a server's), no working tree.")
@click.option("--repository", "only", multiple=True, metavar="NAME",
              help="Only this repository of the system (repeatable).")  # fmt: skip
@repo_options
@click.option("--json", "as_json", is_flag=True)
@pass_settings
def git_command(settings: Settings, system_name: str, point: str, target: str, bare: bool,
                only: tuple[str, ...], repo_ref: str | None, password_file: str | None,
                as_json: bool) -> None:  # fmt: skip
    """Restore SYSTEM's repositories into DIR: every branch, tag and note, then `git fsck`
    and the refs held against the snapshot's."""
    from drplan.recovery.git import restore_git  # noqa: PLC0415

    plan = settings.load().plan
    system_of(plan, system_name, "git")
    with chosen(settings, plan, system_name, "git", point, repo_ref, password_file) as (
        repo,
        snap,
        ref,
    ):
        restored = restore_git(repo, snap, Path(target), bare=bare, only=list(only) or None)
    if as_json:
        emit_json({"system": system_name, "snapshot": snap.id, "location": ref,
                   "repositories": {n: {"path": str(r.path), "refs": r.refs, "head": r.head,
                                        "fsck": r.fsck}
                                    for n, r in restored.repositories.items()}})  # fmt: skip
        return
    for name, item in restored.repositories.items():
        click.echo(f"restored {system_name}/{name} from {ref} (snapshot {snap.short_id} of"
                   f" {clock.rfc3339(snap.time)}) into {item.path}: {item.refs} refs, HEAD"
                   f" {item.head}, git fsck {item.fsck}, refs as backed up")  # fmt: skip


@click.command("images", short_help="Push container images back to a registry, digests verified.")
@click.argument("system_name", metavar="SYSTEM")
@_to_option
@click.option("--registry", metavar="URL",
              help="Registry to push to (default: the system's restore_registry, else its registry).")  # fmt: skip
@click.option("--image", "only", multiple=True, metavar="REF",
              help="Only this image (REPOSITORY:TAG or REPOSITORY@DIGEST; repeatable).")  # fmt: skip
@repo_options
@click.option("--json", "as_json", is_flag=True)
@pass_settings
def images_command(settings: Settings, system_name: str, point: str, registry: str | None,
                   only: tuple[str, ...], repo_ref: str | None, password_file: str | None,
                   as_json: bool) -> None:  # fmt: skip
    """Push SYSTEM's images back, by tag and digest, and read each back from the registry
    to check its digest."""
    from drplan.recovery.images import restore_images, target_registry  # noqa: PLC0415

    plan = settings.load().plan
    spec = system_of(plan, system_name, "images")
    to, user, secret = target_registry(spec, registry)
    with chosen(settings, plan, system_name, "images", point, repo_ref, password_file) as (
        repo,
        snap,
        ref,
    ):
        restored = restore_images(repo, snap, registry=to, username=user, password=secret,
                                  cacert=spec.cacert, only=list(only) or None)  # fmt: skip
    if as_json:
        emit_json({"system": system_name, "snapshot": snap.id, "location": ref, "registry": to,
                   "images": {i.reference: {"digest": i.digest, "verified": i.verified}
                              for i in restored.images},
                   "bytes_sent": restored.bytes_sent, "blobs_sent": restored.blobs_sent,
                   "blobs_present": restored.blobs_present})  # fmt: skip
        return
    click.echo(f"pushed {len(restored.images)} image(s) of {system_name} from {ref} (snapshot"
               f" {snap.short_id} of {clock.rfc3339(snap.time)}) to {to}, every digest read back"
               f" and verified; {human_bytes(restored.bytes_sent)} sent")  # fmt: skip
    for image in restored.images:
        click.echo(f"  {image.reference}  {image.digest}")
