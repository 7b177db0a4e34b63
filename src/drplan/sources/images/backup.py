"""Images backups: a system's images, copied from its registry into a snapshot whose
tree is an OCI image layout (``oci-layout``, ``index.json``, ``blobs/sha256/<hex>``).

Restored with plain file restore, the snapshot is a directory that ``skopeo copy
oci:DIR:REPO:TAG`` reads. ``index.json`` names one manifest per reference, annotated
with ``org.opencontainers.image.ref.name`` = ``REPO:TAG`` (or ``REPO@DIGEST``); an index
is kept whole, with every platform's manifest.

A blob the system's newest earlier snapshot holds (found by digest in its tree) is
reused from it without a request to the registry; every other blob is streamed
into the repository as it arrives, and kept only if its SHA-256 is its digest. A
reference that fails (refused, missing, altered, unsupported) is named in the
warnings and left out; the snapshot then says it is partial. If no reference could be
backed up, or the registry cannot be reached, nothing is saved.
"""

from __future__ import annotations

import fnmatch
import io
import json
from dataclasses import dataclass, field
from typing import BinaryIO, cast

from drplan.errors import SourceError
from drplan.plan.model.systems import ImagesSystem
from drplan.repo.blob_pool import BlobPool
from drplan.repo.pack import DATA
from drplan.repo.repository import Repository
from drplan.repo.snapshot import Snapshot
from drplan.repo.tree import Node
from drplan.sources.images.manifest import (
    DIGEST,
    OCI_INDEX,
    REPOSITORY,
    TAG,
    Descriptor,
    DigestMismatchError,
    Manifest,
    RegistryError,
    RegistryUnreachableError,
    UnsupportedManifestError,
    reference_name,
    sha256_of,
)
from drplan.sources.images.registry import RegistryClient
from drplan.sources.stored import (
    Run,
    Stored,
    TreeBuilder,
    file_node,
    files_of,
    newest_of,
    read_stored,
    store_stream,
)

KIND = "images"
LAYOUT = "oci-layout"
INDEX = "index.json"
BLOBS = "blobs/sha256/"
REF_NAME = "org.opencontainers.image.ref.name"
LAYOUT_VERSION = {"imageLayoutVersion": "1.0.0"}


class ImagesBackupError(SourceError):
    """No image could be backed up (or the registry is unreachable); nothing was saved."""


@dataclass
class ImagesBackup:
    snapshot: Snapshot
    warnings: list[str]


@dataclass(frozen=True)
class Wanted:
    """One reference to back up: a repository and a tag or digest."""

    repository: str
    reference: str

    @property
    def name(self) -> str:
        return reference_name(self.repository, self.reference)


def expand(client: RegistryClient, patterns: list[str]) -> tuple[list[Wanted], list[str]]:
    """The references ``REPO``, ``REPO:GLOB`` and ``REPO@sha256:...`` name, and a warning
    for each pattern that names none."""
    wanted: list[Wanted] = []
    warnings: list[str] = []
    for pattern in patterns:
        repository, at, digest = pattern.partition("@")
        glob = "*"
        if not at:
            head, colon, tail = pattern.rpartition(":")
            repository, glob = (head, tail) if colon and "/" not in tail else (pattern, "*")
        if not REPOSITORY.fullmatch(repository) or (at and not DIGEST.fullmatch(digest)):
            warnings.append(f"{pattern}: not a repository name, REPO:TAG or REPO@sha256:<hex>")
            continue
        if at:
            wanted.append(Wanted(repository, digest))
            continue
        if TAG.fullmatch(glob):  # an exact tag: asked for by name, so a 404 names it
            wanted.append(Wanted(repository, glob))
            continue
        try:
            tags = client.tags(repository)
        except RegistryUnreachableError:
            raise
        except (RegistryError, ValueError) as exc:
            warnings.append(f"{pattern}: {exc}")
            continue
        matched = sorted(t for t in tags if fnmatch.fnmatchcase(t, glob))
        if not matched:
            warnings.append(f"{pattern}: no tag of {repository} matches")
        wanted.extend(Wanted(repository, t) for t in matched)
    return list(dict.fromkeys(wanted)), warnings


@dataclass
class _Fetcher:
    """Blobs and manifests by digest: reused when stored before, else downloaded and
    stored (and then reusable within this run)."""

    repo: Repository
    pool: BlobPool
    client: RegistryClient
    known: dict[str, Node]
    stored: dict[str, Node] = field(default_factory=dict)
    downloaded: set[str] = field(default_factory=set)
    # Manifests fetched this run, by digest: their chunks may not be readable back before
    # the snapshot is saved (still in an open pack), and they are small.
    manifests: dict[str, Manifest] = field(default_factory=dict)
    bytes_read: int = 0

    def have(self, digest: str) -> Node | None:
        return self.stored.get(digest) or self.known.get(digest)

    def blob(self, repository: str, desc: Descriptor) -> Node:
        node = self.have(desc.digest)
        if node is not None:
            return node
        with self.client.open_blob(repository, desc.digest) as reader:
            stored = store_stream(self.repo, self.pool, cast(BinaryIO, reader))
        return self._keep(desc.digest, stored, desc.size, repository)

    def manifest(
        self, repository: str, reference: str, media_type: str | None = None
    ) -> tuple[Manifest, Node]:
        """A manifest by digest (with the media type its parent gives), or by tag."""
        if media_type is None:
            head = self.client.manifest_head(repository, reference)
            if head is not None and (head[0] == reference or not DIGEST.fullmatch(reference)):
                reference, media_type = head
        if reference in self.manifests:
            return self.manifests[reference], self.stored[reference]
        node = self.have(reference) if media_type else None
        if node is not None and media_type is not None:
            raw = b"".join(read_stored(self.repo, node))
            if sha256_of(raw) == reference:
                return Manifest(media_type, raw, reference), node
        manifest = self.client.manifest(repository, reference)
        node = self.have(manifest.digest)
        if node is None:
            stored = store_stream(self.repo, self.pool, io.BytesIO(manifest.raw))
            node = self._keep(manifest.digest, stored, len(manifest.raw), repository)
            self.manifests[manifest.digest] = manifest
        return manifest, node

    def _keep(self, digest: str, stored: Stored, size: int, repository: str) -> Node:
        if "sha256:" + stored.sha256 != digest or stored.size != size:
            raise DigestMismatchError(
                f"registry {self.client.address}: blob {digest} of {repository}: "
                f"{stored.size} bytes with digest sha256:{stored.sha256} (refused)"
            )
        self.bytes_read += stored.size
        self.downloaded.add(digest)
        node = file_node(digest.removeprefix("sha256:"), stored, 0o644)
        self.stored[digest] = node
        return node


def _image(fetch: _Fetcher, wanted: Wanted) -> tuple[Manifest, dict[str, Node], int]:
    """One reference's manifest, and every blob it names (child manifests too), stored."""
    top, node = fetch.manifest(wanted.repository, wanted.reference)
    blobs: dict[str, Node] = {top.digest: node}
    try:
        children = [(top, node)]
        if top.is_index:
            children = [
                fetch.manifest(wanted.repository, d.digest, d.media_type) for d in top.children()
            ]
        for child, child_node in children:
            blobs[child.digest] = child_node
            for desc in child.blobs():
                blobs[desc.digest] = fetch.blob(wanted.repository, desc)
    except (ValueError, KeyError, TypeError) as exc:
        raise UnsupportedManifestError(
            f"registry {fetch.client.address}: {wanted.name}: malformed manifest ({exc})"
        ) from None
    return top, blobs, len(children)


def images_backup(
    repo: Repository,
    *,
    system: str,
    spec: ImagesSystem,
    job: str | None,
    tags: list[str],
    host: str | None = None,
) -> ImagesBackup:
    """Back up the system's images into ``repo`` (locked by the caller)."""
    password = spec.password.resolve() if spec.password else None
    client = RegistryClient(spec.registry, username=spec.username, password=password,
                            cacert=spec.cacert)  # fmt: skip
    run = Run(repo)
    try:
        client.ping()
    except RegistryError as exc:
        raise ImagesBackupError(f"system {system}: {exc}", hint=exc.hint) from None
    previous = newest_of(repo, system, KIND)
    known: dict[str, Node] = {}
    if previous is not None:
        for path, node in files_of(repo, previous.tree):
            digest = "sha256:" + path.removeprefix(BLOBS)
            if path.startswith(BLOBS) and DIGEST.fullmatch(digest) and repo.has_all(node.content):
                known[digest] = node
    try:
        wanted, warnings = expand(client, spec.images)
    except RegistryUnreachableError as exc:
        raise ImagesBackupError(f"system {system}: {exc}", hint=exc.hint) from None
    tree = TreeBuilder()
    entries: list[dict[str, object]] = []
    images: dict[str, dict[str, object]] = {}
    first_hint: str | None = None
    with BlobPool(repo, DATA) as pool:
        fetch = _Fetcher(repo, pool, client, known)
        for item in wanted:
            try:
                top, blobs, platforms = _image(fetch, item)
            except RegistryUnreachableError as exc:
                raise ImagesBackupError(f"system {system}: {exc}", hint=exc.hint) from None
            except RegistryError as exc:
                warnings.append(f"{item.name}: {exc}")
                first_hint = first_hint or exc.hint
                continue
            for digest, node in blobs.items():
                tree.add(BLOBS + digest.removeprefix("sha256:"), node)
            entries.append({
                "mediaType": top.media_type, "digest": top.digest, "size": len(top.raw),
                "annotations": {REF_NAME: item.name},
            })  # fmt: skip
            images[item.name] = {"digest": top.digest, "mediaType": top.media_type,
                                 "platforms": platforms}  # fmt: skip
    if not entries:
        more = f" (and {len(warnings) - 1} more)" if len(warnings) > 1 else ""
        first = warnings[0] if warnings else "no image matched"
        raise ImagesBackupError(
            f"system {system}: no image could be backed up: {first}{more}",
            hint=first_hint
            or "check the system's `images` against the registry; nothing was saved",
        )
    with BlobPool(repo, DATA) as pool:
        for name, body in ((LAYOUT, LAYOUT_VERSION),
                           (INDEX, {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries})):  # fmt: skip
            tree.add(
                name,
                store_stream(repo, pool, io.BytesIO(json.dumps(body, indent=1).encode())),
                0o644,
            )
    in_tree = {path[-1] for path in tree.files if len(path) == 3}
    downloaded = sum(1 for d in fetch.downloaded if d.removeprefix("sha256:") in in_tree)
    source: dict[str, object] = {
        "kind": KIND, "registry": client.address, "images": images,
        "blobs_downloaded": downloaded, "blobs_reused": len(in_tree) - downloaded,
        "partial": bool(warnings),
    }  # fmt: skip
    snapshot = run.save(
        tree, system=system, job=job, tags=tags, source=source, bytes_read=fetch.bytes_read,
        files_new=downloaded + 2, files_unchanged=len(in_tree) - downloaded, host=host,
        parent=previous.id if previous else None, errors=warnings,
    )  # fmt: skip
    return ImagesBackup(snapshot, warnings)
