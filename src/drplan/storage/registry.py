"""Choosing a backend from a location URL, and making URLs safe to print."""

from __future__ import annotations

import re

from drplan.errors import UsageError
from drplan.storage.base import Storage
from drplan.storage.local import LocalStorage

_CREDENTIALS = re.compile(r"(//)[^/@]*@")


def redact(url: str) -> str:
    """``s3://key:secret@host/bucket`` as ``s3://***@host/bucket``."""
    return _CREDENTIALS.sub(r"\1***@", url)


def open_storage(url: str) -> Storage:
    """A backend for a path or an ``s3://bucket/prefix`` URL."""
    if url.startswith("s3://"):
        from drplan.storage.s3 import S3Storage  # noqa: PLC0415 - boto3 is slow to import

        return S3Storage.from_url(url)
    if "://" in url:
        raise UsageError(
            f"unsupported location {redact(url)}",
            hint="use a directory path or s3://bucket/prefix",
        )
    return LocalStorage(url)
