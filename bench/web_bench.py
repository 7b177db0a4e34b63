"""The web server: how long the overview takes the server, and how soon a change reaches an
open page.

    python bench/web_bench.py [--systems N] [--runs N] [--workdir DIR]

A plan of N systems (default 50), each with a job and a data class, and a drill per five
systems; a catalog (SQLite) holding a year of history: every job hourly (8,760 runs a
job) and every drill weekly. The server is drplan's own (uvicorn, as `drplan web` runs
it) on loopback.

* the overview (`GET /`, logged in): the server's time on it (its `Server-Timing`
  header), the median and the worst of ``--runs`` requests after one to warm up
  (target: 100 ms);
* 200 clients on the status page against the daemon's job starts: `drplan serve` with a
  job every 2 s (a command's output backed up), its start lateness (the run's start
  minus its slot, from the catalog) over ``--window`` seconds without clients, then
  with 200 threads reading `/status-page` and `/api/v2/summary.json` without pause;
* a change to an open page: from just before a note is written to an open incident's
  timeline (the journal, then the catalog) to the `incident` event arriving on an open
  `/api/v1/events` stream, the median and the worst of ``--runs`` notes (target: 1 s).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import queue
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import yaml
from sqlalchemy import insert

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # testbed, beside bench/
from drplan.catalog.schema import drills as drills_table
from drplan.catalog.schema import runs as runs_table
from drplan.catalog.store import Catalog
from drplan.plan.loader import load_plan_text
from drplan.web.app import build
from drplan.web.context import WebContext
from drplan.web.server import WebServer
from testbed.plans import clean_plan

PASSWORD = "correct horse battery staple"
HOURS = 365 * 24


def make_plan(systems: int) -> dict[str, Any]:
    """The clean plan's shape with ``systems`` file systems, a job each, a drill per five."""
    names = [f"sys-{n:02d}" for n in range(systems)]
    tiers = ("critical", "important", "non_critical")
    raw = clean_plan()
    raw["objectives"]["rpo"] = {f"class-{n}": "1h" for n in names}
    raw["data_classes"] = {}
    raw["systems"] = {n: {"kind": "files", "tier": tiers[i % 3], "data_classes": [f"class-{n}"],
                          "paths": [f"/srv/{n}"]} for i, n in enumerate(names)}  # fmt: skip
    raw["jobs"] = {f"job-{n}": {"system": n, "type": "files", "schedule": "1h",
                                "retention": {"keep_within": "30d"}, "locations": ["local"]}
                   for n in names}  # fmt: skip
    raw["runbooks"]["rb"]["phases"][1]["steps"][0]["recovers"] = names[:1]
    raw["scenarios"] = {"loss": {"title": "Loss", "tier": 1, "runbook": "rb", "affects": names[:3]}}
    raw["roles"]["ic"]["access"] = "commander"
    raw["drills"] = {f"drill-{k}": {"kind": "service", "systems": names[k * 5:(k + 1) * 5],
                                     "schedule": "0 3 * * 1"} for k in range(systems // 5)}  # fmt: skip
    return raw


def fill_catalog(catalog: Catalog, plan: dict[str, Any], now: dt.datetime) -> int:
    """A year of hourly runs per job and weekly drills; how many rows."""
    rows = 0
    with catalog.transaction() as conn:
        for job in plan["jobs"]:
            batch = [{"job": job, "slot": now - dt.timedelta(hours=h), "attempt": 1,
                      "host": "bench", "started_at": now - dt.timedelta(hours=h),
                      "ended_at": now - dt.timedelta(hours=h) + dt.timedelta(seconds=30),
                      "status": "succeeded", "snapshot": f"{h:064x}", "location": "local",
                      "bytes_added": 1000, "bytes_stored": 500} for h in range(HOURS)]  # fmt: skip
            conn.execute(insert(runs_table), batch)
            rows += len(batch)
        for name, drill in plan["drills"].items():
            for week in range(52):
                at = now - dt.timedelta(weeks=week)
                result = {"systems": [{"system": s, "stage": "recovery", "validations": [],
                                       "rto": {"seconds": 600.0 + week, "met": True},
                                       "rpo": {"seconds": 60.0, "met": True}}
                                      for s in drill["systems"]]}  # fmt: skip
                conn.execute(insert(drills_table).values(
                    run=f"{name}-{week}", drill=name, kind="files", started_at=at,
                    ended_at=at + dt.timedelta(minutes=10), passed=1, rto_seconds=600.0 + week,
                    rto_met=1, rpo_seconds=60.0, rpo_met=1, integrity=1, summary="",
                    result=json.dumps(result)))  # fmt: skip
                rows += 1
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(prog="web_bench", description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--systems", type=int, default=50)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--window", type=float, default=30.0, help="seconds per lateness phase")
    parser.add_argument(
        "--workdir", type=Path, default=Path(tempfile.gettempdir()) / "drplan-bench"
    )
    args = parser.parse_args()
    work = args.workdir / "web"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    os.environ["DRPLAN_STATE_DIR"] = str(work / "state")
    os.environ["DRPLAN_CATALOG"] = f"sqlite:///{work / 'catalog.db'}"
    raw = make_plan(args.systems)
    plan_path = work / "plan.yaml"
    plan_path.write_text(yaml.safe_dump(raw))
    plan = load_plan_text(json.dumps(raw), str(plan_path)).plan
    catalog = Catalog.open(os.environ["DRPLAN_CATALOG"])
    started = time.perf_counter()
    rows = fill_catalog(catalog, raw, dt.datetime.now(dt.UTC))
    print(f"catalog: {rows} rows in {time.perf_counter() - started:.0f} s", flush=True)
    drplan = [sys.executable, "-m", "drplan", "--plan", str(plan_path)]
    subprocess.run([*drplan, "user", "add", "ann", "--role", "ic", "--password-stdin"],
                   input=PASSWORD + "\n", text=True, check=True, capture_output=True)  # fmt: skip
    token = subprocess.run([*drplan, "token", "create", "b", "--user", "ann", "--scope", "read"],
                           text=True, check=True, capture_output=True).stdout.strip()  # fmt: skip
    server = WebServer(build(WebContext(lambda: plan, str(plan_path), catalog,
                                        os.environ["DRPLAN_CATALOG"])), "127.0.0.1:0", plan.web)  # fmt: skip
    server.start()
    try:
        overview = time_overview(server.url, args.runs)
        change = time_changes(server.url, token, drplan, args.runs)
    finally:
        server.stop()
        catalog.close()
    print(f"\n{args.systems} systems, a year of history ({rows} catalog rows), median of"
          f" {args.runs}, {dt.date.today()}, {platform.node()}, {os.cpu_count()} cores")  # fmt: skip
    lateness = time_lateness(work, args.window, args.clients)
    print("| what | median | worst | target |")
    print("|---|---|---|---|")
    print(
        f"| overview, server time | {statistics.median(overview):.1f} ms | {max(overview):.1f} ms | 100 ms |"
    )
    print(f"| a change to an open page | {statistics.median(change) * 1000:.0f} ms |"
          f" {max(change) * 1000:.0f} ms | 1000 ms |")  # fmt: skip
    (alone, crowd, served) = lateness
    print(f"| job start lateness, no clients ({len(alone)} starts) | {statistics.median(alone) * 1000:.0f} ms |"
          f" {max(alone) * 1000:.0f} ms | - |")  # fmt: skip
    print(f"| job start lateness, {args.clients} clients on the status page ({len(crowd)} starts,"
          f" {served} pages served) | {statistics.median(crowd) * 1000:.0f} ms | {max(crowd) * 1000:.0f} ms |"
          f" no later |")  # fmt: skip
    print(
        f"\nlateness with the crowd over without (medians): "
        f"{statistics.median(crowd) / max(statistics.median(alone), 1e-6):.2f}"
    )
    return 0


def time_overview(url: str, runs: int) -> list[float]:
    browser = httpx.Client(base_url=url, timeout=60)
    assert browser.post("/login", data={"name": "ann", "password": PASSWORD}).status_code == 303
    browser.get("/")  # the first: templates compiled, modules imported
    found = []
    for _ in range(runs):
        answer = browser.get("/")
        assert answer.status_code == 200, answer.text[:300]
        match = re.search(r"dur=([0-9.]+)", answer.headers["server-timing"])
        assert match is not None
        found.append(float(match.group(1)))
    return found


def time_changes(url: str, token: str, drplan: list[str], runs: int) -> list[float]:
    arrived: queue.Queue[tuple[str, float]] = queue.Queue()

    def listen() -> None:
        with httpx.stream("GET", f"{url}/api/v1/events", timeout=None,
                          headers={"Authorization": f"Bearer {token}"}) as answer:  # fmt: skip
            arrived.put(("open", time.time()))
            for line in answer.iter_lines():
                if line.startswith("data: ") and '"entries"' in line:
                    arrived.put((json.loads(line[6:])["id"], time.time()))

    threading.Thread(target=listen, daemon=True).start()
    assert arrived.get(timeout=30)[0] == "open"
    from drplan import clock  # noqa: PLC0415
    from drplan.incidents.service import open_incidents  # noqa: PLC0415

    done = subprocess.run([*drplan, "incident", "declare", "loss", "--json"], text=True,
                          check=True, capture_output=True)  # fmt: skip
    inc = json.loads(done.stdout)["id"]
    while arrived.get(timeout=30)[0] != inc:
        pass
    found = []
    with open_incidents() as service:
        for n in range(runs):
            # From just before the change is written (a note, appended to the journal and
            # the catalog) to the event arriving: the write is counted, to be safe.
            before = time.time()
            service.note(service.load(inc), "note", f"note {n}", clock.now())
            while True:
                which, at = arrived.get(timeout=30)
                if which == inc:
                    break
            found.append(at - before)
    return found


def serve_plan(base: Path) -> dict[str, Any]:
    """One command job every 2 s to a local repository, and a status page over it."""
    raw = clean_plan()
    raw["locations"] = {"local": {"role": "primary", "kind": "local", "path": str(base / "repo")}}
    raw["data_classes"] = {}
    raw["systems"] = {
        "cfg": {
            "kind": "command",
            "tier": "important",
            "data_classes": ["configuration"],
            "command": "echo settings",
        }
    }
    raw["jobs"] = {
        "cfg": {
            "system": "cfg",
            "type": "command",
            "schedule": "2s",
            "retention": {"keep_last": 5},
            "locations": ["local"],
        }
    }
    raw["scenarios"] = {"loss": {"title": "Loss", "tier": 2, "runbook": "rb", "affects": ["cfg"]}}
    raw["runbooks"]["rb"]["phases"][1]["steps"][0]["recovers"] = ["cfg"]
    raw["drills"] = {}
    raw["status_page"] = {
        "title": "Bench status",
        "components": {"cfg": {"title": "Settings", "systems": ["cfg"]}},
    }
    return raw


def time_lateness(work: Path, window: float, clients: int) -> tuple[list[float], list[float], int]:
    """Job start lateness under `drplan serve`, without clients and then with ``clients``
    threads reading the status page; and how many pages they were served."""
    from drplan.sources.postgres.scratch import free_port  # noqa: PLC0415

    base = work / "serve"
    base.mkdir()
    raw = serve_plan(base)
    plan = base / "plan.yaml"
    plan.write_text(yaml.safe_dump(raw))
    catalog_url = f"sqlite:///{base / 'catalog.db'}"
    env = {**os.environ, "DRPLAN_PASSWORD": PASSWORD, "DRPLAN_CATALOG": catalog_url,
           "DRPLAN_STATE_DIR": str(base / "state")}  # fmt: skip
    drplan = [sys.executable, "-m", "drplan", "--plan", str(plan)]
    subprocess.run([*drplan, "repo", "init", "local"], env=env, check=True, capture_output=True)
    port = free_port()
    log = (base / "serve.log").open("wb")
    daemon = subprocess.Popen([*drplan, "serve", "--listen", f"127.0.0.1:{port}"], env=env,
                              stdout=log, stderr=log)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    served = 0
    try:
        deadline = time.monotonic() + 60
        while not _answers(f"{url}/status-page"):
            if time.monotonic() > deadline:
                raise RuntimeError((base / "serve.log").read_text())
            time.sleep(0.2)
        time.sleep(window / 3)  # the daemon's first runs, its imports, out of the way
        quiet = (time.time(), time.time() + window)
        time.sleep(window)
        busy = (time.time(), time.time() + window)
        served = crowd(url, clients, window)
    finally:
        daemon.terminate()
        daemon.wait(60)
    catalog = Catalog.open(catalog_url)
    try:
        starts = [(r.slot, r.started_at) for r in catalog.runs("cfg", limit=10_000)]
    finally:
        catalog.close()

    def late(span: tuple[float, float]) -> list[float]:
        return [(started - slot).total_seconds() for slot, started in starts
                if slot is not None and span[0] <= slot.timestamp() < span[1]]  # fmt: skip

    return late(quiet), late(busy), served


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=5).status_code == 200
    except httpx.HTTPError:
        return False  # not listening yet


def crowd(url: str, clients: int, seconds: float) -> int:
    """``clients`` threads reading the status page without pause for ``seconds``: how
    many pages they were served."""
    stop = threading.Event()
    counts = [0] * clients

    def read(n: int) -> None:
        with httpx.Client(base_url=url, timeout=30) as client:
            while not stop.is_set():
                for path in ("/status-page", "/api/v2/summary.json"):
                    if client.get(path).status_code == 200:
                        counts[n] += 1

    readers = [threading.Thread(target=read, args=(n,), daemon=True) for n in range(clients)]
    for reader in readers:
        reader.start()
    time.sleep(seconds)
    stop.set()
    for reader in readers:
        reader.join(30)
    return sum(counts)


if __name__ == "__main__":
    sys.exit(main())
