"""What the PostgreSQL benchmarks share: their command line, pgBackRest's configuration,
and clusters from :mod:`testbed.postgres` (the tests' own start-up code, not the tests)
with a benchmark's settings.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # testbed, beside bench/
from drplan.sources.postgres.scratch import chown_tree, server_user
from testbed.postgres import PG15_BIN, Cluster, world_dir
from testbed.postgres import new_cluster as _new_cluster

__all__ = ["PG15", "Cluster", "bench_args", "new_cluster", "pgbackrest_config", "world_dir"]
PG15 = PG15_BIN  # pgBackRest 2.45 knows no later version


def new_cluster(bin_dir: Path, base: Path, **settings: str) -> Cluster:
    """A started cluster with room for a benchmark's WAL between checkpoints."""
    return _new_cluster(bin_dir, base, **{"max_wal_size": "'4GB'", **settings})


def bench_args(
    prog: str, doc: str, size: str, default: int, runs: int, peers: bool = True
) -> argparse.Namespace:
    """The command line the PostgreSQL benchmarks share; exits when a peer is missing
    (``peers``: the benchmark measures against pgBackRest)."""
    parser = argparse.ArgumentParser(prog=prog, description=doc.splitlines()[0])
    parser.add_argument(f"--{size}", type=int, default=default, help="pgbench scale")
    parser.add_argument("--runs", type=int, default=runs)
    parser.add_argument(
        "--workdir", type=Path, default=Path(tempfile.gettempdir()) / "drplan-bench"
    )
    args = parser.parse_args()
    if peers and (shutil.which("pgbackrest") is None or not PG15.is_dir()):
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
