"""Drills of the platform's state: etcd, git and images systems restored into a
scratch directory and proven by their own tools.

- etcd: the snapshot made into a member's data directory, a scratch member started
  from it on loopback, and its revision, key count and check prefixes held against
  what the backup counted (``recovery.etcd.prove``).
- git: every repository restored bare, ``git fsck`` clean and every ref as backed up
  (``recovery.git``).
- images: pushed to the system's ``restore_registry`` (the recovery site's) and each
  tag read back with its digest, when it has one; else written as the OCI layout it is
  stored as, and every blob's SHA-256 held against its digest, every manifest's
  references present: what a push would send, checked without touching a registry.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from drplan.drills.validations import Validation, timed
from drplan.plan.model import EtcdSystem, ImagesSystem, Plan
from drplan.repo.repository import Repository
from drplan.repo.snapshot import Snapshot

PLATFORM_KINDS = ("etcd", "git", "images")


@dataclass
class Recovery:
    """A restore done; ``prove`` runs its checks (off the repository's lock)."""

    prove: Callable[[], list[Validation]]


def _check(name: str, kind: str, check: Callable[[], str]) -> Validation:
    """Run ``check``, timed: its detail when it passes, the error's message when it fails."""
    return timed(name, kind, lambda: ("passed", check()))


def platform_recovery(
    plan: Plan, system: str, repo: Repository, snapshot: Snapshot, scratch: Path
) -> Recovery:
    spec = plan.systems[system]
    kind = snapshot.source.get("kind")
    if kind == "etcd":
        assert isinstance(spec, EtcdSystem)
        return _etcd(system, spec, repo, snapshot, scratch)
    if kind == "git":
        from drplan.recovery.git import restore_git  # noqa: PLC0415

        started = time.monotonic()
        restored = restore_git(repo, snapshot, scratch / "git", bare=True)
        detail = ", ".join(f"{n}: {r.refs} refs, fsck {r.fsck}"
                           for n, r in restored.repositories.items())  # fmt: skip
        done = Validation("git fsck and refs as backed up", "git", "passed",
                          time.monotonic() - started, detail)  # fmt: skip
        return Recovery(lambda: [done])
    assert isinstance(spec, ImagesSystem)
    return _images(spec, repo, snapshot, scratch)


def _etcd(system: str, spec: EtcdSystem, repo: Repository, snapshot: Snapshot,
          scratch: Path) -> Recovery:  # fmt: skip
    from drplan.recovery.etcd import Member, prove, restore_etcd  # noqa: PLC0415
    from drplan.sources.postgres.scratch import free_port  # noqa: PLC0415

    member = Member("drill", f"http://127.0.0.1:{free_port()}")
    restored = restore_etcd(repo, snapshot, scratch / "etcd", member, spec.bin_dir)

    def started_and_counted() -> str:
        prove(restored, system, spec, snapshot, member)
        return "a scratch member started from it holds " + ", ".join(
            f"{k} {v}" for k, v in restored.checks.items())  # fmt: skip

    return Recovery(lambda: [_check("etcd member starts, keys as backed up", "etcd",
                                    started_and_counted)])  # fmt: skip


def _images(spec: ImagesSystem, repo: Repository, snapshot: Snapshot, scratch: Path) -> Recovery:
    if spec.restore_registry:
        from drplan.recovery.images import restore_images, target_registry  # noqa: PLC0415

        to, user, secret = target_registry(spec, None)
        started = time.monotonic()
        pushed = restore_images(repo, snapshot, registry=to, username=user, password=secret,
                                cacert=spec.cacert)  # fmt: skip
        done = Validation(f"images pushed to {to}, digests read back", "images", "passed",
                          time.monotonic() - started,
                          f"{len(pushed.images)} image(s), {pushed.blobs_sent} blob(s) sent,"
                          f" {pushed.blobs_present} already there")  # fmt: skip
        return Recovery(lambda: [done])
    from drplan.recovery.files import RestoreOptions, restore_files  # noqa: PLC0415

    layout = scratch / "oci"
    restore_files(repo, snapshot, RestoreOptions(str(layout)))
    return Recovery(lambda: [_check("OCI layout whole, every digest verified", "images",
                                    lambda: verify_layout(layout))])  # fmt: skip


def verify_layout(layout: Path) -> str:
    """Every blob's SHA-256 its name, and every descriptor reachable from index.json present."""
    from drplan.errors import IntegrityError  # noqa: PLC0415

    blobs = layout / "blobs" / "sha256"
    for blob in blobs.iterdir():
        digest = hashlib.sha256()
        with blob.open("rb") as f:
            while block := f.read(1 << 20):
                digest.update(block)
        if digest.hexdigest() != blob.name:
            raise IntegrityError(f"blob sha256:{blob.name[:16]} does not match its digest")
    index = json.loads((layout / "index.json").read_text())
    pending = list(index.get("manifests") or [])
    seen = 0
    while pending:
        descriptor = pending.pop()
        path = blobs / str(descriptor.get("digest", "")).removeprefix("sha256:")
        if not path.is_file():
            raise IntegrityError(f"{descriptor.get('digest')} is referenced but missing")
        seen += 1
        if "manifest" in str(descriptor.get("mediaType")) or "index" in str(
            descriptor.get("mediaType")
        ):
            body = json.loads(path.read_bytes())
            pending += list(body.get("manifests") or [])
            pending += [body["config"]] if "config" in body else []
            pending += list(body.get("layers") or [])
    images = len(index.get("manifests") or [])
    return f"{images} image(s), {seen} descriptors present, every blob's digest verified"
