"""A location of the plan opened as storage: a local path, or an S3 bucket with the
plan's region, endpoint, credentials, storage class, encryption and Object Lock, behind
the retries every remote call gets. One place for the CLI, the daemon and the web
server alike."""

from __future__ import annotations

from typing import TYPE_CHECKING

from drplan.storage import Storage, open_storage
from drplan.storage.registry import s3_tuning, with_retries

if TYPE_CHECKING:
    from drplan.plan.model import Location


def storage_for(location: Location) -> Storage:
    """A backend configured from a plan location."""
    from drplan.plan.model import LocalLocation, S3Location  # noqa: PLC0415 - see cli.COMMANDS

    if isinstance(location, LocalLocation):
        return open_storage(location.path)
    assert isinstance(location, S3Location)
    from drplan.storage.s3 import S3Storage  # noqa: PLC0415 - boto3 is slow to import

    lock = (
        (location.immutability.mode.upper(), location.immutability.days)
        if location.immutability
        else None
    )
    s3 = S3Storage(
        location.bucket,
        location.prefix,
        region=location.region,
        endpoint_url=location.endpoint,
        access_key_id=location.access_key_id.resolve() if location.access_key_id else None,
        secret_access_key=location.secret_access_key.resolve()
        if location.secret_access_key
        else None,
        storage_class=location.storage_class,
        server_side_encryption=location.server_side_encryption,
        kms_key_id=location.kms_key_id,
        object_lock=lock,  # type: ignore[arg-type]
        **s3_tuning(),
    )
    return with_retries(s3)
