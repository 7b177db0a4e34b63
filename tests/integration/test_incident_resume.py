"""A data-center failure takes the site an incident was declared at: its journal, its
catalog and the primary location are gone. The timeline's copies in the off-site
location let a responder at the recovery site take the incident over (`drplan incident
resume --from`), the driver that died mid-step included, and go on."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from drplan.storage.local import LocalStorage
from testbed.plans import clean_plan
from tests.conftest import Result, minutes_ago, wait_until
from tests.integration.conftest import init_repo

Run = Callable[..., Result]
SINCE = minutes_ago(20)


@pytest.fixture
def sites(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, password: str) -> dict[str, Path]:
    """A plan with a primary location and an off-site one, both local directories, and
    the state of the site the incident is declared at."""
    raw = clean_plan()
    primary, offsite = tmp_path / "primary", tmp_path / "offsite"
    for place in (primary, offsite):
        init_repo(LocalStorage(place))
    raw["locations"] = {
        "local": {"role": "primary", "kind": "local", "path": str(primary)},
        "offsite": {"role": "secondary", "kind": "local", "path": str(offsite)},
    }
    raw["data_classes"]["database"]["locations"] = ["local", "offsite"]
    for job in raw["jobs"].values():
        job["locations"] = ["local", "offsite"]
    raw["scenarios"]["db-loss"]["recover_from"] = ["offsite"]
    plan = tmp_path / "plan.yaml"
    plan.write_text(yaml.safe_dump(raw))
    monkeypatch.setenv("DRPLAN_PLAN", str(plan))
    monkeypatch.setenv("DRPLAN_STATE_DIR", str(tmp_path / "site-a"))
    return {"plan": plan, "primary": primary, "offsite": offsite, "site_a": tmp_path / "site-a",
            "site_b": tmp_path / "site-b"}  # fmt: skip


def steps(run: Run, inc: str) -> dict[str, dict[str, Any]]:
    status = json.loads(run("incident", "status", inc, "--json").out)
    return {s["id"]: s for p in status["phases"] for s in p["steps"]}


def test_the_recovery_site_takes_the_incident_over_from_the_offsite_copy(
    run: Run, sites: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    started, fast = tmp_path / "restore-started", tmp_path / "at-the-recovery-site"
    raw = yaml.safe_load(sites["plan"].read_text())
    raw["runbooks"]["rb"]["phases"][1]["steps"][0].update({
        "run": f"touch {started}; test -e {fast} || sleep 30", "rerun": "safe",
        "unattended": True,
    })  # fmt: skip
    sites["plan"].write_text(yaml.safe_dump(raw))
    done = run("incident", "declare", "db-loss", "--since", SINCE, "--json")
    assert done.code == 0, done.err
    inc = json.loads(done.out)["id"]
    copies = sorted(p.name for p in (sites["offsite"] / "incidents" / inc).iterdir())
    assert copies == ["00000001"]  # the declaration, off site at once
    assert not (sites["primary"] / "incidents").exists()  # the primary is on site
    assert run("incident", "step", inc, "1.1", "done").code == 0  # phase 1 settled: copied
    assert (
        sorted(p.name for p in (sites["offsite"] / "incidents" / inc).iterdir())[-1] == "00000002"
    )

    # The driver is killed with kill -9 halfway through the restore step...
    driver = subprocess.Popen([sys.executable, "-m", "drplan", "incident", "run", inc],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)  # fmt: skip
    wait_until(started.exists, "the restore step to start")
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait()
    running = steps(run, inc)["2.1"]["running"]
    os.kill(running["pid"], signal.SIGKILL)  # ... and the data center with it:
    shutil.rmtree(sites["site_a"])  # its journal and catalog
    shutil.rmtree(sites["primary"])  # and the primary location
    started.unlink()
    fast.touch()  # the step is quick at the recovery site

    monkeypatch.setenv("DRPLAN_STATE_DIR", str(sites["site_b"]))
    assert run("incident", "status", inc).code == 2  # unknown at the recovery site
    taken = run("incident", "resume", inc, "--from", "offsite")
    assert taken.code == 0, taken.err
    assert f"{inc}: taken over from offsite (2 entries" in taken.out
    here = steps(run, inc)
    assert here["1.1"]["status"] == "done"
    assert here["2.1"]["running"] is None  # its start never reached the copy: it starts anew
    done = run("incident", "run", inc)
    assert done.code == 0, done.err
    assert started.exists()
    assert steps(run, inc)["2.1"]["status"] == "done"
    assert run("incident", "verify", inc).code == 0
    lines = run("incident", "timeline", inc).out
    assert "taken over from the copy in offsite (2 entries)" in lines


def test_a_copy_that_is_not_there_or_does_not_verify_is_refused(
    run: Run, sites: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    inc = json.loads(run("incident", "declare", "db-loss", "--since", SINCE, "--json").out)["id"]
    assert run("incident", "step", inc, "1.1", "done", "--note", "contained").code == 0
    missing = run("incident", "resume", "INC-ZZZZ", "--from", "offsite")
    assert missing.code == 2
    assert "offsite holds no copy of INC-ZZZZ's timeline" in missing.err
    # This site went on while the copy stayed behind: a copy is never taken over it.
    run("incident", "note", inc, "after the copy")
    monkeypatch.setenv("DRPLAN_STATE_DIR", str(sites["site_b"]))
    assert run("incident", "resume", inc, "--from", "offsite").code == 0
    assert run("incident", "resume", inc, "--from", "offsite").code == 0  # again: a no-op
    monkeypatch.setenv("DRPLAN_STATE_DIR", str(sites["site_a"]))
    run("incident", "note", inc, "more here")
    diverged = run("incident", "resume", inc, "--from", "offsite")
    assert diverged.code == 13
    assert "went on differently from the copy in offsite" in diverged.err
