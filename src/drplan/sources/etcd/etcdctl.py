"""The one wrapper around ``etcdctl`` (API v3): the arguments a system's endpoints, TLS
and user make, run with the password in the environment (never on a command line that
``ps`` shows), its JSON read, and its failures turned into one line.

etcdctl 3.4 (Debian 12) has no ``--count-only`` and no ``etcdutl``: a range read
with ``--limit 1`` answers the key count in its ``count`` field, and ``snapshot
status`` is still etcdctl's.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from drplan.errors import SourceError
from drplan.plan.model import EtcdSystem

TIMEOUT = 30.0  # seconds for a call that is not a snapshot (a member that hangs is down)
SNAPSHOT_TIMEOUT = 3600.0  # an 8 GiB database over a slow link
STATUS_TIMEOUT = 5  # seconds a member has to say it is up before its snapshot is asked for


class EtcdError(SourceError):
    """etcdctl failed: the cluster unreachable, TLS or credentials refused, a bad snapshot."""


def binary(name: str, bin_dir: str | None) -> str:
    """``etcdctl`` or ``etcd`` from the system's ``bin_dir``, else from PATH."""
    found = str(Path(bin_dir) / name) if bin_dir else shutil.which(name)
    if not found or not os.access(found, os.X_OK):
        where = f"in {bin_dir}" if bin_dir else "on PATH"
        raise EtcdError(
            f"{name} is not {where}",
            hint="install etcd's client (Debian: etcd-client) or set the system's bin_dir",
        )
    return found


@dataclass(frozen=True)
class Etcdctl:
    """How to reach one member: ``run`` gives etcdctl's JSON answer."""

    system: str
    spec: EtcdSystem
    endpoint: str

    def argv(self, *args: str) -> list[str]:
        out = [binary("etcdctl", self.spec.bin_dir), f"--endpoints={self.endpoint}",
               "--dial-timeout=5s", "--command-timeout=30s"]  # fmt: skip
        for flag, value in (("cacert", self.spec.cacert), ("cert", self.spec.cert),
                            ("key", self.spec.key)):  # fmt: skip
            if value:
                out.append(f"--{flag}={value}")
        return [*out, *args]

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ETCDCTL_")}
        env["ETCDCTL_API"] = "3"
        if self.spec.user:
            env["ETCDCTL_USER"] = self.spec.user
            if self.spec.password is not None:
                env["ETCDCTL_PASSWORD"] = self.spec.password.resolve()
        return env

    def run(self, *args: str, timeout: float = TIMEOUT) -> str:
        """etcdctl's standard output; EtcdError with its last line when it fails."""
        argv = self.argv(*args)
        try:
            done = subprocess.run(argv, env=self.env(), capture_output=True, timeout=timeout,
                                  stdin=subprocess.DEVNULL, check=False)  # fmt: skip
        except subprocess.TimeoutExpired:
            raise EtcdError(
                f"system {self.system}: etcd at {self.endpoint} did not answer in {timeout:g}s",
                hint="check that the member is up and reachable from this host",
            ) from None
        if done.returncode != 0:
            reason = last_line(done.stderr)
            if "deadline exceeded" in reason and self.endpoint.startswith("https://"):
                reason = tls_refusal(self.endpoint, self.spec) or reason
            raise EtcdError(
                f"system {self.system}: etcdctl {args[0]} {args[1] if len(args) > 1 else ''}".rstrip()
                + f" at {self.endpoint} failed: {reason}",
                hint=hint_for(reason.encode()),
            )
        return done.stdout.decode("utf-8", "replace")

    def json(self, *args: str) -> dict[str, Any]:
        out = self.run(*args, "--write-out=json")
        try:
            data = json.loads(out)
        except ValueError:
            raise EtcdError(f"system {self.system}: etcdctl answered something not JSON") from None
        if not isinstance(data, dict):
            raise EtcdError(f"system {self.system}: etcdctl answered something not an object")
        return data

    def member_status(self) -> dict[str, Any]:
        """The member's version and database size; EtcdError when it does not answer within
        seconds (a snapshot of an unreachable member would retry for its whole timeout)."""
        out = self.run(
            "endpoint", "status", "--write-out=json", f"--command-timeout={STATUS_TIMEOUT}s"
        )
        try:
            found = json.loads(out)
        except ValueError:
            found = None
        if not isinstance(found, list) or not found or not isinstance(found[0], dict):
            reason = (
                tls_refusal(self.endpoint, self.spec)
                if self.endpoint.startswith("https://")
                else None
            )
            raise EtcdError(
                f"system {self.system}: etcd at {self.endpoint} did not answer: "
                + (reason or f"no status in {STATUS_TIMEOUT}s"),
                hint=hint_for((reason or "connection refused").encode()),
            )
        status: dict[str, Any] = found[0].get("Status") or {}
        return status

    def key_count(self, prefix: str, revision: int | None) -> int:
        """How many keys (live at ``revision``, else now) start with ``prefix`` ("" for all)."""
        args = ["get", prefix, "--prefix", "--keys-only", "--limit=1"]
        if revision is not None:
            args.append(f"--rev={revision}")
        return int(self.json(*args).get("count", 0))


def tls_refusal(endpoint: str, spec: EtcdSystem) -> str | None:
    """Why TLS with the member fails, when it does. etcdctl reports a refused certificate
    only as a deadline exceeded (gRPC retries the handshake until it gives up), which
    sends the user looking for a network fault; one handshake of our own names it."""
    url = urlsplit(endpoint)
    context = ssl.create_default_context(cafile=spec.cacert)
    try:
        if spec.cert:
            context.load_cert_chain(spec.cert, spec.key)
        with socket.create_connection((url.hostname or "", url.port or 2379), timeout=5) as raw, \
                context.wrap_socket(raw, server_hostname=url.hostname) as tls:  # fmt: skip
            tls.settimeout(2)  # TLS 1.3: a refused client certificate shows at the first read
            tls.recv(1)
    except ssl.SSLError as exc:
        return f"TLS refused: {exc.reason or exc.strerror or exc}".lower().replace("_", " ")
    except (OSError, ValueError):
        return None  # not TLS's doing (a timeout here means the handshake went through)
    return None


def last_line(stderr: bytes) -> str:
    """etcdctl's own error line: its log lines (JSON) and retries are left out."""
    lines = [ln.strip() for ln in stderr.decode("utf-8", "replace").splitlines() if ln.strip()]
    plain = [ln for ln in lines if not ln.startswith("{")]
    line = (plain or lines or ["no message"])[-1]
    return line.removeprefix("Error: ")[:300]


def hint_for(stderr: bytes) -> str:
    text = stderr.decode("utf-8", "replace").lower()
    if "certificate" in text or "tls" in text or "x509" in text:
        return "check the system's cacert, cert and key against the cluster's certificates"
    if "permission denied" in text:
        return (
            "etcd gives snapshots only to a user with the root role: grant it to the system's user"
        )
    if "authentication" in text or "invalid auth" in text:
        return "check the system's user and password (`password: ${VAR}`)"
    if "deadline exceeded" in text or "connection refused" in text or "no such host" in text:
        return "check that the member is up and that its client URL is right"
    return "run the same etcdctl command by hand to see why"
