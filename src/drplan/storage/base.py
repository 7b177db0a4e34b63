"""The Storage protocol and its error contract."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from drplan.errors import PERMISSION_DENIED, DrplanError


class StorageError(DrplanError):
    """A storage operation failed and trying again will not help."""

    exit_code = 1


class NotFound(StorageError):
    """The object does not exist."""


class PermissionDenied(StorageError):
    """The location's credentials may not do this (S3 AccessDenied), or this host said it
    may not (an append-only backup host never asks to delete). Trying again will not help."""

    exit_code = PERMISSION_DENIED


class TransientError(StorageError):
    """The operation failed but may succeed if tried again (network, throttling, busy)."""


class Throttled(TransientError):
    """The service asks for fewer requests (S3 SlowDown, HTTP 429): try again, later."""


@dataclass(frozen=True)
class ObjectInfo:
    name: str
    size: int
    # When it was written (seconds since the epoch), where listings say; not part of what
    # an object is (two listings of one object compare equal whatever they say of it).
    mtime: float = field(default=0.0, compare=False)


class Storage(Protocol):
    """Named immutable objects. Names use '/' and never start with it."""

    @property
    def url(self) -> str:
        """Where this storage is, credentials removed: safe to print."""
        ...

    def read(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        """The object's bytes, or ``length`` bytes from ``offset``; NotFound if absent."""
        ...

    def write(self, name: str, data: bytes, *, hot: bool = False,
              content_type: str | None = None) -> None:  # fmt: skip
        """Store the object durably and atomically: afterwards it is whole or absent.

        ``hot``: a pack of directory listings, kept in the location's readable class
        even when its packs go to an archive class, so listing never needs a thaw.
        ``content_type``: what a web server in front of the location serves it as (the
        status page's static copy); backends that serve nothing ignore it."""
        ...

    def delete(self, name: str) -> None:
        """Remove the object; NotFound if absent."""
        ...

    def verify(self, name: str, data: bytes) -> None:
        """Check that the stored object holds exactly ``data``: read back, or where reading is
        not possible (an archive storage class), the checksum the service computed on
        receipt. Raises IntegrityError when it differs, NotFound when it is absent."""
        ...

    @property
    def lock_days(self) -> int | None:
        """Days each object is locked for when written (the location's immutability), if any."""
        ...

    def locked_until(self, name: str) -> datetime | None:
        """When the object's write-once lock (S3 Object Lock) ends; None if it has none."""
        ...

    def lock_until(self, name: str, until: datetime) -> None:
        """Keep the object locked at least until ``until`` (locks only ever grow)."""
        ...

    @property
    def archives(self) -> bool:
        """Whether packs of file data may be in an archive class (reading needs a thaw)."""
        ...

    def thaw_state(self, name: str) -> str:
        """``hot`` (readable), ``cold`` (archived, not thawed), ``thawing`` or ``thawed``."""
        ...

    def request_thaw(self, name: str, days: int, tier: str) -> None:
        """Ask for a readable copy of an archived object for ``days`` (tier: Standard, Bulk,
        Expedited)."""
        ...

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        """Objects whose names start with ``prefix`` (e.g. ``snapshots/``), in no set order."""
        ...

    def stat(self, name: str) -> ObjectInfo:
        """Size of the object; NotFound if absent."""
        ...

    def exists(self) -> bool:
        """Whether the storage root itself exists (a bucket, a directory)."""
        ...

    def free_space(self) -> int | None:
        """Bytes free where objects are written, when knowable."""
        ...
