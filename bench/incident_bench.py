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
  restore run as an approved step of an incident's runbook (target: 5% at most), driven
  two ways: by ``drplan serve``, from the approval posted to its API (the dashboard's
  button) until the incident's clock is stopped (the restored system checked: what the
  RTO counts); and by ``drplan incident run`` typed after the approval, until the clock
  is stopped and until the command ends. The peer is drplan's own bare restore, measured
  in the same run, the three taking turns at going first.
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
import urllib.request
from collections.abc import Callable
from pathlib import Path

import yaml
from files_bench import drop_page_cache, probe_drop_caches
from pg_bench import DRPLAN, Drplan, run
from pg_common import bench_args, new_cluster, world_dir

from drplan.incidents.journal import parse_journal
from drplan.sources.postgres.scratch import free_port
from testbed.endpoint import Endpoint
from testbed.plans import local_only
from testbed.postgres import binaries

DROP = False  # whether settle() drops the page cache (probed in main)
# What a running `drplan serve` keeps in the page cache: the modules of its commands.
WARM = ("drplan.cli", "drplan.cli.incident_cmd", "drplan.cli.restore_cmd", "drplan.plan.model",
        "drplan.catalog.store", "drplan.incidents.runner", "drplan.incidents.escalate",
        "drplan.incidents.recovered", "drplan.recovery.postgres")  # fmt: skip


def write_plan(path: Path, targets: Path) -> None:
    """The clean plan, on local disk only, with one channel and two scenarios whose
    runbooks' second phase restores the database (approved, as a commander would), one
    into ``targets``/in-incident, the other into ``targets``/in-serve. No job runs while
    this measures (each scheduled on the 1st of January)."""
    plan = local_only(yaml.safe_load(path.read_text()))
    plan["channels"] = {"slack": {"kind": "slack", "webhook_url": "${BENCH_SLACK}"}}
    plan["communication"] = {"primary": "slack"}
    plan["roles"]["ic"]["access"] = "commander"
    for job in plan["jobs"].values():
        if job["schedule"] != "continuous":
            job["schedule"] = "0 3 1 1 *"
    for name in ("in-incident", "in-serve"):
        restore = (f"restore postgres db --to latest --target-dir {targets / name}"
                   f" --start --port {free_port()} --repo local")  # fmt: skip
        plan["runbooks"][name] = {"phases": [
            {"name": "Respond", "window": "0-1h", "steps": [{"title": "Assess", "owner": "ic"}]},
            {"name": "Recover", "window": "1-4h", "steps": [{
                "title": "Restore db", "owner": "ic", "recovers": ["db"], "approve": "ic",
                "action": restore, "timeout": "1h"}]},
        ]}  # fmt: skip
        plan["scenarios"][name] = {"title": name, "tier": 1, "runbook": name}
    path.write_text(yaml.safe_dump(plan))


class Serve:
    """``drplan serve`` on loopback, with a commander's API token."""

    def __init__(self, base: Path, cli: list[str], env: dict[str, str], incident: str) -> None:
        run([*cli, "user", "add", "ann", "--role", "ic", "--no-password"], env)
        self.token = run([*cli, "token", "create", "bench", "--user", "ann", "--scope",
                          "incidents:write", "--expires", "1d"], env).strip()  # fmt: skip
        self.port = free_port()
        self.log = base / "serve.log"
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen([*cli, "serve", "--listen", f"127.0.0.1:{self.port}"],
                                         env=env, stdout=log, stderr=log)  # fmt: skip
        # Settled: its driver at the approval, its first look at the locations done.
        deadline = time.monotonic() + 120
        while not (f"approve {incident} 2.1".encode() in self.log.read_bytes() and self.ready()):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError(f"drplan serve did not start: {self.log.read_text()[-2000:]}")
            time.sleep(0.05)

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.port}/readyz", timeout=5
            ) as answer:
                return bool(answer.status == 200)
        except OSError:
            return False

    def approve(self, incident: str, step: str) -> None:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/api/v1/incidents/{incident}/approvals/{step}",
            method="POST", data=b'{"role": "ic"}',
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
        )  # fmt: skip
        with urllib.request.urlopen(request, timeout=30) as answer:
            answer.read()

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(60)


def one_run(workdir: Path, scale: int, turn: int) -> dict[str, float]:
    base = world_dir(workdir, "incident")
    cluster = new_cluster(binaries(18), base, archive_command="'/bin/true'")
    receiver = Endpoint("/slack")
    try:
        cluster.pgbench("-i", "-q", "-s", str(scale))
        drplan = Drplan(base, cluster)
        drplan.backup("db-full")
        world = World(base, drplan, receiver)
        # A restore untimed first: the first after the load and the backup ran up to 20%
        # slower, whichever it was. Then the three in turns, none always first.
        world.bare("warm-up")
        shutil.rmtree(world.targets / "warm-up")
        del world.figures["warm-up_restore"]
        order = [world.bare, world.in_incident, world.in_serve]
        for one in order[turn % 3 :] + order[: turn % 3]:
            one()
        world.check()
        world.figures["cluster_bytes"] = float(
            sum(p.stat().st_size for p in cluster.data_dir.rglob("*") if p.is_file())
        )
        return world.figures
    finally:
        receiver.close()
        cluster.stop()
        subprocess.run(["pkill", "-f", str(base)], check=False)  # a server left by a failure
        shutil.rmtree(base, ignore_errors=True)


class World:
    """Two incidents on the restored cluster, each at its restore's approval: one for
    `incident run`, one for `serve`; the first timed from declaration to notification."""

    def __init__(self, base: Path, drplan: Drplan, receiver: Endpoint) -> None:
        self.base = base
        self.targets = world_dir(base, "targets")
        write_plan(drplan.plan, self.targets)
        self.env = {**drplan.env, "DRPLAN_STATE_DIR": str(base / "state"),
                    "BENCH_SLACK": receiver.url}  # fmt: skip
        self.top = [DRPLAN, "--plan", str(drplan.plan)]
        self.cli = cli = [*self.top, "incident"]
        env = self.env
        start = time.perf_counter()
        self.inc = json.loads(run([*cli, "declare", "in-incident", "--systems", "db", "--json"],
                                  env))["id"]  # fmt: skip
        self.figures = {"first_notification": receiver.arrived[0] - start}
        for n in range(38):
            run([*cli, "note", self.inc, f"note {n}"], env)
        start = time.perf_counter()
        run([*cli, "status", self.inc, "--json"], env)
        self.figures["status"] = time.perf_counter() - start
        run([*cli, "step", self.inc, "1.1", "done"], env)
        self.served = json.loads(run([*cli, "declare", "in-serve", "--systems", "db", "--json"],
                                     env))["id"]  # fmt: skip
        run([*cli, "step", self.served, "1.1", "done"], env)

    def bare(self, into: str = "bare") -> None:
        settle()
        start = time.perf_counter()
        run([*self.top, "restore", "postgres", "db", "--to", "latest", "--target-dir",
             str(self.targets / into), "--start", "--port", str(free_port()), "--repo", "local"],
            self.env)  # fmt: skip
        self.figures[f"{into}_restore"] = time.perf_counter() - start
        _stop(self.targets / into)

    def in_incident(self) -> None:
        run([*self.cli, "approve", self.inc, "2.1", "--as", "ic"], self.env)  # serve is not running
        settle()
        start, wall = time.perf_counter(), time.time()
        run([*self.cli, "run", self.inc], self.env)
        self.figures["incident_restore"] = time.perf_counter() - start
        _stop(self.targets / "in-incident")
        moment = moments(self.base, self.inc, wall)
        self.figures["incident_recovered"] = moment("clock_stopped")
        self.figures["driver_to_step"] = moment("step_started")
        self.figures["incident_step"] = moment("step") - moment("step_started")

    def in_serve(self) -> None:
        serve = Serve(self.base, self.top, self.env, self.served)
        try:
            settle()
            wall = time.time()
            serve.approve(self.served, "2.1")
            journal = self.base / "state" / "incidents" / f"{self.served}.timeline"
            deadline = time.monotonic() + 3600
            while b"clock_stopped" not in journal.read_bytes():
                if time.monotonic() > deadline:
                    raise RuntimeError(f"no clock stopped: {serve.log.read_text()[-2000:]}")
                time.sleep(0.01)
        finally:
            serve.stop()
        _stop(self.targets / "in-serve")
        moment = moments(self.base, self.served, wall)
        self.figures["serve_recovered"] = moment("clock_stopped")
        self.figures["approval_to_step"] = moment("step_started")
        self.figures["serve_step"] = moment("step") - moment("step_started")
        self.figures["serve_approved"] = moment("approved")

    def check(self) -> None:
        for incident in (self.inc, self.served):
            status = json.loads(run([*self.cli, "status", incident, "--json"], self.env))
            (step,) = status["phases"][1]["steps"]
            if step["status"] != "done":
                raise RuntimeError(f"the restore step did not succeed: {step.get('output')}")


def moments(base: Path, incident: str, wall: float) -> Callable[[str], float]:
    """When the last entry of each kind in ``incident``'s journal was made, in seconds
    after ``wall``."""
    journal = base / "state" / "incidents" / f"{incident}.timeline"
    events = parse_journal(journal.read_bytes(), journal)

    def moment(kind: str) -> float:
        return [e for e in events if e.kind == kind][-1].at.timestamp() - wall

    return moment


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
    rows = (("approved on serve's API, until its clock stopped", "serve_recovered"),
            ("`incident run`, until its clock stopped", "incident_recovered"),
            ("`incident run`, until it ended", "incident_restore"))  # fmt: skip
    for what, key in rows:
        print(f"| the same restore as a step: {what} | {m[key]:.2f} | 5% over |"
              f" {m[key] / m['bare_restore']:.2f} |")  # fmt: skip
    print(f"\nfrom the approval to the step's start under serve: {m['approval_to_step']:.3f} s;"
          f" from `incident run`'s start to the step's: {m['driver_to_step']:.3f} s")  # fmt: skip
    for what, key in rows:
        pairs = [r[key] / r["bare_restore"] for r in runs]
        print(f"per run, {what} over bare: {', '.join(f'{p:.2f}' for p in pairs)}"
              f" (median {statistics.median(pairs):.2f})")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
