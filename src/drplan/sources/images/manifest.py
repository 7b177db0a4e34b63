"""What a registry holds, as drplan reads it: media types, descriptors, manifests and
indexes by their exact bytes, sha256 digests, and the errors a registry request ends in."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from drplan.errors import SourceError

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MANIFEST_TYPES = (OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST)
INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_LIST})
MAX_MANIFEST = 4 << 20  # the distribution spec's limit; a larger "manifest" is not one

DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


def reference_name(repository: str, reference: str) -> str:
    """``REPO@sha256:...`` for a digest, ``REPO:TAG`` for a tag."""
    return (
        f"{repository}@{reference}" if DIGEST.fullmatch(reference) else f"{repository}:{reference}"
    )


REPOSITORY = re.compile(
    r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
)
TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")


class RegistryError(SourceError):
    """A registry request failed; the message names the registry and what was asked."""


class RegistryUnreachableError(RegistryError):
    """No connection to the registry (refused, timed out, TLS failed)."""


class RegistryAuthError(RegistryError):
    """The registry refused the credentials (401) or the access (403)."""


class RegistryNotFoundError(RegistryError):
    """No such repository, tag, manifest or blob (404)."""


class DigestMismatchError(RegistryError):
    """Content whose SHA-256 is not the digest it was asked for (refused)."""


class UnsupportedManifestError(RegistryError):
    """A manifest of a kind this client does not handle (Docker schema 1, unknown types)."""


@dataclass(frozen=True)
class Descriptor:
    """A reference to content: its media type, digest and size (and platform, in an index)."""

    media_type: str
    digest: str
    size: int
    platform: dict[str, Any] | None = None


@dataclass(frozen=True)
class Manifest:
    """A manifest or index as the registry holds it: exact bytes, media type, digest."""

    media_type: str
    raw: bytes
    digest: str

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEX_TYPES

    def children(self) -> list[Descriptor]:
        """An index's manifests (every platform)."""
        return [_descriptor(d) for d in self._body().get("manifests", [])]

    def blobs(self) -> list[Descriptor]:
        """An image manifest's config, then its layers."""
        body = self._body()
        return [_descriptor(body["config"]), *(_descriptor(d) for d in body.get("layers", []))]

    def _body(self) -> dict[str, Any]:
        body = json.loads(self.raw)
        if not isinstance(body, dict):
            raise ValueError("not a JSON object")
        return body


def _descriptor(raw: dict[str, Any]) -> Descriptor:
    digest, size = raw["digest"], raw["size"]
    if not isinstance(digest, str) or not DIGEST.fullmatch(digest):
        raise ValueError(f"unsupported digest {str(digest)[:80]!r} (only sha256)")
    if not isinstance(size, int) or size < 0:
        raise ValueError(f"bad size for {digest}")
    return Descriptor(str(raw.get("mediaType", "")), digest, size, raw.get("platform"))


def sha256_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()
