"""Restoring etcd: a snapshot from the repository made into a member's data directory
(``etcdctl snapshot restore``), and proven by a scratch member started from it.

The snapshot is fetched into a private staging file beside the data directory, its
SHA-256 held against the one recorded at backup and etcd's own trailer checked,
before etcdctl reads it; etcdctl then checks that trailer again. The proof starts
``etcd`` on two free loopback ports from a restored directory, waits for it to answer,
and holds its revision, its key count and each prefix's count against what the backup
counted at that revision.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from drplan.errors import DrplanError, IntegrityError, UsageError
from drplan.liveness import stop
from drplan.plan.model import EtcdSystem
from drplan.repo.repository import Repository
from drplan.repo.snapshot import Snapshot
from drplan.sources.etcd.backup import trailer_ok
from drplan.sources.etcd.etcdctl import Etcdctl, EtcdError, binary, last_line
from drplan.sources.postgres.scratch import free_port
from drplan.sources.stored import files_of, read_stored

READY_TIMEOUT = 60.0  # a member replaying a large snapshot takes a while to serve
CLUSTER_TOKEN = "drplan-restore"


@dataclass(frozen=True)
class Member:
    """Who the restored member is: its name, peer URL and cluster (``--initial-*``)."""

    name: str = "default"
    peer_url: str = "http://localhost:2380"
    initial_cluster: str | None = None  # NAME=URL,...; a cluster of this member alone by default
    token: str = CLUSTER_TOKEN


@dataclass
class EtcdRestored:
    data_dir: Path
    revision: int
    size: int
    checks: dict[str, str] = field(default_factory=dict)  # name: detail, when proven


def restore_etcd(
    repo: Repository, snapshot: Snapshot, data_dir: Path, member: Member, bin_dir: str | None
) -> EtcdRestored:
    """Make ``data_dir`` (absent or empty) a data directory ``member`` starts from."""
    if snapshot.source.get("kind") != "etcd":
        raise UsageError(f"snapshot {snapshot.short_id} is not an etcd snapshot",
                         hint="see `drplan snapshots --system SYSTEM`")  # fmt: skip
    if data_dir.exists() and (not data_dir.is_dir() or any(data_dir.iterdir())):
        raise UsageError(
            f"{data_dir} exists and is not empty: etcd restores only into a new directory",
            hint="give a new --data-dir, or move the old one aside (keep it until the restore is proven)",
        )
    node = dict(files_of(repo, snapshot.tree)).get(str(snapshot.source.get("file")))
    if node is None:
        raise IntegrityError(f"snapshot {snapshot.short_id} holds no etcd database",
                             hint="run `drplan check`")  # fmt: skip
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".drplan-etcd-", dir=data_dir.parent))
    try:
        file = staging / "snapshot.db"
        digest = hashlib.sha256()
        with file.open("wb") as out:
            for chunk in read_stored(repo, node):
                digest.update(chunk)
                out.write(chunk)
        if digest.hexdigest() != snapshot.source.get("sha256") or not trailer_ok(file):
            raise IntegrityError(
                f"snapshot {snapshot.short_id}: the etcd database read back does not match"
                " its backup", hint="run `drplan check --read-data`; restore an older snapshot",
            )  # fmt: skip
        cluster = member.initial_cluster or f"{member.name}={member.peer_url}"
        argv = [binary("etcdctl", bin_dir), "snapshot", "restore", str(file),
                f"--data-dir={data_dir}", f"--name={member.name}",
                f"--initial-cluster={cluster}", f"--initial-advertise-peer-urls={member.peer_url}",
                f"--initial-cluster-token={member.token}"]  # fmt: skip
        if data_dir.exists():
            data_dir.rmdir()  # etcdctl makes it itself, and refuses one that exists
        done = subprocess.run(argv, capture_output=True, env={"ETCDCTL_API": "3"}, check=False,
                              stdin=subprocess.DEVNULL, timeout=3600)  # fmt: skip
        if done.returncode != 0:
            raise EtcdError(f"etcdctl snapshot restore failed: {last_line(done.stderr)}",
                            hint="check the --name, --initial-cluster and peer URL given")  # fmt: skip
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return EtcdRestored(data_dir, int(snapshot.source.get("revision") or 0), node.size)


def prove(restored: EtcdRestored, system: str, spec: EtcdSystem, snapshot: Snapshot,
          member: Member) -> None:  # fmt: skip
    """Start a scratch member from ``restored`` on loopback and hold it against the
    backup's counts; IntegrityError naming the first difference. The member is stopped
    before this returns."""
    client = f"http://127.0.0.1:{free_port()}"
    argv = [binary("etcd", spec.bin_dir), f"--name={member.name}",
            f"--data-dir={restored.data_dir}", f"--listen-client-urls={client}",
            f"--advertise-client-urls={client}", f"--listen-peer-urls={member.peer_url}",
            f"--initial-advertise-peer-urls={member.peer_url}",
            f"--initial-cluster={member.name}={member.peer_url}", "--log-level=error",
            "--logger=zap"]  # fmt: skip
    log = restored.data_dir.parent / f"{restored.data_dir.name}.etcd.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)  # fmt: skip
    try:
        local = EtcdSystem.model_validate({**spec.model_dump(), "endpoints": [client],
                                           "cacert": None, "cert": None, "key": None,
                                           "user": None, "password": None})  # fmt: skip
        ctl = Etcdctl(system, local, client)
        revision = _ready(ctl, proc, log)
        src = snapshot.source
        if revision != src.get("revision"):
            raise IntegrityError(f"the restored member is at revision {revision}, the snapshot"
                                 f" at {src.get('revision')}")  # fmt: skip
        restored.checks["revision"] = str(revision)
        if src.get("keys") is not None:
            keys = ctl.key_count("", None)
            if keys != src["keys"]:
                raise IntegrityError(f"the restored member holds {keys} keys, the snapshot"
                                     f" {src['keys']} (at revision {revision})")  # fmt: skip
            restored.checks["keys"] = str(keys)
            for prefix, want in (src.get("prefixes") or {}).items():
                got = ctl.key_count(prefix, None)
                if got != want:
                    raise IntegrityError(f"the restored member holds {got} keys under {prefix},"
                                         f" the snapshot {want}")  # fmt: skip
                restored.checks[prefix] = str(got)
    finally:
        stop(proc)


def _ready(ctl: Etcdctl, proc: subprocess.Popen[bytes], log: Path) -> int:
    """The member's revision once it answers; IntegrityError if it dies or never does."""
    deadline = time.monotonic() + READY_TIMEOUT
    while True:
        if proc.poll() is not None:
            lines = log.read_text(errors="replace").strip().splitlines()
            raise IntegrityError(
                f"etcd did not start from the restored data: {lines[-1][:300] if lines else 'no message'}",
                hint=f"see {log}",
            )
        try:
            header = ctl.json("get", "drplan-probe").get("header") or {}
            return int(header.get("revision", 0))
        except DrplanError:
            if time.monotonic() > deadline:
                raise IntegrityError(f"etcd started from the restored data did not answer in"
                                     f" {READY_TIMEOUT:g}s", hint=f"see {log}") from None  # fmt: skip
            time.sleep(0.1)
