"""Storage: where repository objects live, behind one small protocol.

Terms:

object
    A named byte string (``data/ab/ab12...``), written once and never modified.
backend
    An implementation of :class:`Storage` for one kind of place: a local directory,
    an S3-compatible bucket. Backends move bytes and nothing else, one attempt per
    operation; policy lives above them.
wrapper
    A Storage around another that adds policy: :class:`RetryingStorage` tries each
    operation again while it fails transiently (the registry puts it around S3).
location URL
    How a backend is named: a path (``/var/backups/drplan``) or ``s3://bucket/prefix``.

Error contract: :class:`NotFound` when an object does not exist; :class:`TransientError`
when trying again may help (network, a response cut short, a failing service), its
subclass :class:`Throttled` when the service asks to slow down; any other
:class:`StorageError` is permanent, :class:`PermissionDenied` among them when the
credentials may not do what was asked (a delete, on an append-only backup host).
"""

from drplan.storage.base import (
    NotFound,
    ObjectInfo,
    PermissionDenied,
    Storage,
    StorageError,
    Throttled,
    TransientError,
)
from drplan.storage.registry import open_storage, redact
from drplan.storage.retry import RetryingStorage

__all__ = [
    "NotFound",
    "ObjectInfo",
    "PermissionDenied",
    "RetryingStorage",
    "Storage",
    "StorageError",
    "Throttled",
    "TransientError",
    "open_storage",
    "redact",
]
