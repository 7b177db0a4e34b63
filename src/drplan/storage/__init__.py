"""Storage: where repository objects live, behind one small protocol.

Terms:

object
    A named byte string (``data/ab/ab12...``), written once and never modified.
backend
    An implementation of :class:`Storage` for one kind of place: a local directory,
    an S3-compatible bucket. Backends move bytes and nothing else; policy (retries
    aside, which know the error contract) lives above them.
location URL
    How a backend is named: a path (``/var/backups/drplan``) or ``s3://bucket/prefix``.

Error contract: :class:`NotFound` when an object does not exist; :class:`TransientError`
when trying again may help (network, throttling); any other :class:`StorageError`
is permanent.
"""

from drplan.storage.base import (
    NotFound,
    ObjectInfo,
    Storage,
    StorageError,
    TransientError,
)
from drplan.storage.registry import open_storage, redact

__all__ = [
    "NotFound",
    "ObjectInfo",
    "Storage",
    "StorageError",
    "TransientError",
    "open_storage",
    "redact",
]
