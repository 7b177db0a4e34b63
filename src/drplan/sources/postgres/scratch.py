"""PostgreSQL servers drplan starts itself, on this host: the demo's, drills' scratch
targets, and the tests'.

A server listens on 127.0.0.1 only, on a free port, with its socket outside its data
directory (a base backup would meet the socket file there), and requires a password
over TCP (SCRAM) for the ``postgres`` role. PostgreSQL refuses to run as root: as
root, every server command runs as the unprivileged system user ``drplanpg``
(created when missing), and the files it needs are handed to it.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Self

import psycopg

SERVER_USER = "drplanpg"
PG_CTL_TIMEOUT = 120  # seconds: a start replaying WAL, or a slow shared machine


def server_user() -> tuple[list[str], int, int]:
    """The command prefix, uid and gid to run a server as: ourselves, or as root
    ``drplanpg`` (created when missing)."""
    if os.geteuid() != 0:
        return [], os.getuid(), os.getgid()
    try:
        entry = pwd.getpwnam(SERVER_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
             SERVER_USER],
            check=True,
        )  # fmt: skip
        entry = pwd.getpwnam(SERVER_USER)
    prefix = ["setpriv", f"--reuid={entry.pw_uid}", f"--regid={entry.pw_gid}", "--clear-groups"]
    return prefix, entry.pw_uid, entry.pw_gid


def drplan_reachable_by_servers() -> None:
    """Let a server's user run drplan (restore_command, archive_command run as the server):
    the interpreter, the virtualenv or drplan itself may sit under a directory only root
    may enter (``/root``). Directories on the way get the others-may-traverse bit (x, not
    r): nothing becomes listable or readable that was not."""
    import drplan  # noqa: PLC0415 - its own location

    program = Path(sys.executable).with_name("drplan")
    for path in (Path(os.path.realpath(sys.executable)), program, Path(drplan.__file__).resolve()):
        traversable_to(path)


def traversable_to(path: Path) -> list[Path]:
    """Give every directory above ``path`` the others-may-traverse bit (x, not r), so that
    a server's user can reach ``path`` itself: nothing becomes listable or readable that
    was not. A directory we may not change is left as it is. Returns those changed."""
    changed = []
    for parent in path.parents:
        mode = parent.stat().st_mode
        if not mode & 0o001:
            with contextlib.suppress(PermissionError):
                parent.chmod(mode | 0o001)
                changed.append(parent)
    return changed


def free_port() -> int:
    """A TCP port on 127.0.0.1 nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def chown_tree(path: Path, uid: int, gid: int) -> None:
    os.chown(path, uid, gid)
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            os.chown(os.path.join(root, name), uid, gid, follow_symlinks=False)


def initdb(bin_dir: Path, data_dir: Path, password: str) -> None:
    """A new cluster in ``data_dir`` (which must not exist; its parent must be reachable
    by the server's user), with data checksums and ``password`` for ``postgres``."""
    run_as, uid, gid = server_user()
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    pwfile = data_dir.parent / f".{data_dir.name}.pw"
    fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(password + "\n")
        os.chown(pwfile, uid, gid)
        subprocess.run(
            [*run_as, str(bin_dir / "initdb"), "-D", str(data_dir), "-U", "postgres",
             "--auth-local=trust", "--auth-host=scram-sha-256", "--data-checksums",
             f"--pwfile={pwfile}", "--no-sync"],
            check=True, capture_output=True, timeout=300,
        )  # fmt: skip
    finally:
        pwfile.unlink(missing_ok=True)


def socket_dir_of(data_dir: Path) -> Path:
    """Beside the data directory, not in it: a base backup would meet the socket file."""
    return data_dir.with_name(data_dir.name + "-sockets")


@dataclass
class LocalServer:
    data_dir: Path
    port: int
    password: str
    bin_dir: Path
    run_as: list[str]  # prefix running a command as the server's user

    @classmethod
    def configure(
        cls, data_dir: Path, bin_dir: Path, password: str, settings: dict[str, str]
    ) -> Self:
        """A server for the cluster in ``data_dir`` on a free port, its socket in a
        directory beside it, with ``settings`` (postgresql.conf syntax) on top; the
        data directory is handed to the server's user. Not started."""
        run_as, uid, gid = server_user()
        sockets = socket_dir_of(data_dir)
        sockets.mkdir(exist_ok=True)
        os.chown(sockets, uid, gid)
        port = free_port()
        conf = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(port),
            "unix_socket_directories": f"'{sockets}'",
            **settings,
        }
        with open(data_dir / "postgresql.auto.conf", "a") as f:
            f.writelines(f"{k} = {v}\n" for k, v in conf.items())
        chown_tree(data_dir, uid, gid)
        data_dir.chmod(0o700)
        return cls(data_dir, port, password, bin_dir, run_as)

    @property
    def socket_dir(self) -> Path:
        return socket_dir_of(self.data_dir)

    @property
    def dsn(self) -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres"

    def connect(self, dbname: str = "postgres") -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(
            self.dsn, dbname=dbname, password=self.password, autocommit=True, connect_timeout=10
        )

    def sql(self, query: str, dbname: str = "postgres") -> list[tuple[object, ...]]:
        with self.connect(dbname) as conn:
            cur = conn.execute(query.encode())
            return cur.fetchall() if cur.description else []

    def pg_ctl(self, *args: str) -> None:
        subprocess.run(
            [*self.run_as, str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), *args],
            check=True,
            capture_output=True,
            timeout=PG_CTL_TIMEOUT,
            start_new_session=True,  # the server is not stopped by a Ctrl-C meant for us
        )

    def start(self) -> None:
        """Start (with its log: a server must not hold pg_ctl's output pipe), and wait
        until it accepts TCP connections, not just on the socket file."""
        self.pg_ctl("start", "-w", "-l", str(self.data_dir / "server.log"), "-t", "60")
        self.wait_ready()

    def stop(self) -> None:
        if (self.data_dir / "postmaster.pid").exists():
            self.pg_ctl("stop", "-m", "fast", "-w")

    def restart(self) -> None:
        self.stop()
        self.start()

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.sql("select 1")
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
