"""S3 backend: objects are keys under a bucket prefix, each written by one PUT or one multipart upload.

Both are atomic on S3: the key is absent until the PUT or CompleteMultipartUpload
succeeds, and whole afterwards; a failed multipart upload is aborted. What the bucket
owner asked for at write time (server-side encryption, Object Lock retention, a storage
class) travels as request headers, so it is applied here, object by object. Only packs
(``data/``) take the configured storage class: metadata is read on every run and stays
in STANDARD.

Endpoint and credentials come from the arguments, else from boto3's usual sources
(``AWS_*`` environment variables including ``AWS_ENDPOINT_URL``, ``~/.aws/config`` and
``credentials``, instance roles). An endpoint other than AWS is addressed path-style
(``http://host/bucket/key``), which every S3-compatible server understands.

Errors: each operation is one attempt. Retrying is policy, kept in
:class:`~drplan.storage.retry.RetryingStorage` around this backend; botocore's own
retries are off, as they would multiply its attempts and cannot take in a download cut
short after its headers came. What fails is translated into the storage error
contract: 404 is :class:`NotFound`; network failures, timeouts, responses cut short and
5xx are :class:`TransientError`, throttling (SlowDown, 429) :class:`Throttled`; anything
else (no such bucket, wrong region) is a :class:`StorageError` whose hint names the
next step; AccessDenied is :class:`PermissionDenied`, naming the S3 permission the
operation needs (a HEAD's bare 403 may as well be wrong keys: a StorageError). With
``append_only`` (``$DRPLAN_APPEND_ONLY``, on a backup host whose credentials may not
delete) a delete is refused here, as PermissionDenied, without a request: the service
never sees one. Messages name the bucket and the object, never a credential. A
multipart upload that fails is aborted, so none of its parts linger, unless the abort
fails too (the service unreachable).
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import hashlib
import io
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    HTTPClientError,
    IncompleteReadError,
    NoCredentialsError,
    PartialCredentialsError,
    ResponseStreamingError,
    SSLError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from drplan.errors import IntegrityError, UsageError
from drplan.storage.base import (
    NotFound,
    ObjectInfo,
    PermissionDenied,
    StorageError,
    Throttled,
    TransientError,
)
from drplan.storage.registry import APPEND_ONLY_ENV, DELETE_HINT, redact

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

Encryption = Literal["none", "SSE-S3", "SSE-KMS"]
LockMode = Literal["COMPLIANCE", "GOVERNANCE"]

MULTIPART_THRESHOLD = 64 * 1024 * 1024  # objects this large go up in parts, 4 at a time
MIN_PART_SIZE = 5 * 1024 * 1024  # S3's smallest part (the last one aside)
CONNECT_TIMEOUT = 10.0  # seconds
READ_TIMEOUT = 60.0  # seconds
DATA_PREFIX = "data/"  # the only objects that take a non-STANDARD storage class
# Storage classes whose objects cannot be read until thawed (RestoreObject).
COLD_CLASSES = frozenset({"GLACIER", "DEEP_ARCHIVE"})
# Lock objects are rewritten every few minutes and deleted at the end: retention would
# only pile up versions of them. Everything else is data worth protecting.
# Objects rewritten in place, never under Object Lock: locks, and the status page's
# static copy (a page that could not change would tell customers nothing).
UNLOCKED_PREFIXES = ("locks/", "status-page/")

_SSE_HEADER = {"SSE-S3": "AES256", "SSE-KMS": "aws:kms"}
_THROTTLED = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "TooManyRequests",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "BandwidthLimitExceeded",
    }
)
_UNAVAILABLE = frozenset(
    {
        "RequestTimeout",
        "RequestTimeoutException",
        "PriorRequestNotComplete",
        "InternalError",
        "ServiceUnavailable",
        "OperationAborted",
    }
)
_CREDENTIALS_HINT = (
    "check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) for this location"
)
# The S3 permission (IAM action) each operation needs, to name it when it is denied.
_PERMISSIONS = {
    "reading": "s3:GetObject",
    "writing": "s3:PutObject",
    "deleting": "s3:DeleteObject",
    "listing": "s3:ListBucket",
    "opening": "s3:ListBucket",
    "locking": "s3:PutObjectRetention",
    "thawing": "s3:RestoreObject",
}
_REGION_HINT = "set the bucket's region (AWS_REGION, or region for this location)"
_HINTS = {  # permanent failures that have one obvious next step
    "InvalidAccessKeyId": _CREDENTIALS_HINT,
    "SignatureDoesNotMatch": _CREDENTIALS_HINT,
    "ExpiredToken": _CREDENTIALS_HINT,
    "InvalidToken": _CREDENTIALS_HINT,
    "PermanentRedirect": _REGION_HINT,
    "301": _REGION_HINT,  # the same, answering a HEAD (no body, so no code)
    "AuthorizationHeaderMalformed": _REGION_HINT,
    "IllegalLocationConstraintException": _REGION_HINT,
    "RequestTimeTooSkewed": "this host's clock is wrong; synchronise it (NTP)",
    "InvalidStorageClass": "use a storage class this service offers for data/",
    "InvalidObjectState": "the object is archived: restore with --request-thaw, then run again"
    " once it is thawed",
}


class S3Storage:
    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        region: str | None = None,
        endpoint_url: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        storage_class: str = "STANDARD",
        server_side_encryption: Encryption = "none",
        kms_key_id: str | None = None,
        object_lock: tuple[LockMode, int] | None = None,
        append_only: bool = False,
        multipart_threshold: int = MULTIPART_THRESHOLD,
        connect_timeout: float = CONNECT_TIMEOUT,
        read_timeout: float = READ_TIMEOUT,
    ) -> None:
        if (access_key_id is None) != (secret_access_key is None):
            raise ValueError("give both access_key_id and secret_access_key, or neither")
        if kms_key_id is not None and server_side_encryption != "SSE-KMS":
            raise ValueError("kms_key_id needs server_side_encryption='SSE-KMS'")
        if object_lock is not None and object_lock[1] < 1:
            raise ValueError("object lock retention must be at least one day")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.storage_class = storage_class
        self.object_lock = object_lock
        self.append_only = append_only  # these credentials may not delete: never ask to
        self._sse: dict[str, str] = {}
        if server_side_encryption != "none":
            self._sse["ServerSideEncryption"] = _SSE_HEADER[server_side_encryption]
        if kms_key_id is not None:
            self._sse["SSEKMSKeyId"] = kms_key_id
        self._multipart = TransferConfig(
            multipart_threshold=multipart_threshold,
            multipart_chunksize=max(MIN_PART_SIZE, multipart_threshold // 4),
            max_concurrency=4,  # each part in flight is a copy in memory
            preferred_transfer_client="classic",  # this client, its retries and timeouts
        )
        session = boto3.Session(
            aws_access_key_id=access_key_id,
            aws_secret_access_key=secret_access_key,
            region_name=region,
        )

        def client(path_style: bool) -> S3Client:
            config = Config(
                retries={"mode": "standard", "total_max_attempts": 1},  # see the docstring
                connect_timeout=connect_timeout,
                read_timeout=read_timeout,
                s3={"addressing_style": "path" if path_style else "auto"},
            )
            return session.client("s3", endpoint_url=endpoint_url, config=config)

        self.client = client(path_style=endpoint_url is not None)
        if endpoint_url is None and not _is_aws(self.client.meta.endpoint_url):
            self.client = client(path_style=True)  # an endpoint from the environment or config

    @classmethod
    def from_url(cls, url: str, **options: Any) -> S3Storage:
        """``s3://bucket`` or ``s3://bucket/prefix``; ``options`` as for the constructor."""
        parts = urlsplit(url)
        if parts.scheme != "s3" or not parts.netloc:
            raise UsageError(f"not an S3 location: {redact(url)}", hint="use s3://bucket/prefix")
        if "@" in parts.netloc:
            raise UsageError(
                f"credentials in the location URL {redact(url)}",
                hint="remove them and set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY instead",
            )
        return cls(parts.netloc, parts.path, **options)

    @property
    def url(self) -> str:
        return redact(f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}")

    def _key(self, name: str) -> str:
        if not name or name.startswith("/") or ".." in name.split("/"):
            raise StorageError(f"invalid object name {name!r}")
        return f"{self.prefix}/{name}" if self.prefix else name

    def read(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        if offset < 0 or (length is not None and length < 0):
            raise ValueError("offset and length must not be negative")
        if length == 0:  # "bytes=n-(n-1)" is not a range: S3 would send the whole object
            self.stat(name)
            return b""
        extra: dict[str, Any] = {}
        if offset or length is not None:
            end = "" if length is None else offset + length - 1
            extra["Range"] = f"bytes={offset}-{end}"
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self._key(name), **extra)
            with contextlib.closing(response["Body"]) as body:
                return body.read()
        except ClientError as exc:
            if _code(exc) == "InvalidRange":  # offset at or past the end, as a file read gives
                return b""
            raise self._translate(exc, "reading", name) from None
        except BotoCoreError as exc:
            raise self._translate(exc, "reading", name) from None

    def write(self, name: str, data: bytes, *, hot: bool = False,
              content_type: str | None = None) -> None:  # fmt: skip
        key = self._key(name)
        extra: dict[str, Any] = dict(self._sse)
        if content_type is not None:
            extra["ContentType"] = content_type
        if name.startswith(DATA_PREFIX) and self.storage_class != "STANDARD" and not hot:
            extra["StorageClass"] = self.storage_class
        if self.object_lock is not None and not name.startswith(UNLOCKED_PREFIXES):
            mode, days = self.object_lock
            extra["ObjectLockMode"] = mode
            extra["ObjectLockRetainUntilDate"] = dt.datetime.now(dt.UTC) + dt.timedelta(days=days)
        try:
            if len(data) < self._multipart.multipart_threshold:
                if self.may_be_cold(name):  # the service checks it: verify may not read it
                    md5 = hashlib.md5(data, usedforsecurity=False).digest()
                    extra["ContentMD5"] = base64.b64encode(md5).decode()
                self.client.put_object(Bucket=self.bucket, Key=key, Body=data, **extra)
            else:  # parts in parallel; a failed upload is aborted, so nothing partial shows
                self.client.upload_fileobj(
                    io.BytesIO(data), self.bucket, key, ExtraArgs=extra, Config=self._multipart
                )
        except (BotoCoreError, ClientError) as exc:
            raise self._translate(exc, "writing", name) from None

    def verify(self, name: str, data: bytes) -> None:
        head = self._head(name) if self.may_be_cold(name) else None
        if head is None or head.get("StorageClass") not in COLD_CLASSES:
            if self.read(name) != data:
                raise IntegrityError(f"{self.url}: object {name} does not hold what was written")
            return
        # An archived object cannot be read back: compare the MD5 the service computed on
        # receipt (its ETag, unless SSE-KMS, where the Content-MD5 sent with the PUT was
        # already checked by the service).
        if head["ContentLength"] != len(data):
            raise IntegrityError(
                f"{self.url}: object {name} has {head['ContentLength']} bytes, {len(data)} were sent"
            )
        if head.get("ServerSideEncryption") == "aws:kms":
            return
        if head.get("ETag", "").strip('"') != self._etag(data):
            raise IntegrityError(f"{self.url}: object {name} does not hold what was written")

    def may_be_cold(self, name: str) -> bool:
        """Whether the object may be in an archive class (packs of data, not of listings)."""
        return name.startswith(DATA_PREFIX) and self.storage_class in COLD_CLASSES

    def _head(self, name: str) -> dict[str, Any]:
        try:
            return dict(self.client.head_object(Bucket=self.bucket, Key=self._key(name)))
        except (BotoCoreError, ClientError) as exc:
            raise self._translate(exc, "reading", name) from None

    @property
    def archives(self) -> bool:
        return self.storage_class in COLD_CLASSES

    def thaw_state(self, name: str) -> str:
        head = self._head(name)
        if head.get("StorageClass") not in COLD_CLASSES:
            return "hot"
        restore = head.get("Restore") or ""
        if 'ongoing-request="true"' in restore:
            return "thawing"
        return "thawed" if 'ongoing-request="false"' in restore else "cold"

    def request_thaw(self, name: str, days: int, tier: str) -> None:
        try:
            self.client.restore_object(
                Bucket=self.bucket,
                Key=self._key(name),
                RestoreRequest={"Days": days, "GlacierJobParameters": {"Tier": tier}},  # type: ignore[typeddict-item]
            )
        except ClientError as exc:
            if _code(exc) == "RestoreAlreadyInProgress":
                return
            if _code(exc) in ("MethodNotAllowed", "NotImplemented"):
                raise StorageError(
                    f"{self.url}: this service cannot thaw archived objects ({_code(exc)})",
                    hint="it may serve them as they are: restore with --no-thaw-check",
                ) from None
            raise self._translate(exc, "thawing", name) from None
        except BotoCoreError as exc:
            raise self._translate(exc, "thawing", name) from None

    def _etag(self, data: bytes) -> str:
        """The ETag S3 gives an object uploaded by ``write``: MD5, or MD5 of part MD5s."""
        if len(data) < self._multipart.multipart_threshold:
            return hashlib.md5(data, usedforsecurity=False).hexdigest()
        size = self._multipart.multipart_chunksize
        parts = [
            hashlib.md5(data[i : i + size], usedforsecurity=False).digest()
            for i in range(0, len(data), size)
        ]
        joined = hashlib.md5(b"".join(parts), usedforsecurity=False).hexdigest()
        return f"{joined}-{len(parts)}"

    @property
    def lock_days(self) -> int | None:
        return self.object_lock[1] if self.object_lock else None

    def locked_until(self, name: str) -> dt.datetime | None:
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self._key(name))
        except (BotoCoreError, ClientError) as exc:
            raise self._translate(exc, "reading", name) from None
        until: dt.datetime | None = head.get("ObjectLockRetainUntilDate")
        return until

    def lock_until(self, name: str, until: dt.datetime) -> None:
        current = self.locked_until(name)
        if current is not None and current >= until:
            return  # COMPLIANCE locks cannot be shortened, and need not be
        mode = self.object_lock[0] if self.object_lock else "COMPLIANCE"
        try:
            self.client.put_object_retention(
                Bucket=self.bucket,
                Key=self._key(name),
                Retention={"Mode": mode, "RetainUntilDate": until},
            )
        except (BotoCoreError, ClientError) as exc:
            raise self._translate(exc, "locking", name) from None

    def delete(self, name: str) -> None:
        if self.append_only:
            raise PermissionDenied(
                f"{self.url}: deleting {name}: refused here, as ${APPEND_ONLY_ENV} says this"
                " host's credentials may not delete (s3:DeleteObject)",
                hint=DELETE_HINT,
            )
        self.stat(name)  # DeleteObject succeeds on a missing key; the contract says NotFound
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self._key(name))
        except (BotoCoreError, ClientError) as exc:
            raise self._translate(exc, "deleting", name) from None

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        root = f"{self.prefix}/" if self.prefix else ""
        pages = self.client.get_paginator("list_objects_v2")
        try:
            for page in pages.paginate(Bucket=self.bucket, Prefix=root + prefix):
                for obj in page.get("Contents", []):
                    yield ObjectInfo(
                        obj["Key"][len(root) :], obj["Size"], obj["LastModified"].timestamp()
                    )
        except (BotoCoreError, ClientError) as exc:
            raise self._translate(exc, "listing", prefix or "/") from None

    def stat(self, name: str) -> ObjectInfo:
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self._key(name))
        except (BotoCoreError, ClientError) as exc:
            raise self._translate(exc, "reading", name) from None
        return ObjectInfo(name, head["ContentLength"])

    def exists(self) -> bool:
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            if _status(exc) == 404 or _code(exc) == "NoSuchBucket":
                return False
            raise self._translate(exc, "opening", "the bucket") from None
        except BotoCoreError as exc:
            raise self._translate(exc, "opening", "the bucket") from None
        return True

    def free_space(self) -> int | None:
        return None

    def _translate(self, exc: BotoCoreError | ClientError, doing: str, name: str) -> StorageError:
        """The contract's error for what botocore raised, in one line and with a next step."""
        where = f"{self.url}: {doing} {name}"
        if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
            return StorageError(f"{where}: no S3 credentials found", hint=_CREDENTIALS_HINT)
        if isinstance(exc, SSLError):
            return StorageError(
                f"{where}: TLS handshake with {redact(self.client.meta.endpoint_url)} failed",
                hint="check the endpoint URL and the CA bundle (AWS_CA_BUNDLE)",
            )
        endpoint = redact(self.client.meta.endpoint_url)
        if isinstance(exc, (ResponseStreamingError, IncompleteReadError)):
            why = _os_reason(exc)
            return TransientError(
                f"{where}: the response from {endpoint} was cut short"
                f"{f': {why}' if why else ''} ({type(exc).__name__})",
                hint="check the network and that the S3 service is up, then run again",
            )
        if isinstance(exc, (BotoConnectionError, HTTPClientError)):
            why = _os_reason(exc)
            return TransientError(
                f"{where}: {endpoint} did not answer{f': {why}' if why else ''}"
                f" ({type(exc).__name__})",
                hint="check the network and that the S3 service is up, then run again",
            )
        if not isinstance(exc, ClientError):
            return StorageError(f"{where}: {type(exc).__name__}: {' '.join(str(exc).split())}")
        code, status = _code(exc), _status(exc)
        failed = f"{where} failed: {code} (HTTP {status})"
        if code == "NoSuchBucket":
            return StorageError(
                f"{self.url}: bucket {self.bucket} does not exist",
                hint="create it (with Object Lock if the plan asks for immutability), "
                "or correct the bucket name, endpoint and region",
            )
        if status == 404 and code in ("NoSuchKey", "404", "NotFound", "NoSuchVersion"):
            return NotFound(f"{self.url}: object {name} does not exist")
        if status == 429 or code in _THROTTLED:
            return Throttled(failed, hint="the service is throttling requests; run again later")
        if status >= 500 or code in _UNAVAILABLE:
            return TransientError(failed, hint="the service is failing; run again later")
        if code in _HINTS:
            return StorageError(failed, hint=_HINTS[code])
        if code == "AccessDenied" or status == 403:
            return self._denied(where, doing, said=code == "AccessDenied")
        if code == "InvalidRequest" and self.object_lock is not None and doing == "writing":
            return StorageError(
                failed, hint=f"Object Lock needs a bucket created with it; {self.bucket} was not"
            )
        return StorageError(failed)

    def _denied(self, where: str, doing: str, said: bool) -> StorageError:
        """Access denied: PermissionDenied naming what it needs, unless it was only a HEAD's
        bare 403 (``said`` false), which wrong keys answer too."""
        if doing == "deleting":
            return PermissionDenied(
                f"{where}: access denied: these credentials may not delete (s3:DeleteObject)",
                hint=DELETE_HINT,
            )
        if not said:
            return StorageError(
                f"{where}: access denied",
                hint=f"{_CREDENTIALS_HINT}, and that they may list, read and write in {self.bucket}",
            )
        needed = _PERMISSIONS.get(doing, "the permission for it")
        if doing == "writing" and self.object_lock is not None:
            needed += " and s3:PutObjectRetention (objects here are written locked)"
        return PermissionDenied(
            f"{where}: access denied (it needs {needed})",
            hint=f"{_CREDENTIALS_HINT}, and that they have {needed} in {self.bucket}",
        )


def _os_reason(exc: BaseException) -> str | None:
    """What the operating system said under a connection error (`connection refused`,
    `timed out`), found down the chain of exceptions botocore and urllib3 wrapped it in."""
    seen: BaseException | None = exc
    for _ in range(10):  # a few levels deep; bounded, as a chain may loop
        if seen is None:
            break
        if isinstance(seen, TimeoutError):
            return "timed out"
        if isinstance(seen, OSError) and seen.strerror:
            return seen.strerror.lower()
        seen = seen.__cause__ or seen.__context__
    return None


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _status(exc: ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))


def _is_aws(endpoint_url: str) -> bool:
    host = urlsplit(endpoint_url).hostname or ""
    return host.endswith((".amazonaws.com", ".amazonaws.com.cn"))
