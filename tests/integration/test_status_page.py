"""The public status page on the web server: readable without a login, in Statuspage's
JSON too; a component's state follows the open incidents on its systems by tier, and
goes back to operational once they are recovered or resolved; customers read when the
service is expected back and which data to send again, never the incident's insides; a
rehearsal never shows."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from drplan import clock
from tests.conftest import Result, minutes_ago, wait_until
from tests.fixtures.web import World, _world

STATUS_PAGE = {
    "title": "Test status",
    "groups": {"customer": {"title": "Customer services"}},
    "components": {
        "api": {"title": "Meter ingestion API", "systems": ["db"], "group": "customer"},
        "site": {"title": "Customer dashboard", "systems": ["web"], "group": "customer"},
    },
}


@pytest.fixture
def page_world(run: Callable[..., Result], monkeypatch: pytest.MonkeyPatch,
               tmp_path: Path) -> Iterator[World]:  # fmt: skip
    yield from _world(run, monkeypatch, tmp_path, None, status_page=STATUS_PAGE)


def summary(world: World) -> dict[str, Any]:
    answer = httpx.get(f"{world.url}/api/v2/summary.json", timeout=30)  # no credentials
    assert answer.status_code == 200, answer.text
    found: dict[str, Any] = answer.json()
    return found


def states(world: World) -> dict[str, str]:
    return {c["id"]: c["status"] for c in summary(world)["components"] if not c["group"]}


def test_with_no_incident_everything_is_operational_and_public(page_world: World) -> None:
    found = summary(page_world)
    assert found["status"] == {"indicator": "none", "description": "All Systems Operational"}
    assert found["page"]["name"] == "Test status"
    assert states(page_world) == {"api": "operational", "site": "operational"}
    (group,) = [c for c in found["components"] if c["group"]]
    assert (group["id"], group["components"], group["status"]) == ("customer", ["api", "site"],
                                                                    "operational")  # fmt: skip
    assert found["incidents"] == []
    page = httpx.get(f"{page_world.url}/status-page", timeout=30)
    assert page.status_code == 200
    assert "All Systems Operational" in page.text
    assert 'data-component="api"' in page.text


def test_an_incident_takes_its_components_down_by_tier_and_says_only_what_customers_need(
    page_world: World,
) -> None:
    done = page_world.run("--plan", str(page_world.plan_path), "incident", "declare",
                          "db-loss", "--systems", "db", "--since", minutes_ago(10), "--json")  # fmt: skip
    assert done.code == 0, done.err
    inc = json.loads(done.out)["id"]
    wait_until(lambda: states(page_world) == {"api": "major_outage", "site": "operational"},
               "the API's component to be down")  # fmt: skip
    found = summary(page_world)
    assert found["status"]["indicator"] == "critical"  # a tier 1 incident
    (incident,) = found["incidents"]
    assert incident | {"eta": None, "data_loss": None} == incident | {
        "eta": None,
        "data_loss": None,
    }
    assert (incident["id"], incident["name"], incident["status"], incident["impact"]) == (
        inc,
        "Service disruption: Meter ingestion API",
        "investigating",
        "critical",
    )
    deadline = json.loads(page_world.run("incident", "status", inc, "--json").out)["clock"][
        "systems"
    ][0]["deadline"]
    assert incident["eta"] == deadline
    assert incident["data_loss"].startswith("Data sent since ")
    assert incident["data_loss"].endswith(" UTC may have to be sent again")
    page = httpx.get(f"{page_world.url}/status-page", timeout=30).text
    assert "Major System Outage" in page
    assert "We expect the service back by" in page
    for inside in ("Database loss", "db-loss", "Restore db", "Incident Commander"):
        assert inside not in page  # the scenario, the runbook, who acts: not for customers
    waived = page_world.run("incident", "resolve", inc, "--waive", "db=restored by hand")
    assert waived.code == 0, waived.err
    wait_until(lambda: states(page_world)["api"] == "operational", "the API to be back")
    assert summary(page_world)["incidents"] == []
    past = httpx.get(f"{page_world.url}/api/v2/incidents.json", timeout=30).json()["incidents"]
    assert [(i["id"], i["status"]) for i in past] == [(inc, "resolved")]
    assert past[0]["resolved_at"] is not None


def test_a_rehearsal_never_shows(page_world: World) -> None:
    done = page_world.run("--plan", str(page_world.plan_path), "incident", "declare",
                          "db-loss", "--systems", "db", "--rehearsal")  # fmt: skip
    assert done.code == 0, done.err
    incidents = httpx.get(f"{page_world.url}/api/v2/incidents.json", timeout=30).json()
    assert incidents["incidents"] == []
    assert states(page_world) == {"api": "operational", "site": "operational"}


def test_the_status_page_in_the_browser_shows_the_state_and_the_update(
    run: Callable[..., Result], monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
    receiver: Any, page: Any,
) -> None:  # fmt: skip
    """Customers told through a webhook (a local receiver): the message is the page's
    update, under the component's state, in a real browser."""
    monkeypatch.setenv("HOOK_URL", f"{receiver.url}/webhook")
    told = {"primary": "hook", "audiences": {"customers": {"channels": ["hook"]}}}
    made = _world(run, monkeypatch, tmp_path, None,
                  channels={"hook": {"kind": "webhook", "url": "${HOOK_URL}"}},
                  communication=told, status_page={**STATUS_PAGE, "audience": "customers"})  # fmt: skip
    world = next(made)  # the generator held: it closes the world when closed
    try:
        done = world.run("--plan", str(world.plan_path), "incident", "declare", "db-loss",
                         "--systems", "db", "--json")  # fmt: skip
        inc = json.loads(done.out)["id"]
        said = "Readings are being restored; nothing sent since 10:00 needs resending yet"
        assert world.run("incident", "notify", inc, "--audience", "customers",
                         "--message", said).code == 0  # fmt: skip
        wait_until(lambda: summary(world)["incidents"][0]["incident_updates"], "the update")
        page.goto(f"{world.url}/status-page")
        assert page.get_by_role("status").inner_text() == "Major System Outage"
        row = page.locator('tr[data-component="api"]')
        assert row.locator("td").first.inner_text() == "Major outage"
        assert row.locator(".days span").last.get_attribute("class") == "major_outage"  # today
        assert page.get_by_text(said).count() == 1
        for inside in ("Database loss", "deadline", "Respond"):  # the template, the phase
            assert inside not in page.content()
        assert page.locator('tr[data-component="site"] td').first.inner_text() == "Operational"
    finally:
        made.close()


def test_each_component_shows_its_90_days_and_the_history_is_an_atom_feed(
    page_world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A tier 1 incident two days ago, three hours until it was resolved: that day is a
    major outage of the API, 180 minutes down, the uptime over 90 days is what is left,
    the dashboard's component never went down; the feed has the incident's updates."""
    start = datetime.now(UTC).replace(hour=6, minute=0, second=0, microsecond=0) - timedelta(days=2)
    monkeypatch.setenv("DRPLAN_NOW", clock.rfc3339(start + timedelta(minutes=1)))
    done = page_world.run("--plan", str(page_world.plan_path), "incident", "declare",
                          "db-loss", "--systems", "db", "--since", clock.rfc3339(start), "--json")  # fmt: skip
    assert done.code == 0, done.err
    inc = json.loads(done.out)["id"]
    monkeypatch.setenv("DRPLAN_NOW", clock.rfc3339(start + timedelta(hours=3)))
    assert page_world.run("incident", "resolve", inc, "--waive", "db=by hand").code == 0
    monkeypatch.delenv("DRPLAN_NOW")

    page = httpx.get(f"{page_world.url}/status-page", timeout=30)
    assert page.status_code == 200
    rows = {row.split('"')[0]: row for row in page.text.split('data-component="')[1:]}
    day = start.date().isoformat()
    assert f'title="{day}: major outage, 180 min down"' in rows["api"]
    assert rows["api"].count('class="major_outage"') == 1
    assert rows["api"].count('class="operational"') == 89
    assert 'class="major_outage"' not in rows["site"]
    now = datetime.now(UTC)
    window = now - datetime.combine(now.date() - timedelta(days=89), datetime.min.time(), UTC)
    expected = 100 * (1 - 3 * 3600 / window.total_seconds())
    shown = float(rows["api"].split('<small class="uptime">')[1].split("%")[0])
    assert abs(shown - expected) <= 0.01
    assert "100.00% uptime" in rows["site"]

    feed = httpx.get(f"{page_world.url}/status-page/history.atom", timeout=30)
    assert feed.status_code == 200
    assert feed.headers["content-type"] == "application/atom+xml"
    root = ET.fromstring(feed.text)
    atom = "{http://www.w3.org/2005/Atom}"
    titles = [e.findtext(f"{atom}title") for e in root.findall(f"{atom}entry")]
    assert titles == ["Service disruption: Meter ingestion API: Resolved"]
    assert 'type="application/atom+xml"' in page.text  # the page names its feed


def test_the_engine_updates_the_page_at_each_phase_change_in_public_words(
    run: Callable[..., Result], monkeypatch: pytest.MonkeyPatch, tmp_path: Path, receiver: Any,
) -> None:  # fmt: skip
    """Phase 1 settled: the customers are told in drplan's public wording, and the page
    shows it whole (the services, when they are expected back, the data to send again),
    as `identified`; nothing of the runbook or who acts."""
    monkeypatch.setenv("HOOK_URL", f"{receiver.url}/webhook")
    told = {"primary": "hook", "audiences": {"customers": {"channels": ["hook"]}}}
    made = _world(run, monkeypatch, tmp_path, None,
                  channels={"hook": {"kind": "webhook", "url": "${HOOK_URL}"}},
                  communication=told, status_page={**STATUS_PAGE, "audience": "customers"})  # fmt: skip
    world = next(made)
    try:
        done = world.run("--plan", str(world.plan_path), "incident", "declare", "db-loss",
                         "--systems", "db", "--since", minutes_ago(10), "--json")  # fmt: skip
        inc = json.loads(done.out)["id"]
        assert world.run("incident", "step", inc, "1.1", "done", "--as", "ic").code == 0
        wait_until(lambda: summary(world)["incidents"][0]["incident_updates"], "the update")
        (update,) = summary(world)["incidents"][0]["incident_updates"]
        assert update["status"] == "identified"
        assert update["body"].startswith("We are restoring Meter ingestion API, expected back by ")
        assert update["body"].endswith(" UTC may have to be sent again.")
        for inside in (inc, "Restore db", "ic", "phase", "drplan"):
            assert inside not in update["body"]
    finally:
        made.close()
