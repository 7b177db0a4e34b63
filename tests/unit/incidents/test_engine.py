"""The resident driver of ``drplan serve``: an approved step starts the moment it is
approved, one incident's long step holds up no other, and a step still running when the
driver stops goes on and is never re-run silently."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from drplan.catalog.paths import default_url
from drplan.catalog.store import Catalog
from drplan.incidents.engine import Engine
from drplan.incidents.journal import Journal
from drplan.incidents.service import Incidents, journal_dir
from drplan.liveness import alive
from tests.conftest import wait_until

START_WITHIN = 2.0  # seconds from an approval to its step's start (it looks every 0.2 s)


@pytest.fixture
def engine(incident: Any) -> Iterator[Engine]:
    stopping = threading.Event()

    def service() -> Incidents:
        return Incidents(Journal(journal_dir()), lambda: Catalog.open(default_url()))

    running = Engine(journal_dir(), service, stopping, pass_every=60.0)
    running.start()
    yield running
    stopping.set()
    running.stop()


def _at(incident: Any, inc: str, kind: str) -> datetime:
    import json  # noqa: PLC0415

    events = [json.loads(line) for line in incident.cli("timeline", inc, "--json").out.splitlines()]
    (event,) = [e for e in events if e["kind"] == kind]
    return datetime.fromisoformat(event["at"].replace("Z", "+00:00"))


def test_an_approved_step_starts_the_moment_it_is_approved(
    incident: Any, engine: Engine, tmp_path: Path
) -> None:
    ran = tmp_path / "ran"
    inc = incident.declare({"title": "Switch over", "run": f"echo $DRPLAN_STEP > {ran}",
                            "approve": "ic"})  # fmt: skip
    wait_until(lambda: not engine.driving, "the engine to stop at the approval")
    assert incident.steps(inc)["1.1"]["status"] == "pending"
    assert not ran.exists()  # nothing runs before its approval

    assert incident.cli("approve", inc, "1.1", "--as", "ic").code == 0
    wait_until(lambda: incident.steps(inc)["1.1"]["status"] == "done", "the step done", 30)
    assert ran.read_text() == "1.1\n"
    waited = (_at(incident, inc, "step_started") - _at(incident, inc, "approved")).total_seconds()
    assert 0 <= waited < START_WITHIN


def test_one_incidents_long_step_holds_up_no_other_incident(
    incident: Any, engine: Engine, tmp_path: Path
) -> None:
    long = incident.declare({"title": "Long restore", "run": "sleep 60"})
    wait_until(lambda: incident.steps(long)["1.1"]["running"] is not None, "the long step")
    quick = incident.declare({"title": "Quick", "run": f"touch {tmp_path / 'quick'}"})
    wait_until(lambda: incident.steps(quick)["1.1"]["status"] == "done", "the other's step", 30)
    assert incident.steps(long)["1.1"]["status"] == "pending"
    assert incident.steps(long)["1.1"]["running"] is not None
    wait_until(lambda: engine.driving == [long], "the other's drive to end", 30)

    # The driver stops (serve does): the step goes on, and is never re-run silently.
    engine.stopping.set()
    engine.stop()
    pid = int(incident.steps(long)["1.1"]["running"]["pid"])
    assert alive(pid)
    os.killpg(pid, signal.SIGKILL)
    wait_until(lambda: not alive(pid), "the step gone")
    halted = incident.cli("run", long)
    assert halted.code == 1
    assert "was interrupted" in halted.err
    assert incident.steps(long)["1.1"]["interrupted"] is True
