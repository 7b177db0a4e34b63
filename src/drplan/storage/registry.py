"""Choosing a backend from a location URL, and making URLs safe to print."""

from __future__ import annotations

import os
import re
from typing import Any

from drplan.errors import UsageError
from drplan.storage.base import Storage
from drplan.storage.local import LocalStorage

_CREDENTIALS = re.compile(r"(//)[^/@]*@")


def redact(url: str) -> str:
    """``s3://key:secret@host/bucket`` as ``s3://***@host/bucket``."""
    return _CREDENTIALS.sub(r"\1***@", url)


# How long S3 requests may take and how often they are tried, for slow links or tests.
S3_TIMEOUT_ENV = "DRPLAN_S3_TIMEOUT"
S3_ATTEMPTS_ENV = "DRPLAN_S3_ATTEMPTS"


def s3_tuning() -> dict[str, Any]:
    """S3 client options from the environment: ``$DRPLAN_S3_TIMEOUT`` seconds, ``$DRPLAN_S3_ATTEMPTS``."""
    options: dict[str, Any] = {}
    try:
        if timeout := os.environ.get(S3_TIMEOUT_ENV):
            options["connect_timeout"] = options["read_timeout"] = float(timeout)
        if attempts := os.environ.get(S3_ATTEMPTS_ENV):
            options["max_attempts"] = int(attempts)
    except ValueError:
        raise UsageError(
            f"${S3_TIMEOUT_ENV} must be seconds and ${S3_ATTEMPTS_ENV} a whole number"
        ) from None
    return options


def open_storage(url: str) -> Storage:
    """A backend for a path or an ``s3://bucket/prefix`` URL."""
    if url.startswith("s3://"):
        from drplan.storage.s3 import S3Storage  # noqa: PLC0415 - boto3 is slow to import

        return S3Storage.from_url(url, **s3_tuning())
    if "://" in url:
        raise UsageError(
            f"unsupported location {redact(url)}",
            hint="use a directory path or s3://bucket/prefix",
        )
    return LocalStorage(url)
