"""Incidents: how fast the response engine tells people and answers, and what it costs
on top of the recovery it drives.

    python bench/incident_bench.py [--scale S] [--runs N] [--workdir DIR]

PostgreSQL 18 (the wheel's), ``pgbench -i -s S``, a full backup by drplan to local disk.
Per run, timed:

* declaration to first notification: from starting ``drplan incident declare`` to the
  local Slack-format receiver holding the initial message (the targets: 2 s at most);
* ``drplan incident status --json`` of an open incident with 40 timeline entries
  (target: 0.3 s at most);
* the engine's overhead: ``drplan restore postgres --start`` run bare, against the same
  restore run as an approved step of an incident's runbook by ``drplan incident run``
  (target: 5% at most), both until the process ends and until the incident's clock is
  stopped (the restored system checked: what the RTO counts). The peer is drplan's own
  bare restore, measured in the same run, the two taking turns at going first.
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
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml
from files_bench import drop_page_cache, probe_drop_caches
from pg_bench import DRPLAN, Drplan, run
from pg_common import bench_args, new_cluster, world_dir

from drplan.sources.postgres.scratch import free_port
from testbed.plans import local_only
from testbed.postgres import binaries

DROP = False  # whether settle() drops the page cache (probed in main)
# What a running `drplan serve` keeps in the page cache: the modules of its commands.
WARM = ("drplan.cli", "drplan.cli.incident_cmd", "drplan.cli.restore_cmd", "drplan.plan.model",
        "drplan.catalog.store", "drplan.incidents.runner", "drplan.incidents.escalate",
        "drplan.incidents.recovered", "drplan.recovery.postgres")  # fmt: skip


class Receiver:
    """A Slack-format webhook on loopback that notes when each message arrived."""

    def __init__(self) -> None:
        arrived: list[float] = []
        self.arrived = arrived

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                arrived.append(time.perf_counter())
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/slack"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def write_plan(path: Path, target: Path) -> None:
    """The clean plan, on local disk only, with one channel and a two-phase runbook whose
    second phase restores the database (approved first, as a commander would)."""
    plan = local_only(yaml.safe_load(path.read_text()))
    restore = (f"restore postgres db --to latest --target-dir {target}"
               f" --start --port {free_port()} --repo local")  # fmt: skip
    plan["channels"] = {"slack": {"kind": "slack", "webhook_url": "${BENCH_SLACK}"}}
    plan["communication"] = {"primary": "slack"}
    plan["runbooks"]["rb"]["phases"] = [
        {"name": "Respond", "window": "0-1h", "steps": [{"title": "Assess", "owner": "ic"}]},
        {"name": "Recover", "window": "1-4h", "steps": [{
            "title": "Restore db", "owner": "ic", "recovers": ["db"], "approve": "ic",
            "action": restore, "timeout": "1h"}]},
    ]  # fmt: skip
    path.write_text(yaml.safe_dump(plan))


def one_run(workdir: Path, scale: int, turn: int) -> dict[str, float]:
    base = world_dir(workdir, "incident")
    cluster = new_cluster(binaries(18), base, archive_command="'/bin/true'")
    receiver = Receiver()
    try:
        cluster.pgbench("-i", "-q", "-s", str(scale))
        drplan = Drplan(base, cluster)
        drplan.backup("db-full")
        targets = world_dir(base, "targets")
        write_plan(drplan.plan, targets / "in-incident")
        env = {**drplan.env, "DRPLAN_STATE_DIR": str(base / "state"), "BENCH_SLACK": receiver.url}
        cli = [DRPLAN, "--plan", str(drplan.plan), "incident"]

        start = time.perf_counter()
        inc = json.loads(run([*cli, "declare", "db-loss", "--systems", "db", "--json"], env))["id"]
        figures = {"first_notification": receiver.arrived[0] - start}
        for n in range(38):
            run([*cli, "note", inc, f"note {n}"], env)
        start = time.perf_counter()
        run([*cli, "status", inc, "--json"], env)
        figures["status"] = time.perf_counter() - start

        run([*cli, "step", inc, "1.1", "done"], env)
        run([*cli, "approve", inc, "2.1", "--as", "ic"], env)

        def bare(into: str = "bare") -> None:
            settle()
            start = time.perf_counter()
            run([DRPLAN, "--plan", str(drplan.plan), "restore", "postgres", "db", "--to",
                 "latest", "--target-dir", str(targets / into), "--start", "--port",
                 str(free_port()), "--repo", "local"], env)  # fmt: skip
            figures[f"{into}_restore"] = time.perf_counter() - start
            _stop(targets / into)

        def in_incident() -> None:
            settle()
            start, wall = time.perf_counter(), time.time()
            run([*cli, "run", inc], env)
            figures["incident_restore"] = time.perf_counter() - start
            _stop(targets / "in-incident")
            stopped = [json.loads(line) for line in run([*cli, "timeline", inc, "--json"], env)
                       .splitlines() if '"clock_stopped"' in line]  # fmt: skip
            at = dt.datetime.fromisoformat(stopped[0]["at"].replace("Z", "+00:00"))
            figures["incident_recovered"] = at.timestamp() - wall

        # A restore untimed first: the first after the load and the backup ran up to 20%
        # slower, whichever it was. Then the two in turns, neither always first.
        bare("warm-up")
        shutil.rmtree(targets / "warm-up")
        del figures["warm-up_restore"]
        for one in (bare, in_incident) if turn % 2 == 0 else (in_incident, bare):
            one()
        status = json.loads(run([*cli, "status", inc, "--json"], env))
        (step,) = status["phases"][1]["steps"]
        if step["status"] != "done":
            raise RuntimeError(f"the restore step did not succeed: {step.get('output')}")
        figures["cluster_bytes"] = float(
            sum(p.stat().st_size for p in cluster.data_dir.rglob("*") if p.is_file())
        )
        return figures
    finally:
        receiver.close()
        cluster.stop()
        subprocess.run(["pkill", "-f", str(base)], check=False)  # a server left by a failure
        shutil.rmtree(base, ignore_errors=True)


def settle() -> None:
    """Before each timed restore: the previous one's writes flushed (their writeback
    slowed whichever restore came second by up to 30%), and the page cache dropped where
    this runs as root, then drplan's code read back into it: the state of a host where
    `drplan serve` runs (it drives incidents, and its modules are the ones in use), with
    the backup itself cold."""
    if DROP:
        drop_page_cache()
        subprocess.run([sys.executable, "-c", f"import {', '.join(WARM)}"], check=True)
    else:
        os.sync()


def _stop(data: Path) -> None:
    from drplan.recovery.postgres import as_owner  # noqa: PLC0415

    subprocess.run([*as_owner(data), str(binaries(18) / "pg_ctl"), "-D", str(data), "stop", "-m",
                    "fast", "-w"], capture_output=True, check=False)  # fmt: skip


def main() -> int:
    args = bench_args("incident_bench", __doc__ or "", "scale", 20, 3, peers=False)
    global DROP  # probed once, for every run
    DROP, said = probe_drop_caches()
    print(f"page cache dropped before each timed restore: {said}", flush=True)
    runs = []
    for i in range(args.runs):
        figures = one_run(args.workdir, args.scale, i)
        runs.append(figures)
        print(f"run {i + 1}: " + ", ".join(f"{k}={v:.3f}" for k, v in figures.items()), flush=True)
    m = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    print()
    print(f"pgbench scale {args.scale} ({m['cluster_bytes'] / (1 << 20):.0f} MiB cluster),"
          f" PostgreSQL 18, median of {args.runs} run(s), {dt.date.today()}, {platform.node()}")  # fmt: skip
    print("| what | seconds | target | ratio |")
    print("|---|---|---|---|")
    print(f"| declaration to first notification | {m['first_notification']:.3f} | 2 s | - |")
    print(f"| `incident status --json` (40 entries) | {m['status']:.3f} | 0.3 s | - |")
    print(f"| bare `restore postgres --start` | {m['bare_restore']:.2f} | - | 1.00 |")
    print(f"| the same restore as an incident's step (`incident run`) |"
          f" {m['incident_restore']:.2f} | 5% over | {m['incident_restore'] / m['bare_restore']:.2f} |")  # fmt: skip
    print(f"| ... until its clock stopped (the system checked and back) |"
          f" {m['incident_recovered']:.2f} | 5% over | {m['incident_recovered'] / m['bare_restore']:.2f} |")  # fmt: skip
    for what, key in (("ended", "incident_restore"), ("recovered", "incident_recovered")):
        pairs = [r[key] / r["bare_restore"] for r in runs]
        print(f"\nper run, incident {what} over bare: {', '.join(f'{p:.2f}' for p in pairs)}"
              f" (median {statistics.median(pairs):.2f}; each pair back to back, in turns)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
