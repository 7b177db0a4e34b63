"""RetryingStorage around the S3 backend, on a real SeaweedFS behind testbed.faultproxy:
what is tried again (and how long it waits), what is not, and what a retry leaves behind."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from drplan.storage import NotFound, RetryingStorage, StorageError, Throttled, TransientError
from drplan.storage.retry import BACKOFF, THROTTLED_BACKOFF
from drplan.storage.s3 import MIN_PART_SIZE, S3Storage
from testbed.faultproxy import (
    INTERNAL_ERROR,
    SLOW_DOWN,
    Fault,
    FaultPlan,
    FaultProxy,
    Rule,
    running_faultproxy,
)
from testbed.seaweedfs import SeaweedFS

ATTEMPTS = 4
TIMEOUT = 1.0  # seconds per request through the proxy


@dataclass
class Rig:
    storage: RetryingStorage  # through the proxy
    direct: S3Storage  # the same bucket, straight to the server
    proxy: FaultProxy
    waits: list[float]  # what the storage slept between attempts (it does not really sleep)

    def requests(self, method: str) -> list[str | None]:
        """The fault each request of ``method`` met, in order (None: passed through)."""
        return [e.fault for e in self.proxy.exchanges if e.method == method]


@pytest.fixture
def rig(seaweedfs: SeaweedFS) -> Iterator[Rig]:
    bucket = seaweedfs.create_bucket()
    with running_faultproxy(seaweedfs.endpoint_url) as proxy:
        via = SeaweedFS(proxy.endpoint_url, seaweedfs.access_key_id, seaweedfs.secret_access_key)
        s3 = via.storage(
            bucket,
            multipart_threshold=MIN_PART_SIZE,
            connect_timeout=TIMEOUT,
            read_timeout=TIMEOUT,
        )
        waits: list[float] = []
        yield Rig(
            RetryingStorage(s3, ATTEMPTS, sleep=waits.append),
            seaweedfs.storage(bucket, multipart_threshold=MIN_PART_SIZE),
            proxy,
            waits,
        )


@pytest.mark.parametrize(
    "fault",
    [Fault.truncate(), Fault.truncate(0.0), Fault.reset("mid-response")],
    ids=["truncated", "headers-only", "reset-mid-body"],
)
def test_a_download_cut_short_is_read_again_whole(rig: Rig, fault: Fault) -> None:
    data = os.urandom(300_000)
    rig.direct.write("data/ab/pack", data)
    rig.proxy.set_plan(FaultPlan(Rule(fault, "GET", nth=1), Rule(fault, "GET", nth=3)))
    assert rig.storage.read("data/ab/pack") == data
    assert rig.storage.read("data/ab/pack", 1000, 5000) == data[1000:6000]  # ranged, too
    assert rig.requests("GET") == [fault.label, None, fault.label, None]
    assert len(rig.waits) == 2


@pytest.mark.parametrize(
    "fault",
    [
        Fault.reset("before"),
        Fault.reset("after"),  # carried out, the answer lost: written again, the same bytes
        INTERNAL_ERROR,
        SLOW_DOWN,
        Fault.error(503, "SlowDown", close=True),
        Fault.latency(TIMEOUT + 0.5, "response"),  # a timeout
    ],
    ids=lambda f: f.label,
)
def test_a_write_that_fails_transiently_is_tried_again(rig: Rig, fault: Fault) -> None:
    data = os.urandom(10_000)
    rig.proxy.set_plan(FaultPlan(Rule(fault, "PUT", nth=1)))
    rig.storage.write("index/abc", data)
    assert rig.direct.read("index/abc") == data
    assert rig.requests("PUT") == [fault.label, None]


def test_waits_grow_and_throttling_waits_longer_until_attempts_run_out(rig: Rig) -> None:
    rig.direct.write("config", b"x")
    rig.proxy.set_plan(FaultPlan(Rule(SLOW_DOWN)))
    with pytest.raises(Throttled) as throttled:
        rig.storage.read("config")
    assert str(throttled.value).endswith(f"failed: SlowDown (HTTP 503) after {ATTEMPTS} attempts")
    assert len(rig.proxy.exchanges) == ATTEMPTS
    assert len(rig.waits) == ATTEMPTS - 1
    assert all(0 <= w <= THROTTLED_BACKOFF * 2**i for i, w in enumerate(rig.waits))

    rig.waits.clear()
    rig.proxy.set_plan(FaultPlan(Rule(INTERNAL_ERROR)))
    with pytest.raises(TransientError) as failing:
        rig.storage.stat("config")
    assert not isinstance(failing.value, Throttled)
    assert str(failing.value).endswith(f"(HTTP 500) after {ATTEMPTS} attempts")
    assert all(0 <= w <= BACKOFF * 2**i for i, w in enumerate(rig.waits))


def test_missing_objects_and_permanent_errors_are_not_tried_again(
    rig: Rig, seaweedfs: SeaweedFS
) -> None:
    with pytest.raises(NotFound):
        rig.storage.read("data/00/missing")
    with pytest.raises(NotFound):
        rig.storage.delete("data/00/missing")
    wrong = SeaweedFS(rig.proxy.endpoint_url, seaweedfs.access_key_id, "wrong secret")
    denied = RetryingStorage(wrong.storage(rig.direct.bucket), ATTEMPTS, sleep=rig.waits.append)
    with pytest.raises(StorageError) as info:
        denied.write("config", b"x")
    assert not isinstance(info.value, TransientError)
    assert rig.requests("GET") == [None]
    assert rig.requests("PUT") == [None]
    assert not rig.waits


def test_a_delete_whose_answer_was_lost_is_done(rig: Rig) -> None:
    rig.direct.write("locks/1", b"lock")
    rig.proxy.set_plan(FaultPlan(Rule(Fault.reset("after"), "DELETE", nth=1)))
    rig.storage.delete("locks/1")  # the retry finds it gone: that was this delete
    assert rig.requests("DELETE") == ["reset/after"]
    with pytest.raises(NotFound):
        rig.direct.stat("locks/1")


def test_a_listing_cut_short_starts_again_and_repeats_nothing(rig: Rig) -> None:
    names = {f"snapshots/{i:02d}" for i in range(12)}
    for name in names:
        rig.direct.write(name, name.encode())
    rig.proxy.set_plan(FaultPlan(Rule(Fault.truncate(0.7), "GET", "list-type", nth=1)))
    listed = [info.name for info in rig.storage.list("snapshots/")]
    assert sorted(listed) == sorted(names)
    assert rig.requests("GET") == ["truncate", None]


def test_a_multipart_upload_with_a_failing_part_is_sent_again_and_leaves_no_upload(
    rig: Rig, seaweedfs: SeaweedFS
) -> None:
    data = os.urandom(2 * MIN_PART_SIZE + 1000)  # three parts
    rig.proxy.set_plan(FaultPlan(Rule(SLOW_DOWN, "PUT", "partNumber=2", nth=1)))
    rig.storage.write("data/cd/large", data)
    assert rig.direct.read("data/cd/large") == data
    assert [e.method for e in rig.proxy.exchanges].count("DELETE") == 1  # the first, aborted

    rig.proxy.set_plan(FaultPlan(Rule(Fault.reset("before"), "PUT", "partNumber=3")))
    with pytest.raises(TransientError) as info:
        rig.storage.write("data/ef/large", data)
    assert f"writing data/ef/large: {rig.proxy.endpoint_url} did not answer" in str(info.value)
    assert str(info.value).endswith(f"after {ATTEMPTS} attempts")
    with pytest.raises(NotFound):
        rig.direct.stat("data/ef/large")
    uploads = seaweedfs.client().list_multipart_uploads(Bucket=rig.direct.bucket)
    assert not uploads.get("Uploads")  # every attempt's upload was aborted
