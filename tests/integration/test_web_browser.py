"""The dashboard in a real browser (Debian's chromium, driven by Playwright): a login and
the overview; an incident declared and a step ticked in the browser, then seen by
`drplan incident status`; a viewer who sees no responder's or commander's buttons, and
whose forged request from the page is refused; the keyboard reaches the content first.
A screenshot of each test's last page is kept in test-artifacts/screenshots/."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from drplan import clock
from tests.fixtures.web import PASSWORD, World


def log_in(page: Any, world: World, name: str) -> None:
    page.goto(f"{world.url}/")
    assert page.url.startswith(f"{world.url}/login?next=")  # sent to the login first
    page.get_by_label("Name").fill(name)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{world.url}/")


def test_a_login_shows_the_overview_of_every_system(page: Any, world: World) -> None:
    world.user("vic", "--access", "viewer")
    page.goto(f"{world.url}/login")
    page.get_by_label("Name").fill("vic")
    page.get_by_label("Password").fill("wrong password, surely")
    page.get_by_role("button", name="Log in").click()
    assert page.get_by_role("alert").inner_text() == "wrong name or password"
    log_in(page, world, "vic")
    assert page.get_by_role("heading", level=1).inner_text() == "Can we recover right now?"
    for system in world.plan.systems:
        row = page.locator(f'tr[data-system="{system}"]')
        assert row.count() == 1
        assert "never drilled" in row.inner_text()
    assert page.get_by_text("vic (viewer)").count() == 1
    assert page.get_by_text("Declare an incident").count() == 0  # a viewer declares nothing


def test_an_incident_declared_and_a_step_ticked_in_the_browser_is_what_the_cli_sees(
    page: Any, world: World
) -> None:
    world.user("ann", "--role", "ic")
    complaints: list[str] = []
    page.on("console", lambda m: complaints.append(m.text) if m.type == "error" else None)
    log_in(page, world, "ann")
    page.get_by_text("Declare an incident").click()
    page.get_by_label("Scenario").select_option("db-loss")
    page.get_by_label("What is known so far").fill("the primary's disk is gone")
    page.get_by_role("button", name="Declare").click()
    page.wait_for_url(f"{world.url}/incidents/INC-*")
    inc = page.url.rsplit("/", 1)[1]
    assert page.get_by_role("heading", level=1).inner_text().startswith(f"{inc}: ")
    assert page.get_by_role("alert", name="Open incidents").count() == 1
    status = json.loads(world.run("incident", "status", inc, "--json").out)
    assert status["scenario"] == "db-loss"
    first = status["phases"][0]["steps"][0]["id"]
    page.get_by_role("button", name=f"Done: step {first}").click()
    page.wait_for_load_state()
    status = json.loads(world.run("incident", "status", inc, "--json").out)
    assert status["phases"][0]["steps"][0]["status"] == "done"
    assert status["phases"][0]["steps"][0]["actor"] == "ic (ann via web)"
    assert page.get_by_role("button", name=f"Done: step {first}").count() == 0
    windows = page.locator("svg.gantt rect")
    assert windows.count() == len(status["phases"])
    assert float(windows.nth(1).get_attribute("x")) > float(windows.nth(0).get_attribute("x"))
    assert complaints == []  # nothing the page asked for was refused (the CSP included)


def test_a_viewer_sees_no_buttons_and_a_forged_request_from_the_page_is_refused(
    page: Any, world: World
) -> None:
    world.user("vic", "--access", "viewer")
    inc = world.declare()
    log_in(page, world, "vic")
    page.goto(f"{world.url}/incidents/{inc}")
    assert page.get_by_role("button", name="Done: step", exact=False).count() == 0
    assert page.get_by_role("button", name="Approve", exact=False).count() == 0
    csrf = page.locator('input[name="csrf"]').first.get_attribute("value")
    answer = page.evaluate(
        """async ([inc, csrf]) => {
            const r = await fetch(`/api/v1/incidents/${inc}/resolve`, {method: "POST",
                headers: {"Content-Type": "application/json", "X-CSRF-Token": csrf},
                body: JSON.stringify({waive: {db: "forged"}})});
            return [r.status, (await r.json()).detail];
        }""",
        [inc, csrf],
    )
    assert answer == [403, "not allowed: it needs commander access; vic has viewer"]
    assert json.loads(world.run("incident", "status", inc, "--json").out)["status"] == "open"


def test_the_keyboard_reaches_the_content_first(page: Any, world: World) -> None:
    world.user("vic", "--access", "viewer")
    log_in(page, world, "vic")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to the content"
    page.set_viewport_size({"width": 390, "height": 844})  # a phone
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, "the page scrolls sideways on a phone"


def test_the_drills_and_reports_pages_read_on_a_phone_and_by_keyboard(
    page: Any, world: World
) -> None:
    """Three runs of the plan's drill, one failed: the trend and the table on the drills
    page, the KPIs on the reports page, neither scrolling sideways on a phone."""
    for n, (rto, passed) in enumerate(((3000.0, 1), (20000.0, 0), (2500.0, 1))):
        started = clock.now() - timedelta(days=20 - n)
        world.catalog.record_drill({"run": f"run-{n}", "drill": "quarterly", "kind": "full_platform",
                                    "started_at": started, "ended_at": started + timedelta(seconds=rto),
                                    "passed": passed, "rto_seconds": rto, "rpo_seconds": 20.0,
                                    "rto_met": int(rto < 14400), "rpo_met": 1, "integrity": passed,
                                    "summary": "" if passed else "smoke check failed"})  # fmt: skip
    world.user("vic", "--access", "viewer")
    log_in(page, world, "vic")
    page.get_by_role("link", name="Reports").click()
    page.wait_for_url(f"{world.url}/reports")
    assert page.get_by_role("heading", level=1).inner_text() == "KPIs against the success criteria"
    row = page.locator('table[data-window="30d"] tr[data-group="all"]')
    assert row.locator("td").first.inner_text() == "3"
    page.get_by_role("link", name="Drills").click()
    page.wait_for_url(f"{world.url}/drills")
    trend = page.get_by_role("img", name="Measured RTO of the last 3 run(s)", exact=False)
    assert trend.count() == 1
    assert page.locator('tr[data-run="run-1"]').inner_text().count("smoke check failed") == 1
    page.set_viewport_size({"width": 390, "height": 844})  # a phone
    for path in ("/drills", "/reports"):
        page.goto(f"{world.url}{path}")
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"{path} scrolls sideways on a phone"
    page.set_viewport_size({"width": 1280, "height": 800})  # the screenshot: a desk's
    page.goto(f"{world.url}/drills")
