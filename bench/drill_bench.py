"""Drills: a database recovery rehearsed and proven by drplan, against the bare recovery
pgBackRest gives of the same cluster.

    python bench/drill_bench.py [--scale S] [--runs N] [--workdir DIR]

PostgreSQL 15 (Debian's: pgBackRest 2.45 knows no later version), ``pgbench -i -s S``,
checksums on, WAL archived by pgBackRest. Each tool takes a full backup to local disk
(zstd; pgBackRest aes-256-cbc with 2 processes, drplan AES-256-GCM). Then, timed:

* drplan: ``drplan drill run`` (a sentinel row written, the backup fetched, checked with
  pg_verifybackup, started in a scratch target, recovered to its end, then validated:
  ``pg_amcheck --heapallindexed`` over every relation and index, ``pgbench_accounts``
  compared with the source row for row, ``pg_checksums``; torn down), with its phases;
* pgBackRest: ``restore --type=immediate`` into an empty directory, and the server
  started and waited for until recovery has ended (promoted): a recovery, nothing proven.

The ratio that matters is drplan's recovery (fetch to replay) against pgBackRest's
restore and start; the drill's whole time shows what proving it costs on top. Also
timed: ``drplan status --json`` (what ``drplan serve`` does every ``--watch-every``: read
every location's snapshots and recoverable window) against ``pgbackrest info``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml
from files_bench import drop_page_cache, probe_drop_caches
from pg_bench import DRPLAN, PASSWORD, Drplan, run
from pg_common import PG15, bench_args, new_cluster, pgbackrest_config, world_dir

from drplan.recovery.pitr import wait_for_recovery
from drplan.recovery.postgres import server_running
from drplan.sources.postgres.scratch import free_port, server_user
from testbed.plans import local_only


def restore_and_start(conf: Path, target: Path) -> None:
    """pgBackRest's restore to the end of the backup, started until promoted, stopped."""
    run_as, uid, gid = server_user()
    target.mkdir()
    os.chown(target, uid, gid)
    target.chmod(0o700)
    run([*run_as, "pgbackrest", f"--config={conf}", "--stanza=bench", "restore",
         f"--pg1-path={target}", "--type=immediate", "--target-action=promote"])  # fmt: skip
    log = target / "bench-start.log"
    options = (f"-p {free_port()} -c listen_addresses=127.0.0.1 -c unix_socket_directories=''"
               " -c archive_mode=off -c lc_messages=C")  # fmt: skip
    run([*run_as, str(PG15 / "pg_ctl"), "-D", str(target), "-l", str(log), "-o", options,
         "-w", "-t", "600", "start"])  # fmt: skip
    wait_for_recovery(str(PG15 / "pg_controldata"), target, log, lambda: server_running(target))
    run([*run_as, str(PG15 / "pg_ctl"), "-D", str(target), "-m", "fast", "-w", "stop"])


def one_run(workdir: Path, scale: int, drop: bool) -> dict[str, float]:
    base = world_dir(workdir, "drill")
    cluster = new_cluster(PG15, base, archive_command="'/bin/true'")
    try:
        cluster.pgbench("-i", "-q", "-s", str(scale))
        conf = pgbackrest_config(base, cluster, PASSWORD, **{"start-fast": "y"})
        run_as, _, _ = server_user()
        cluster.set(archive_command=f"'pgbackrest --config={conf} --stanza=bench archive-push %p'")
        cluster.reload()
        run([*run_as, "pgbackrest", f"--config={conf}", "--stanza=bench", "stanza-create"])
        run([*run_as, "pgbackrest", f"--config={conf}", "--stanza=bench", "backup", "--type=full"])
        drplan = Drplan(base, cluster)
        drplan.backup("db-full")
        scratch = world_dir(base, "scratch")
        plan = local_only(yaml.safe_load(drplan.plan.read_text()))
        plan["drills"] = {"bench": {
            "kind": "database", "systems": ["db"], "schedule": "manual",
            "from_location": "local", "scratch_dir": str(scratch),
            "validations": {"tables": [{"table": "pgbench_accounts"}]},
        }}  # fmt: skip
        drplan.plan.write_text(yaml.safe_dump(plan))
        env = {**drplan.env, "DRPLAN_STATE_DIR": str(base / "state")}
        # What the daemon's watch does every minute: read what the locations hold and can
        # recover to. The peer reads the same about its own repository.
        start = time.perf_counter()
        subprocess.run(
            [DRPLAN, "--plan", str(drplan.plan), "status", "--json"],
            env=env,
            capture_output=True,
            check=False,
        )  # exit 1: the plan's other classes
        figures = {"drplan_status": time.perf_counter() - start}  # fmt: skip
        start = time.perf_counter()
        run([*run_as, "pgbackrest", f"--config={conf}", "--stanza=bench", "info", "--output=json"])
        figures["pgbackrest_info"] = time.perf_counter() - start
        if drop:
            drop_page_cache()
        start = time.perf_counter()
        out = run([DRPLAN, "--plan", str(drplan.plan), "drill", "run", "bench", "--json"], env)
        drill_total = time.perf_counter() - start
        result = json.loads(out)
        (system,) = result["systems"]
        phases = system["phases"]
        figures.update({f"drill_{k}": float(v) for k, v in phases.items()})
        figures["drill_recovery"] = sum(v for k, v in phases.items() if k != "validate")
        figures["drill_total"] = drill_total
        figures["drill_rto"] = float(system["rto"]["seconds"])
        if drop:
            drop_page_cache()
        start = time.perf_counter()
        restore_and_start(conf, base / "pgbr-restored")
        figures["pgbackrest_restore_start"] = time.perf_counter() - start
        figures["cluster_bytes"] = float(
            sum(p.stat().st_size for p in cluster.data_dir.rglob("*") if p.is_file())
        )
        return figures
    finally:
        cluster.stop()
        subprocess.run(["pkill", "-f", str(base)], check=False)  # a server left by a failure
        shutil.rmtree(base, ignore_errors=True)


def main() -> int:
    args = bench_args("drill_bench", __doc__ or "", "scale", 50, 3)
    drop, drop_note = probe_drop_caches()
    runs = []
    for i in range(args.runs):
        figures = one_run(args.workdir, args.scale, drop)
        runs.append(figures)
        print(f"run {i + 1}: " + ", ".join(f"{k}={v:.2f}" for k, v in figures.items()), flush=True)
    m = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    peer = m["pgbackrest_restore_start"]
    print()
    print(f"pgbench scale {args.scale} ({m['cluster_bytes'] / (1 << 20):.0f} MiB cluster), median"
          f" of {args.runs} run(s), {dt.date.today()}, {platform.node()}; caches dropped:"
          f" {drop_note}")  # fmt: skip
    print("| step | seconds | / pgBackRest restore and start |")
    print("|---|---|---|")
    print(f"| pgBackRest 2.45: restore, start, recovered | {peer:.1f} | 1.00 |")
    for phase in ("fetch", "rebuild", "verify", "start", "replay", "validate"):
        if f"drill_{phase}" in m:
            print(f"| drplan drill: {phase} | {m[f'drill_{phase}']:.1f} | - |")
    print(f"| drplan drill: recovery (fetch to replay) | {m['drill_recovery']:.1f} |"
          f" {m['drill_recovery'] / peer:.2f} |")  # fmt: skip
    print(f"| drplan drill: measured RTO (with validation) | {m['drill_rto']:.1f} |"
          f" {m['drill_rto'] / peer:.2f} |")  # fmt: skip
    print(f"| drplan drill: whole command (start-up, sentinel, teardown) | {m['drill_total']:.1f} |"
          f" {m['drill_total'] / peer:.2f} |")  # fmt: skip
    print()
    print("| what the locations hold (the daemon's watch) | seconds | / pgBackRest info |")
    print("|---|---|---|")
    print(f"| pgbackrest info --output=json | {m['pgbackrest_info']:.2f} | 1.00 |")
    print(f"| drplan status --json | {m['drplan_status']:.2f} |"
          f" {m['drplan_status'] / m['pgbackrest_info']:.2f} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
