"""Throwaway PostgreSQL clusters for the PostgreSQL benchmarks (not the tests' fixtures:
these live as long as a benchmark and take their binaries from any directory).

As root, a cluster runs as drplan's unprivileged server user (see
drplan.sources.postgres.scratch), under a world-traversable directory of its own.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path

from drplan.sources.postgres.scratch import LocalServer, chown_tree, initdb, server_user


class Cluster(LocalServer):
    """drplan's local server, with what a benchmark needs besides."""

    def start(self) -> None:
        self.pg_ctl(
            "start",
            "-w",
            "-t",
            "120",
            "-l",
            str(self.data_dir.with_name(f"{self.data_dir.name}.log")),
        )
        self.wait_ready(60)

    def reload(self) -> None:
        self.pg_ctl("reload")

    def set(self, **settings: str) -> None:
        with open(self.data_dir / "postgresql.auto.conf", "a") as f:
            f.writelines(f"{k} = {v}\n" for k, v in settings.items())

    def pgbench(self, *args: str) -> None:
        subprocess.run(
            [str(self.bin_dir / "pgbench"), "-h", "127.0.0.1", "-p", str(self.port), "-U",
             "postgres", *args, "postgres"],
            check=True, capture_output=True, timeout=7200,
            env={**os.environ, "PGPASSWORD": self.password},
        )  # fmt: skip


def world_dir(parent: Path, name: str) -> Path:
    """A directory the server's user can reach and own."""
    path = parent / name
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    path.chmod(0o755)
    for ancestor in path.parents:
        mode = ancestor.stat().st_mode
        if not mode & 0o001:
            ancestor.chmod(mode | 0o001)
    return path


def new_cluster(bin_dir: Path, base: Path, **settings: str) -> Cluster:
    """initdb (checksums on), configure for archiving, start on a free loopback port."""
    _, uid, gid = server_user()
    chown_tree(base, uid, gid)
    password = secrets.token_urlsafe(12)
    data = base / "data"
    initdb(bin_dir, data, password)
    cluster = Cluster.configure(
        data,
        bin_dir,
        password,
        {"wal_level": "replica", "archive_mode": "on", "max_wal_senders": "10",
         "max_wal_size": "'4GB'", **settings},
    )  # fmt: skip
    cluster.start()
    return cluster


PG15 = Path("/usr/lib/postgresql/15/bin")  # Debian's: pgBackRest 2.45 knows no later version


def bench_args(prog: str, doc: str, size: str, default: int, runs: int) -> argparse.Namespace:
    """The command line the PostgreSQL benchmarks share; exits when a peer is missing."""
    parser = argparse.ArgumentParser(prog=prog, description=doc.splitlines()[0])
    parser.add_argument(f"--{size}", type=int, default=default, help="pgbench scale")
    parser.add_argument("--runs", type=int, default=runs)
    parser.add_argument(
        "--workdir", type=Path, default=Path(tempfile.gettempdir()) / "drplan-bench"
    )
    args = parser.parse_args()
    if shutil.which("pgbackrest") is None or not PG15.is_dir():
        parser.exit(1, f"{prog}: needs Debian's pgbackrest and postgresql-15\n")
    return args


def pgbackrest_config(base: Path, cluster: Cluster, password: str, **settings: str) -> Path:
    """A pgBackRest configuration for ``cluster`` with a repository under ``base`` (zstd,
    aes-256-cbc, two processes), its directories made and handed to the server's user."""
    conf = base / "pgbackrest.conf"
    options = {
        "repo1-path": str(base / "pgbr-repo"),
        "repo1-cipher-type": "aes-256-cbc",
        "repo1-cipher-pass": password,
        "compress-type": "zst",
        "process-max": "2",
        "log-path": str(base / "pgbr-log"),
        "lock-path": str(base / "pgbr-lock"),
        "spool-path": str(base / "pgbr-spool"),
        "log-level-console": "warn",
        **settings,
    }
    conf.write_text(
        "[global]\n"
        + "".join(f"{k}={v}\n" for k, v in options.items())
        + f"[bench]\npg1-path={cluster.data_dir}\npg1-port={cluster.port}\n"
        + f"pg1-socket-path={cluster.socket_dir}\npg1-user=postgres\n"
    )
    for name in ("pgbr-log", "pgbr-lock", "pgbr-spool"):
        (base / name).mkdir(exist_ok=True)
    _, uid, gid = server_user()
    chown_tree(base, uid, gid)
    return conf
