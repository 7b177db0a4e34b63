"""The web server's API over real HTTP on loopback (uvicorn, as `drplan web` runs it):
nothing but the public routes answers without credentials (every route of the OpenAPI
document is tried, so a new one cannot be forgotten); tokens are refused beyond their
scope, their user's access, their expiry and their revocation; a session's changes need
its CSRF token; a login makes a new session; failed logins are throttled and audited;
errors are problem documents; reads carry ETags and lists paginate."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import httpx
import pytest

from drplan import clock
from drplan.catalog.store import Catalog
from drplan.web.app import PUBLIC_PATHS, build
from drplan.web.context import WebContext
from drplan.web.server import WebServer
from tests.conftest import minutes_ago
from tests.fixtures.web import PASSWORD, SECRET, World


def routes(url: str) -> list[tuple[str, str]]:
    """Every (method, path) of the OpenAPI document, path parameters filled in."""
    document = httpx.get(f"{url}/api/v1/openapi.json", timeout=30).json()
    return [(method.upper(), re.sub(r"\{[^}]+\}", "INC-AAAA", path))
            for path, item in document["paths"].items() for method in item]  # fmt: skip


def test_nothing_but_the_public_routes_answers_without_credentials(world: World) -> None:
    found = routes(world.url)
    assert len(found) >= 8
    anonymous = world.client()
    for method, path in found:
        response = anonymous.request(method, path, json={})
        if path in PUBLIC_PATHS:
            assert response.status_code != 401, (method, path)
            continue
        assert response.status_code == 401, (method, path, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        assert response.headers["www-authenticate"] == 'Bearer realm="drplan"'
        assert response.json()["status"] == 401
    forged = world.client("drplan_000000000000_forged-secret")
    for method, path in found:
        if path not in PUBLIC_PATHS:
            assert forged.request(method, path, json={}).status_code == 401, (method, path)


def test_a_token_is_refused_beyond_its_scope_its_users_access_its_expiry_and_revocation(
    world: World,
) -> None:
    world.user("ann", "--role", "ic")
    world.user("vic", "--access", "viewer")
    inc = world.declare()
    reader = world.client(world.token("ann", "read"))
    assert reader.get("/api/v1/me").json()["scopes"] == ["read"]
    assert reader.get(f"/api/v1/incidents/{inc}").json()["id"] == inc
    refused = reader.post(f"/api/v1/incidents/{inc}/notes", json={"text": "x"})
    assert refused.status_code == 403
    assert refused.json()["detail"] == ("not allowed: the token's scopes (read) do not include"
                                        " incidents:write")  # fmt: skip
    viewer = world.client(world.token("vic", "incidents:write"))
    refused = viewer.post(f"/api/v1/incidents/{inc}/notes", json={"text": "x"})
    assert refused.status_code == 403
    assert refused.json()["detail"] == "not allowed: it needs responder access; vic has viewer"
    writer_token = world.token("ann", "incidents:write")
    writer = world.client(writer_token)
    added = writer.post(
        f"/api/v1/incidents/{inc}/notes", json={"text": "replica lag was 4 s", "role": "ic"}
    )
    assert added.status_code == 200, added.text
    assert added.json()["said"] == [f"{inc}: noted"]
    assert writer.post(f"/api/v1/incidents/{inc}/notes",
                       json={"text": "x", "role": "dba"}).status_code == 403  # not hers  # fmt: skip
    assert writer.get("/api/v1/audit").status_code == 403  # admin only
    token_id = writer_token.split("_")[1]
    assert world.run("token", "revoke", token_id).code == 0
    assert writer.get("/api/v1/me").status_code == 401
    catalog = Catalog.open(world.catalog_url)
    try:
        from drplan.web.accounts import Accounts  # noqa: PLC0415

        secret, _ = Accounts(catalog).create_token("ann", "old", ["read"], timedelta(seconds=-1),
                                                   clock.now())  # fmt: skip
    finally:
        catalog.close()
    assert world.client(secret).get("/api/v1/me").status_code == 401  # expired
    (noted,) = [json.loads(line) for line in world.run("incident", "timeline", inc, "--json").out
                .splitlines() if "replica lag was 4 s" in line]  # fmt: skip
    assert noted["actor"] == "ic (ann via web)"


def test_a_sessions_changes_need_its_csrf_token_and_a_login_makes_a_new_session(
    world: World,
) -> None:
    world.user("ann", "--role", "ic")
    inc = world.declare()
    browser = world.client()
    first = browser.post("/api/v1/login", json={"name": "ann", "password": PASSWORD})
    assert first.status_code == 200, first.text
    cookie = first.cookies["drplan_session"]
    assert "httponly" in first.headers["set-cookie"].lower()
    assert "samesite=lax" in first.headers["set-cookie"].lower()
    csrf = first.json()["csrf"]
    assert browser.get("/api/v1/me").json()["via"] == "session"
    forged = browser.post(f"/api/v1/incidents/{inc}/notes", json={"text": "from another site"})
    assert forged.status_code == 403
    assert "CSRF" in forged.json()["detail"]
    wrong = browser.post(f"/api/v1/incidents/{inc}/notes", json={"text": "x"},
                         headers={"X-CSRF-Token": csrf[:-1] + "x"})  # fmt: skip
    assert wrong.status_code == 403
    done = browser.post(f"/api/v1/incidents/{inc}/notes", json={"text": "checked the replica"},
                        headers={"X-CSRF-Token": csrf})  # fmt: skip
    assert done.status_code == 200, done.text
    again = browser.post("/api/v1/login", json={"name": "ann", "password": PASSWORD})
    assert again.cookies["drplan_session"] != cookie
    stale = world.client()
    stale.cookies.set("drplan_session", cookie)
    assert stale.get("/api/v1/me").status_code == 401  # the session before it is over
    assert (
        browser.post("/api/v1/logout", headers={"X-CSRF-Token": again.json()["csrf"]}).status_code
        == 204
    )
    assert browser.get("/api/v1/me").status_code == 401
    actions = [
        json.loads(line)["kind"] for line in world.run("audit", "list", "--json").out.splitlines()
    ]
    assert actions[-4:] == ["login", "incident.note", "login", "logout"]


def test_failed_logins_are_throttled_per_account_and_audited(world: World) -> None:
    world.user("ann")
    client = world.client()
    for _ in range(3):
        assert (
            client.post(
                "/api/v1/login", json={"name": "ann", "password": "wrong password!"}
            ).status_code
            == 401
        )
    held = client.post("/api/v1/login", json={"name": "ann", "password": PASSWORD})
    assert held.status_code == 429  # even the right password waits
    assert int(held.headers["retry-after"]) > 0
    unknown = client.post("/api/v1/login", json={"name": "nobody", "password": PASSWORD})
    assert unknown.status_code == 429  # the address is held too
    failed = [json.loads(line) for line in world.run("audit", "list", "--json").out.splitlines()
              if '"login.failed"' in line]  # fmt: skip
    assert len(failed) == 3
    assert {e["data"]["source"] for e in failed} == {"127.0.0.1"}
    assert PASSWORD not in world.run("audit", "list", "--json").out


def test_reads_carry_etags_lists_paginate_and_errors_are_problem_documents(
    world: World,
) -> None:
    world.user("ann", "--role", "ic")
    api = world.client(world.token("ann", "read"))
    plan = api.get("/api/v1/plan")
    assert plan.status_code == 200
    assert SECRET not in plan.text  # the plan holds the reference, never the value
    assert plan.json()["systems"]["db"]["password"] == "${TEST_DB_PASSWORD}"
    assert (
        api.get("/api/v1/plan", headers={"If-None-Match": plan.headers["etag"]}).status_code == 304
    )
    for _ in range(3):
        world.declare()
    first = api.get("/api/v1/incidents", params={"limit": 2})
    assert (first.json()["total"], len(first.json()["items"])) == (3, 2)
    following = re.match(r'<([^>]+)>; rel="next"', first.headers["link"])
    assert following is not None
    rest = api.get(following.group(1))
    assert len(rest.json()["items"]) == 1
    assert "link" not in rest.headers
    ids = [i["id"] for i in first.json()["items"] + rest.json()["items"]]
    assert len(set(ids)) == 3
    missing = api.get("/api/v1/incidents/INC-ZZZZ")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    assert missing.json()["detail"] == "no incident INC-ZZZZ here or in the catalog"
    bad = api.get("/api/v1/runs", params={"limit": 0})
    assert bad.status_code == 422
    assert bad.json()["title"] == "Invalid request"


def test_the_server_refuses_a_port_in_use_in_one_line(world: World) -> None:
    from drplan.errors import UsageError  # noqa: PLC0415

    with pytest.raises(
        UsageError, match=r"cannot listen on 127\.0\.0\.1:\d+: Address already in use"
    ):
        WebServer(build(WebContext(lambda: world.plan, str(world.plan_path), world.catalog, world.catalog_url)),
                  world.server.address, world.plan.web)  # fmt: skip


def test_an_incident_is_run_through_the_api_as_the_cli_runs_it(world: World) -> None:
    """Declared by a commander's token, a step ticked from a session, a change refused to
    a responder and to a role not held, a resolution the engine refuses and then takes;
    the CLI sees each, and the audit trail holds each with who it was."""
    world.user("ann", "--role", "ic")
    world.user("dee", "--role", "dba")
    token = world.token("ann", "incidents:write")
    commander = world.client(token)
    declared = commander.post("/api/v1/incidents", json={
        "scenario": "db-loss", "systems": ["db"], "since": minutes_ago(5),
        "note": "primary gone", "role": "ic"})  # fmt: skip
    assert declared.status_code == 201, declared.text
    inc = declared.json()["incident"]["id"]
    status = json.loads(world.run("incident", "status", inc, "--json").out)
    assert status["scenario"] == "db-loss"
    first = status["phases"][0]["steps"][0]["id"]

    browser = world.client()
    csrf = browser.post("/api/v1/login", json={"name": "dee", "password": PASSWORD}).json()["csrf"]
    ticked = browser.post(f"/api/v1/incidents/{inc}/steps/{first}",
                          json={"outcome": "done", "note": "seen"},
                          headers={"X-CSRF-Token": csrf})  # fmt: skip
    assert ticked.status_code == 200, ticked.text
    assert ticked.json()["said"][0].startswith(f"{inc}: step {first}")
    again = json.loads(world.run("incident", "status", inc, "--json").out)
    assert again["phases"][0]["steps"][0]["status"] == "done"
    refused = browser.post(f"/api/v1/incidents/{inc}/resolve", json={},
                           headers={"X-CSRF-Token": csrf})  # fmt: skip
    assert refused.status_code == 403
    assert refused.json()["detail"] == "not allowed: it needs commander access; dee has responder"
    wrong_role = commander.post(f"/api/v1/incidents/{inc}/ack", json={"role": "dba"})
    assert wrong_role.status_code == 403
    unresolved = commander.post(f"/api/v1/incidents/{inc}/resolve", json={"role": "ic"})
    assert unresolved.status_code == 409  # db is not recovered: the engine says so
    assert "db" in unresolved.json()["detail"]
    resolved = commander.post(f"/api/v1/incidents/{inc}/resolve",
                              json={"role": "ic", "waive": {"db": "restored by hand"}})  # fmt: skip
    assert resolved.status_code == 200, resolved.text
    assert resolved.json()["incident"]["status"] == "resolved"
    assert json.loads(world.run("incident", "status", inc, "--json").out)["status"] == "resolved"
    via = f"ann (token {token.split('_')[1]})"
    trail = [json.loads(line) for line in world.run("audit", "list", "--json").out.splitlines()]
    assert [(e["kind"], e["actor"]) for e in trail if e["kind"].startswith("incident.")] == [
        ("incident.declare", via), ("incident.step", "dee (session)"),
        ("incident.resolve", via)]  # fmt: skip
    assert world.run("audit", "verify").code == 0
    # The review, as `drplan incident report` makes it, in each format.
    review = commander.get(f"/api/v1/incidents/{inc}/report").json()
    shown = json.loads(world.run("incident", "report", inc, "--format", "json").out)
    assert review["incident"] == shown["incident"]
    markdown = commander.get(f"/api/v1/incidents/{inc}/report", params={"format": "md"})
    assert markdown.headers["content-disposition"] == f'attachment; filename="{inc}-review.md"'
    assert markdown.text.startswith("# ")
    assert (
        commander.get(f"/api/v1/incidents/{inc}/report", params={"format": "pdf"}).status_code
        == 422
    )
