"""`make demo` runs examples/smartwatts/demo.sh: it must succeed and show what it promises,
down to the live part: `drplan serve` on an embedded PostgreSQL with meter readings
arriving, for DRPLAN_DEMO_SECONDS instead of until Ctrl-C."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.conftest import ROOT


def test_demo_script_validates_lints_and_shows_the_plan_then_serves_it_live() -> None:
    env = dict(
        os.environ,
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        COLUMNS="160",
        DRPLAN_DEMO_SECONDS="20",
    )
    for name in ("DRPLAN_PLAN", "DRPLAN_CATALOG", "DRPLAN_STATE_DIR", "DRPLAN_PASSWORD"):
        env.pop(name, None)
    proc = subprocess.run(
        ["bash", str(ROOT / "examples" / "smartwatts" / "demo.sh")],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "valid plan 'SmartWatts Energy Monitoring Platform'" in out
    assert "lint exit code 6" in out
    assert "Systems (recovery order)" in out
    assert '"critical": 14400' in out
    # The live round trip: backup, an incremental backup that stores little, restore, check.
    assert "0 new, 1 changed, 201 unchanged files" in out
    assert "M " in out
    assert "meter-7.conf" in out
    assert "restored tree is identical to the source" in out
    assert "read back" in out
    assert ": no errors" in out
    assert "created as a replica" in out
    assert "restored from the replica: identical to the source" in out
    assert "demo-repository-password" not in out
    assert "\x1b[" not in out  # no escape codes when not on a terminal
    # The demo's placeholder secrets are set, and never printed.
    for value in ("demo-not-a-secret", "127.0.0.1:9/demo-slack"):
        assert value not in out
    # Live: the embedded server with SmartWatts data, the daemon, its status, where to look.
    assert "PostgreSQL 18" in out
    assert "2000 meters, 336,000 readings" in out
    assert "valid plan 'SmartWatts live demo'" in out
    assert "the WAL stream is shipping" in out
    # The drill, a newcomer's first look at measured recovery: RTO by phase, RPO, checks.
    assert "drill monthly-database (database): passed" in out
    for phase in ("fetch", "verify", "start", "replay", "validate"):
        assert f"│ {phase} " in out
    assert "against an objective of 14400s: met" in out  # RTO, critical tier
    assert "against an objective of 60s: met" in out  # RPO of the database class
    assert "table public.readings" in out
    assert "same checksum as the source" in out
    assert "WAL of smartwatts-db archived up to then" in out
    # The database-corruption procedure rehearsed: the RTO clock, the gate, the restore
    # into a stand-in, the clock stopped by the checks, the review; production untouched.
    assert "REHEARSAL  Database Corruption (database-corruption), tier 1, open" in out
    assert "on track: median" in out  # predicted from the drill just run ...
    assert "over 1 drills, scaled to today's sizes" in out  # ... to today's data and WAL
    assert "): step 2.1 approved" in out
    assert "drplan: step 2.1 started (attempt 1, process" in out  # serve ran it, at once
    assert "smartwatts-db recovered and checked: RTO" in out
    assert "drplan: step 3.1 done" in out
    assert "rehearsal recorded as drill rehearsal-database-corruption (run INC-" in out
    assert "): passed" in out
    assert "# Post-incident review: INC-" in out
    assert "| smartwatts-db |" in out
    assert "(met)" in out
    assert "Root cause analysis: a rehearsal: no cause" in out
    assert "/metrics" in out
    assert "the dashboard       http://127.0.0.1:" in out
    assert "the status page     http://127.0.0.1:" in out
    assert "log in as           demo, password " in out  # made for this run
    assert "a read token        drplan_" in out
    assert "stop with Ctrl-C" in out
    beats = [line for line in out.splitlines() if "database RPO exposure" in line]
    assert beats, out
    assert all("(objective 60s, ok)" in beat for beat in beats), beats
    assert "readings +" in beats[0]
    assert "stopped. Everything the demo made is in" in out
    live = ROOT / ".demo" / "live"
    # Everything under .demo/, the server's data too, and nothing left running.
    assert f"data directory {live / 'postgres' / 'data'}" in out
    assert not (live / "postgres" / "data" / "postmaster.pid").exists()
    assert not (Path(tempfile.gettempdir()) / "drplan-demo-postgres").exists()
    db_password = next(
        line.split("=", 1)[1]
        for line in (live / "env").read_text().splitlines()
        if line.startswith("export SMARTWATTS_DB_PASSWORD=")
    )
    log = (live / "serve.log").read_text()
    for text in (out, log):
        assert db_password not in text
        assert "demo-repository-password" not in text
    assert "job db-wal: started" in log
    assert "stopped;" in log  # the stream shipped what it had when the daemon stopped
