"""Pushing an images snapshot back to a registry (the recovery site's, or the original).

Order is what a registry checks on the way: every blob of an image before its
manifest, every child manifest before its index; a manifest goes up by digest, then
by tag. A blob the target already has (``HEAD``) is not sent; one pushed this run to
another repository of the target is mounted from there. Afterwards each reference is
read back from the target and its digest compared with the snapshot's: an image is
reported restored only once the target serves exactly what was backed up.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from drplan.errors import DrplanError, IntegrityError
from drplan.plan.model import ImagesSystem
from drplan.repo.repository import Repository
from drplan.repo.snapshot import Snapshot
from drplan.repo.tree import Node
from drplan.sources.images.backup import BLOBS, INDEX, KIND, REF_NAME
from drplan.sources.images.manifest import DIGEST, Manifest, sha256_of
from drplan.sources.images.registry import RegistryClient
from drplan.sources.stored import files_of, read_stored


class ImagesRestoreError(DrplanError):
    """The snapshot is not an images snapshot, or names no image asked for."""


@dataclass(frozen=True)
class RestoredImage:
    """One reference as pushed: its name on the target, its digest, whether read back."""

    reference: str
    digest: str
    verified: bool


@dataclass
class ImagesRestored:
    images: list[RestoredImage] = field(default_factory=list)
    bytes_sent: int = 0
    blobs_sent: int = 0
    blobs_present: int = 0  # the target had them (or mounted them): nothing sent
    manifests_pushed: int = 0


@dataclass
class _Pusher:
    repo: Repository
    client: RegistryClient
    blobs: dict[str, Node]  # by digest, from the snapshot's blobs/sha256/
    result: ImagesRestored
    done: set[tuple[str, str]] = field(default_factory=set)  # (repository, digest)
    where: dict[str, str] = field(default_factory=dict)  # digest -> a target repository

    def node(self, digest: str) -> Node:
        node = self.blobs.get(digest)
        if node is None:
            raise IntegrityError(
                f"the snapshot lacks blob {digest}, which its images name",
                hint="run `drplan check`; restore an earlier snapshot of the system",
            )
        return node

    def manifest(self, digest: str, media_type: str) -> Manifest:
        raw = b"".join(read_stored(self.repo, self.node(digest)))
        if sha256_of(raw) != digest:
            raise IntegrityError(f"the snapshot's manifest {digest} does not match its digest")
        return Manifest(media_type, raw, digest)

    def blob(self, repository: str, digest: str) -> None:
        if (repository, digest) in self.done:
            return
        node = self.node(digest)
        if self.client.blob_size(repository, digest) is not None:
            self.result.blobs_present += 1
        elif self.client.push_blob(
            repository, digest, node.size, read_stored(self.repo, node), self.where.get(digest)
        ):
            self.result.blobs_sent += 1
            self.result.bytes_sent += node.size
        else:
            self.result.blobs_present += 1  # mounted from another repository
        self.done.add((repository, digest))
        self.where.setdefault(digest, repository)

    def image(self, repository: str, manifest: Manifest) -> None:
        """Push a manifest and all it names, children first, by digest."""
        if (repository, manifest.digest) in self.done:
            return
        try:
            if manifest.is_index:
                for child in manifest.children():
                    self.image(repository, self.manifest(child.digest, child.media_type))
            else:
                for desc in manifest.blobs():
                    self.blob(repository, desc.digest)
        except (ValueError, KeyError, TypeError) as exc:
            raise IntegrityError(
                f"the snapshot's manifest {manifest.digest} is malformed ({exc})"
            ) from None
        self.put(repository, manifest.digest, manifest)
        self.done.add((repository, manifest.digest))

    def put(self, repository: str, reference: str, manifest: Manifest) -> None:
        got = self.client.put_manifest(repository, reference, manifest)
        self.result.manifests_pushed += 1
        if got != manifest.digest:
            raise IntegrityError(
                f"registry {self.client.address}: {repository}:{reference} was stored as {got},"
                f" not {manifest.digest}",
                hint="the registry rewrote the manifest; push to a registry that keeps it as is",
            )


def _split(ref: str) -> tuple[str, str]:
    """``REPO:TAG`` or ``REPO@DIGEST`` into repository and tag or digest."""
    if "@" in ref:
        repository, _, digest = ref.partition("@")
        return repository, digest
    repository, _, tag = ref.rpartition(":")
    return repository, tag


def restore_images(
    repo: Repository,
    snapshot: Snapshot,
    *,
    registry: str,
    username: str | None = None,
    password: str | None = None,
    cacert: str | None = None,
    only: list[str] | None = None,
    rename: dict[str, str] | None = None,
) -> ImagesRestored:
    """Push the snapshot's images to ``registry`` (``only`` these ``REPO:TAG`` or ``REPO``
    names; ``rename`` maps repository names), then read each back and compare digests."""
    if snapshot.source.get("kind") != KIND:
        raise ImagesRestoreError(
            f"snapshot {snapshot.short_id} is not an images snapshot",
            hint="restore it with `drplan restore`",
        )
    files = dict(files_of(repo, snapshot.tree))
    blobs = {
        "sha256:" + path.removeprefix(BLOBS): node
        for path, node in files.items()
        if path.startswith(BLOBS)
    }
    if INDEX not in files:
        raise IntegrityError(
            f"snapshot {snapshot.short_id} has no {INDEX}", hint="run `drplan check`"
        )
    entries = json.loads(b"".join(read_stored(repo, files[INDEX])))["manifests"]
    chosen = []
    for entry in entries:
        ref = entry.get("annotations", {}).get(REF_NAME, "")
        repository, reference = _split(ref)
        if not only or ref in only or repository in only:
            chosen.append((repository, reference, entry))
    if not chosen:
        raise ImagesRestoreError(
            f"snapshot {snapshot.short_id} holds no image named {', '.join(only or [])}",
            hint="see the snapshot's images with `drplan snapshots --json`",
        )
    client = RegistryClient(registry, username=username, password=password, cacert=cacert)
    result = ImagesRestored()
    pusher = _Pusher(repo, client, blobs, result)
    client.ping()
    for repository, reference, entry in chosen:
        target = (rename or {}).get(repository, repository)
        manifest = pusher.manifest(entry["digest"], entry["mediaType"])
        pusher.image(target, manifest)
        if not DIGEST.fullmatch(reference):
            pusher.put(target, reference, manifest)
    for repository, reference, entry in chosen:
        target = (rename or {}).get(repository, repository)
        served = client.manifest(target, reference)  # by digest: checked against it
        name = f"{target}@{reference}" if DIGEST.fullmatch(reference) else f"{target}:{reference}"
        if served.digest != entry["digest"]:
            raise IntegrityError(
                f"registry {client.address}: {name} serves {served.digest}, not the"
                f" snapshot's {entry['digest']}",
                hint="something else pushed to that tag meanwhile; restore again",
            )
        result.images.append(RestoredImage(name, served.digest, verified=True))
    return result


def target_registry(spec: ImagesSystem, given: str | None) -> tuple[str, str | None, str | None]:
    """Where images go back to, and with which credentials: ``--registry``, else the
    system's ``restore_registry`` (with its own credentials), else its ``registry``."""
    to = given or spec.restore_registry or spec.registry
    if to != spec.registry:
        user = spec.restore_username or spec.username
        secret = spec.restore_password or spec.password
    else:
        user, secret = spec.username, spec.password
    return to, user, None if secret is None else secret.resolve()
