"""testbed.faultproxy: boto3 round trips pass through it unchanged; each fault does what it
says, as a client sees it; HTTP framing (chunked, Expect: 100-continue, keep-alive) holds."""

from __future__ import annotations

import contextlib
import http.client
import io
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import BotoCoreError, ClientError

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


@pytest.fixture
def s3_proxy(seaweedfs: SeaweedFS) -> Iterator[tuple[FaultProxy, SeaweedFS, str]]:
    """A proxy to SeaweedFS, the server as reached through it, and a new bucket."""
    bucket = seaweedfs.create_bucket()
    with running_faultproxy(seaweedfs.endpoint_url) as proxy:
        via = SeaweedFS(proxy.endpoint_url, seaweedfs.access_key_id, seaweedfs.secret_access_key)
        yield proxy, via, bucket


def test_a_boto3_round_trip_passes_through_unchanged(
    s3_proxy: tuple[FaultProxy, SeaweedFS, str], seaweedfs: SeaweedFS
) -> None:
    proxy, via, bucket = s3_proxy
    client, direct = via.client(), seaweedfs.client()
    small, large = b"small object " * 100, bytes(range(256)) * (24 * 1024)  # 6 MiB: parts
    client.put_object(Bucket=bucket, Key="a/small", Body=small)
    parts = TransferConfig(multipart_threshold=5 * 1024 * 1024, multipart_chunksize=5 * 1024**2)
    client.upload_fileobj(io.BytesIO(large), bucket, "a/large", Config=parts)
    for key, body in (("a/small", small), ("a/large", large)):
        assert client.get_object(Bucket=bucket, Key=key)["Body"].read() == body
        assert direct.get_object(Bucket=bucket, Key=key)["Body"].read() == body
        through, straight = (c.head_object(Bucket=bucket, Key=key) for c in (client, direct))
        assert through["ETag"] == straight["ETag"]
        assert through["ContentLength"] == len(body)
    ranged = client.get_object(Bucket=bucket, Key="a/large", Range="bytes=10-19")
    assert ranged["Body"].read() == large[10:20]
    listed = client.list_objects_v2(Bucket=bucket, Prefix="a/")
    assert [o["Key"] for o in listed["Contents"]] == ["a/large", "a/small"]
    client.delete_object(Bucket=bucket, Key="a/small")
    with pytest.raises(ClientError):
        client.head_object(Bucket=bucket, Key="a/small")  # 404, passed on as it came

    exchanges = proxy.exchanges
    assert all(e.fault is None for e in exchanges)
    assert {e.method for e in exchanges} == {"PUT", "POST", "GET", "HEAD", "DELETE"}
    assert {e.status for e in exchanges} == {200, 204, 206, 404}
    assert not proxy.injected()


def test_each_fault_is_what_a_client_sees(
    s3_proxy: tuple[FaultProxy, SeaweedFS, str], seaweedfs: SeaweedFS
) -> None:
    proxy, via, bucket = s3_proxy
    client, direct = via.client(max_attempts=1, timeout=1.0), seaweedfs.client()
    body = b"x" * 10_000
    direct.put_object(Bucket=bucket, Key="there", Body=body)

    def put_fails(fault: Fault, key: str) -> None:
        proxy.set_plan(FaultPlan(Rule(fault)))
        with pytest.raises((BotoCoreError, ClientError)):
            client.put_object(Bucket=bucket, Key=key, Body=body)
        proxy.clear()

    put_fails(Fault.reset("before"), "never")
    put_fails(Fault.reset("after"), "applied")
    assert direct.list_objects_v2(Bucket=bucket, Prefix="never").get("KeyCount") == 0
    assert direct.head_object(Bucket=bucket, Key="applied")["ContentLength"] == len(body)

    for fault in (Fault.truncate(), Fault.reset("mid-response")):
        proxy.set_plan(FaultPlan(Rule(fault, "GET")))
        response = client.get_object(Bucket=bucket, Key="there")  # the headers are whole
        assert response["ContentLength"] == len(body)
        with pytest.raises(BotoCoreError):  # the body is not
            response["Body"].read()

    for fault, status in ((SLOW_DOWN, 503), (INTERNAL_ERROR, 500)):
        for close in (False, True):
            proxy.set_plan(FaultPlan(Rule(Fault.error(status, fault.code, close=close))))
            with pytest.raises(ClientError) as info:
                client.put_object(Bucket=bucket, Key="refused", Body=body)
            assert info.value.response["Error"]["Code"] == fault.code
            assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == status
            proxy.clear()
            assert client.get_object(Bucket=bucket, Key="there")["Body"].read() == body

    proxy.set_plan(FaultPlan(Rule(Fault.latency(0.3)), Rule(Fault.latency(0.3, "response"))))
    start = time.monotonic()
    client.head_object(Bucket=bucket, Key="there")
    client.head_object(Bucket=bucket, Key="there")
    assert time.monotonic() - start >= 0.3  # the first waited (the second rule never fires)
    assert proxy.injected() == {
        "reset/before": 1,
        "reset/after": 1,
        "truncate": 1,
        "reset/mid-response": 1,
        "error/503 SlowDown": 2,
        "error/500 InternalError": 2,
        "latency/request 0.3s": 2,
    }


def test_rules_pick_requests_by_method_path_order_and_chance() -> None:
    plan = FaultPlan(
        Rule(SLOW_DOWN, "PUT", "/data/", nth=2),
        Rule(INTERNAL_ERROR, "GET", times=2),
        Rule(Fault.reset("before"), path="/index/", probability=0.5),
        seed=7,
    )
    assert plan.choose("PUT", "/b/data/1") is None
    assert plan.choose("PUT", "/b/data/2") is SLOW_DOWN
    assert plan.choose("PUT", "/b/data/3") is None
    assert [plan.choose("GET", "/b/x") for _ in range(3)] == [INTERNAL_ERROR] * 2 + [None]
    chances = [plan.choose("HEAD", f"/b/index/{i}") is not None for i in range(200)]
    assert 60 < sum(chances) < 140
    again = FaultPlan(Rule(Fault.reset("before"), path="/index/", probability=0.5), seed=7)
    assert [again.choose("HEAD", f"/b/index/{i}") is not None for i in range(200)] == chances


class _Echo(BaseHTTPRequestHandler):
    """Answers every PUT with its body, chunked; HTTP/1.1, so connections stay open."""

    protocol_version = "HTTP/1.1"

    def do_PUT(self) -> None:
        if "chunked" in self.headers.get("Transfer-Encoding", ""):
            body = b""
            while size := int(self.rfile.readline().split(b";")[0], 16):
                body += self.rfile.read(size)
                self.rfile.readline()
            self.rfile.readline()
        else:
            body = self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for i in range(0, len(body), 1000):
            piece = body[i : i + 1000]
            self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
        self.wfile.write(b"0\r\n\r\n")

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def echo_proxy() -> Iterator[FaultProxy]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with running_faultproxy(f"http://127.0.0.1:{server.server_address[1]}") as proxy:
            yield proxy
    finally:
        server.shutdown()
        server.server_close()


def test_chunked_bodies_and_keep_alive_are_carried_whole(echo_proxy: FaultProxy) -> None:
    port = int(echo_proxy.endpoint_url.rsplit(":", 1)[1])
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    body = bytes(range(256)) * 40
    connection.request("PUT", "/one", body=iter([body[:3000], body[3000:]]))  # chunked
    assert connection.getresponse().read() == body
    connection.request("PUT", "/two", body=body[:10])  # the same connection
    assert connection.getresponse().read() == body[:10]
    connection.close()
    assert [(e.target, e.status) for e in echo_proxy.exchanges] == [("/one", 200), ("/two", 200)]


def _expecting(port: int, body: bytes) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(
        b"PUT /expect HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
    )
    return sock


def _read_all(sock: socket.socket) -> bytes:
    data = b""
    with contextlib.suppress(OSError):
        while chunk := sock.recv(65536):
            data += chunk
    return data


def test_expect_100_continue_is_relayed_or_refused(echo_proxy: FaultProxy) -> None:
    port = int(echo_proxy.endpoint_url.rsplit(":", 1)[1])
    body = b"after the interim answer"
    with _expecting(port, body) as sock:
        assert sock.recv(1024).startswith(b"HTTP/1.1 100")  # the server's, relayed
        sock.sendall(body)
        sock.shutdown(socket.SHUT_WR)
        answer = _read_all(sock)
    assert answer.startswith(b"HTTP/1.1 200")
    assert body in answer

    echo_proxy.set_plan(FaultPlan(Rule(SLOW_DOWN)))
    with _expecting(port, body) as sock:  # refused before the body: it is never sent
        answer = _read_all(sock)
    assert answer.startswith(b"HTTP/1.1 503 Slow Down\r\n")
    assert b"Connection: close\r\n" in answer
    assert answer.endswith(b"</Error>")
    assert b"<Code>SlowDown</Code>" in answer
