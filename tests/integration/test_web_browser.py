"""The dashboard in a real browser (Debian's chromium, driven by Playwright): a login and
the overview; an incident declared and a step ticked in the browser, then seen by
`drplan incident status`; a viewer who sees no responder's or commander's buttons, and
whose forged request from the page is refused; the keyboard reaches the content first.
A screenshot of each test's last page is kept in test-artifacts/screenshots/."""

from __future__ import annotations

import json
from typing import Any

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
