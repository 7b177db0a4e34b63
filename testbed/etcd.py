"""A real etcd on loopback: Debian's ``etcd`` (etcd-server), one member on free ports,
with mutual TLS when asked; ``etcdctl`` (etcd-client) to fill and read it.

``running_etcd(directory)`` starts one and stops it on exit. The member is hermetic:
it listens on 127.0.0.1 only, its data and logs stay in ``directory``, and no
``ETCD_*`` or ``ETCDCTL_*`` variable of the caller reaches it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from testbed import Unavailable, free_port, stop
from testbed.certs import Authority, Issued

READY_TIMEOUT = 30.0


@dataclass
class Etcd:
    endpoint: str
    directory: Path
    ca: Path | None = None
    client: Issued | None = None
    root_password: str | None = None  # set by enable_auth: the ctl then logs in as root

    def system(self, **extra: object) -> dict[str, object]:
        """An `etcd` system of a plan reaching this member."""
        spec: dict[str, object] = {"kind": "etcd", "endpoints": [self.endpoint], **extra}
        if self.ca is not None and self.client is not None:
            spec.update(cacert=str(self.ca), cert=str(self.client.cert), key=str(self.client.key))
        return spec

    def ctl(self, *args: str, check: bool = True, input: str | None = None
            ) -> subprocess.CompletedProcess[str]:  # fmt: skip
        argv = ["etcdctl", f"--endpoints={self.endpoint}"]
        if self.ca is not None and self.client is not None:
            argv += [f"--cacert={self.ca}", f"--cert={self.client.cert}",
                     f"--key={self.client.key}"]  # fmt: skip
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ETCD_", "ETCDCTL_"))}
        env["ETCDCTL_API"] = "3"
        if self.root_password is not None:
            env |= {"ETCDCTL_USER": "root", "ETCDCTL_PASSWORD": self.root_password}
        return subprocess.run([*argv, *args], env=env, input=input,
                              capture_output=True, text=True, check=check, timeout=60)  # fmt: skip

    def enable_auth(self, root_password: str, users: dict[str, tuple[str, str]]) -> None:
        """Authentication on: root, and each of ``users`` (name: (password, role)) with a
        role, `root` or `reader` (may read every key, and no more)."""
        self.ctl("user", "add", "root", "--new-user-password", root_password)
        self.ctl("role", "add", "reader")
        self.ctl("role", "grant-permission", "reader", "--prefix=true", "read", "")
        for name, (password, role) in users.items():
            self.ctl("user", "add", name, "--new-user-password", password)
            self.ctl("user", "grant-role", name, role)
        self.ctl("auth", "enable")
        self.root_password = root_password

    def put_many(self, items: dict[str, str]) -> None:
        """Write many keys, 100 to a transaction (etcd allows 128 operations in one)."""
        pairs = list(items.items())
        for start in range(0, len(pairs), 100):
            ops = "".join(f'put {k} "{v}"\n' for k, v in pairs[start : start + 100])
            self.ctl("txn", input=f"\n{ops}\n\n")  # no compares, then success, then failure

    def count(self, prefix: str = "") -> int:
        import json  # noqa: PLC0415

        out = self.ctl("get", prefix, "--prefix", "--keys-only", "--limit=1", "--write-out=json")
        return int(json.loads(out.stdout).get("count", 0))


@contextlib.contextmanager
def running_etcd(directory: Path, *, tls: bool = False) -> Iterator[Etcd]:
    etcd = shutil.which("etcd")
    if etcd is None or shutil.which("etcdctl") is None:
        raise Unavailable("etcd and etcdctl are not installed (Debian: etcd-server, etcd-client)")
    directory.mkdir(parents=True, exist_ok=True)
    scheme, tls_args, ca, client = "http", list[str](), None, None
    if tls:
        authority = Authority(directory / "pki", "etcd test CA")
        server = authority.issue("etcd-server", server=True)
        client = authority.issue("drplan-client", server=False)
        ca, scheme = authority.cert, "https"
        tls_args = [f"--cert-file={server.cert}", f"--key-file={server.key}",
                    f"--trusted-ca-file={ca}", "--client-cert-auth"]  # fmt: skip
    client_url = f"{scheme}://127.0.0.1:{free_port()}"
    peer_url = f"http://127.0.0.1:{free_port()}"
    argv = [etcd, "--name=test", f"--data-dir={directory / 'data'}",
            f"--listen-client-urls={client_url}", f"--advertise-client-urls={client_url}",
            f"--listen-peer-urls={peer_url}", f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=test={peer_url}", "--log-level=error", "--logger=zap",
            *tls_args]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ETCD_", "ETCDCTL_"))}
    log = (directory / "etcd.log").open("wb")
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env,
                            stdin=subprocess.DEVNULL, cwd=directory)  # fmt: skip
    member = Etcd(client_url, directory, ca, client)
    try:
        deadline = time.monotonic() + READY_TIMEOUT
        while member.ctl("endpoint", "health", check=False).returncode != 0:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise Unavailable(f"etcd did not start: see {directory / 'etcd.log'}")
            time.sleep(0.05)
        yield member
    finally:
        stop(proc)
        log.close()
