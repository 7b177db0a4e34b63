"""Choosing a backend from a location URL (with the retries S3 needs), and making URLs safe to print."""

from __future__ import annotations

import os
import re
from typing import Any

from drplan.errors import UsageError
from drplan.storage.base import PermissionDenied, Storage
from drplan.storage.local import LocalStorage
from drplan.storage.retry import ATTEMPTS, RetryingStorage

_CREDENTIALS = re.compile(r"(//)[^/@]*@")


def redact(url: str) -> str:
    """``s3://key:secret@host/bucket`` as ``s3://***@host/bucket``."""
    return _CREDENTIALS.sub(r"\1***@", url)


# How long S3 requests may take and how often they are tried, for slow links or tests.
S3_TIMEOUT_ENV = "DRPLAN_S3_TIMEOUT"
S3_ATTEMPTS_ENV = "DRPLAN_S3_ATTEMPTS"
# Set on a backup host whose S3 credentials may write but not delete (docs/operations.md):
# drplan then never asks to delete there, where it would only be refused.
APPEND_ONLY_ENV = "DRPLAN_APPEND_ONLY"
_YES, _NO = ("1", "true", "yes"), ("", "0", "false", "no")
DELETE_HINT = (
    "forget, prune and key remove delete: run them with credentials that have s3:DeleteObject"
    " (the privileged host of docs/operations.md, not the append-only backup host)"
)


def s3_tuning() -> dict[str, Any]:
    """S3 client options from the environment: ``$DRPLAN_S3_TIMEOUT`` seconds per request,
    and ``$DRPLAN_APPEND_ONLY`` (1, true, yes) for credentials that may not delete."""
    options: dict[str, Any] = {}
    try:
        if timeout := os.environ.get(S3_TIMEOUT_ENV):
            options = {"connect_timeout": float(timeout), "read_timeout": float(timeout)}
    except ValueError:
        raise UsageError(f"${S3_TIMEOUT_ENV} must be seconds, not {timeout!r}") from None
    append_only = os.environ.get(APPEND_ONLY_ENV, "").strip().lower()
    if append_only not in _YES + _NO:
        raise UsageError(f"${APPEND_ONLY_ENV} must be 1 or 0, not {append_only!r}")
    if append_only in _YES:
        options["append_only"] = True
    return options


def refuse_to_delete(url: str, doing: str) -> None:
    """Stop ``doing``, which deletes, before it starts, where ``$DRPLAN_APPEND_ONLY`` says
    this host's credentials may not delete (S3 locations): not part way through, nor only
    once something happens to be deletable."""
    if url.startswith("s3://") and s3_tuning().get("append_only"):
        raise PermissionDenied(
            f"{url}: {doing} deletes, and ${APPEND_ONLY_ENV} says this host's credentials may"
            " not (s3:DeleteObject)",
            hint=DELETE_HINT,
        )


def with_retries(storage: Storage) -> Storage:
    """``storage`` with each operation tried up to ``$DRPLAN_S3_ATTEMPTS`` times (default 8)."""
    attempts = os.environ.get(S3_ATTEMPTS_ENV) or str(ATTEMPTS)
    if not attempts.isdigit() or int(attempts) < 1:
        raise UsageError(f"${S3_ATTEMPTS_ENV} must be a whole number from 1, not {attempts!r}")
    return RetryingStorage(storage, int(attempts))


def open_storage(url: str) -> Storage:
    """A backend for a path, or for an ``s3://bucket/prefix`` URL with retries around it."""
    if url.startswith("s3://"):
        from drplan.storage.s3 import S3Storage  # noqa: PLC0415 - boto3 is slow to import

        return with_retries(S3Storage.from_url(url, **s3_tuning()))
    if "://" in url:
        raise UsageError(
            f"unsupported location {redact(url)}",
            hint="use a directory path or s3://bucket/prefix",
        )
    return LocalStorage(url)
