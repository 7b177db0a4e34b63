"""Scratch targets for drills: a fresh directory and a free loopback port, refused when
they look like production, and always torn down.

A drill restores real data; a mistake in where it lands must not touch a live system.
So before anything is written, the target is held against every system of the plan: it
may not be a PostgreSQL system's data directory, lie inside one or hold one; it may not
lie inside a files system's paths; and its port may not be one a system on this host
listens on. The scratch server listens on 127.0.0.1, accepts connections only on a
socket in the scratch directory (no password over TCP from anyone else on the host),
and is stopped and removed at the end, on failure and on Ctrl-C too, unless kept;
what a killed drill left is cleared by the next one (``leftovers``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from psycopg.conninfo import conninfo_to_dict

from drplan.catalog.paths import state_dir
from drplan.drills.leftovers import claim, clear_abandoned, prefix
from drplan.errors import DrillRefusedError, DrplanError
from drplan.nesting import remove_tree
from drplan.plan.model import FilesSystem, Plan, PostgresSystem
from drplan.recovery.recover import OpenLocation
from drplan.sources.postgres.scratch import free_port, traversable_to

LOCAL_HOSTS = {"", "localhost", "127.0.0.1", "::1"}
DEFAULT_PG_PORT = 5432
SOCKET_PATH_MAX = 107  # sun_path holds 108 bytes, the last one NUL


class Shield:
    """Tearing down is not cut short by a drill's budget running out: while a teardown
    runs, the budget's interruption waits, and is raised when the last one is done."""

    def __init__(self) -> None:
        self.depth = 0
        self.pending: Callable[[], None] | None = None

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        self.depth += 1
        try:
            yield
        finally:
            self.depth -= 1
            if self.depth == 0 and self.pending is not None:
                pending, self.pending = self.pending, None
                pending()  # raises


SHIELD = Shield()


@dataclass
class Scratch:
    root: Path  # the drill's own directory (removed by teardown)
    port: int
    cleared: list[Path] = field(default_factory=list)  # left by killed drills, now removed

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def wal_dir(self) -> Path:
        """WAL the drill fetched for recovery, which the server copies from."""
        return self.root / "wal"

    @property
    def socket_dir(self) -> Path:
        return self.root / "socket"

    @property
    def hba_file(self) -> Path:
        return self.root / "pg_hba.conf"

    def refuse_long_socket(self) -> None:
        """Raise DrillRefusedError when the server's socket path would pass the 107 bytes
        a Unix socket's address holds (PostgreSQL would fail to start, much later)."""
        path = os.fsencode(self.socket_dir / f".s.PGSQL.{self.port}")
        if len(path) > SOCKET_PATH_MAX:
            raise DrillRefusedError(
                f"the scratch server's socket path would be {len(path)} bytes, more than the"
                f" {SOCKET_PATH_MAX} a Unix socket allows",
                hint="set the drill's scratch_dir to a shorter path",
            )

    def server_options(self) -> str:
        """Extra server options: its socket here, and only socket connections allowed."""
        return f"-c unix_socket_directories='{self.socket_dir}' -c hba_file='{self.hba_file}'"

    def prepare_server(self, uid: int, gid: int) -> None:
        """The socket directory and pg_hba.conf for a server running as ``uid``."""
        self.socket_dir.mkdir(mode=0o700, exist_ok=True)
        os.chown(self.socket_dir, uid, gid)
        self.hba_file.write_text("# drplan drill: the socket only, which only its owner reaches\n"
                                 "local all all trust\n")  # fmt: skip
        os.chown(self.hba_file, uid, gid)

    def teardown(self, run_as: list[str], pg_ctl: str | None) -> None:
        """Stop the scratch server (immediately: it is thrown away) and remove everything."""
        with SHIELD.hold():
            if pg_ctl and (self.data_dir / "postmaster.pid").exists():
                with contextlib.suppress(subprocess.SubprocessError, OSError):
                    subprocess.run(
                        [*run_as, pg_ctl, "-D", str(self.data_dir), "stop", "-m", "immediate",
                         "-w"], capture_output=True, timeout=60, check=False,
                    )  # fmt: skip
            remove_tree(self.root, ignore_errors=True)  # a restored tree may be deep


def room_needed(open_location: OpenLocation, candidates: list[str], system: str) -> int:
    """About the bytes a recovery of ``system`` writes: its largest snapshot in the first
    location that can be read (0 when none can: the restore then says what is wrong)."""
    for ref in candidates:
        try:
            with open_location(ref) as repo:
                snapshots, _ = repo.readable_snapshots()
        except DrplanError:
            continue
        return max((s.summary.bytes_total for s in snapshots if s.system == system), default=0)
    return 0


def scratch_base(configured: str | None) -> Path:
    """Where scratch directories are made: the drill's ``scratch_dir``, else the state
    directory's ``drills/`` (as root ``/var/tmp/drplan-drills``: the restored server runs
    as the files' owner, who must be able to reach it, and root's home is closed)."""
    if configured:
        return Path(configured)
    if os.geteuid() == 0 and not os.environ.get("DRPLAN_STATE_DIR"):
        return Path("/var/tmp/drplan-drills")
    return Path(state_dir()) / "drills"


def make_scratch(
    plan: Plan, base: Path, name: str, ports: str | None = None, needs: int = 0
) -> Scratch:
    """A new scratch directory under ``base`` and a free port (in ``ports``, ``LOW-HIGH``,
    when given), refused when either looks like production, when no port is free, or when
    ``base`` has not ``needs`` bytes free."""
    base = base.resolve()
    refuse_production(plan, base)
    base.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(base).free
    if needs and free < needs:
        raise DrillRefusedError(
            f"the scratch directory {base} has {_size(free)} free; the recovery needs about"
            f" {_size(needs)}",
            hint="free some space there, or set the drill's scratch_dir to a larger disk",
        )
    port = _port(ports)
    refuse_port(plan, port)
    cleared = clear_abandoned(base)  # what killed drills left, their servers stopped
    root = Path(tempfile.mkdtemp(prefix=prefix(name), dir=base))
    try:
        claim(root)
        root.chmod(0o711)  # the server's user passes through; nobody lists what is restored
        traversable_to(root)  # ... and can reach it (the x bit only: nothing listable)
    except BaseException:  # Ctrl-C included: nothing is left behind
        shutil.rmtree(root, ignore_errors=True)
        raise
    return Scratch(root, port, cleared)


def _port(ports: str | None) -> int:
    """A port nothing listens on: any, or the first free one of ``LOW-HIGH``."""
    if ports is None:
        return free_port()
    low, _, high = ports.partition("-")
    for port in range(int(low), int(high or low) + 1):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise DrillRefusedError(
        f"no free port in the drill's scratch_ports {ports}",
        hint="wait for what holds them, or widen scratch_ports",
    )


def _size(count: int) -> str:
    return f"{count / (1 << 30):.1f} GiB" if count >= 1 << 30 else f"{count / (1 << 20):.0f} MiB"


def refuse_production(plan: Plan, target: Path) -> None:
    """Raise DrillRefusedError when ``target`` is, holds or lies inside a system's data."""
    target = target.resolve()
    for name, system in plan.systems.items():
        places: list[str] = []
        if isinstance(system, PostgresSystem) and system.data_dir:
            places = [system.data_dir]
        elif isinstance(system, FilesSystem):
            places = list(system.paths)
        for place in places:
            live = Path(place).resolve()
            if (
                target == live
                or live in target.parents
                or (isinstance(system, PostgresSystem) and target in live.parents)
            ):
                raise DrillRefusedError(
                    f"the drill's scratch directory {target} overlaps system {name}'s {live}:"
                    " a drill never restores over production",
                    hint="set the drill's scratch_dir to a directory of its own",
                )


def refuse_port(plan: Plan, port: int) -> None:
    """Raise DrillRefusedError when ``port`` is one a PostgreSQL system on this host uses."""
    for name, system in plan.systems.items():
        if not isinstance(system, PostgresSystem):
            continue
        try:
            params = conninfo_to_dict(system.connection)
        except Exception:
            continue
        host = str(params.get("host") or "")
        if host.startswith("/"):
            host = ""  # a socket directory: this host
        if host in LOCAL_HOSTS and int(params.get("port") or DEFAULT_PG_PORT) == port:
            raise DrillRefusedError(
                f"port {port} is system {name}'s: a drill never starts a server where"
                " production listens",
                hint="run the drill again (another free port is chosen)",
            )
