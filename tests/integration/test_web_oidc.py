"""Login through a real OpenID Connect provider run by the tests (oidc-provider-mock, on
loopback): the code flow with PKCE and a nonce, the ID token checked, the person's roles
and access from the plan by their e-mail and groups; a person the plan gives nothing is
refused; a callback that did not start here is refused; each is audited. And the same in
the browser."""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import quote

import httpx

from tests.fixtures.web import World


def sso_login(world: World, provider: str, sub: str, claims: dict[str, Any]) -> httpx.Client:
    """A client that went through the provider's login as ``sub`` with ``claims``."""
    assert httpx.put(f"{provider}/users/{quote(sub)}", json=claims, timeout=30).status_code == 204
    browser = httpx.Client(base_url=world.url, timeout=30)
    started = browser.get("/login/oidc", params={"next": "/api/v1/me"})
    assert started.status_code == 303
    authorize = started.headers["location"]
    assert authorize.startswith(f"{provider}/oauth2/authorize?")
    assert "code_challenge_method=S256" in authorize
    assert "client-secret-SENTINEL" not in authorize
    back = httpx.post(authorize, data={"sub": sub}, timeout=30)  # the person, at the provider
    assert back.status_code in (302, 303), back.text
    callback = back.headers["location"]
    assert callback.startswith(f"{world.url}/login/oidc/callback?")
    browser.get(callback.removeprefix(world.url))
    return browser


def test_a_login_through_the_provider_gets_the_roles_the_plan_maps_its_groups_to(
    sso_world: World, oidc_provider: str
) -> None:
    browser = sso_login(sso_world, oidc_provider, "ann-sub",
                        {"email": "ann@smartwatts.example", "groups": ["sre-leads"]})  # fmt: skip
    me = browser.get("/api/v1/me")
    assert me.status_code == 200, me.text
    assert me.json() | {"scopes": None} == {"name": "ann@smartwatts.example", "roles": ["ic"],
                                           "access": "commander", "via": "session",
                                           "scopes": None}  # fmt: skip
    trail = [json.loads(line) for line in sso_world.run("audit", "list", "--json").out.splitlines()]
    assert (trail[-1]["kind"], trail[-1]["actor"]) == ("login", "ann@smartwatts.example (oidc)")
    assert "client-secret-SENTINEL" not in sso_world.run("audit", "list", "--json").out


def test_a_person_the_plan_gives_nothing_and_a_forged_callback_are_refused(
    sso_world: World, oidc_provider: str
) -> None:
    stranger = sso_login(sso_world, oidc_provider, "eve-sub",
                         {"email": "eve@elsewhere.example", "groups": ["visitors"]})  # fmt: skip
    assert stranger.get("/api/v1/me").status_code == 401  # no session was opened
    forged = httpx.Client(base_url=sso_world.url, timeout=30).get(
        "/login/oidc/callback", params={"code": "stolen", "state": "guessed"})  # fmt: skip
    assert forged.status_code == 400
    assert "did not start here" in forged.text
    kinds = [json.loads(line)["kind"] for line in
             sso_world.run("audit", "list", "--json").out.splitlines()]  # fmt: skip
    assert kinds[-2:] == ["login.refused", "login.failed"]


def test_the_login_through_the_provider_in_the_browser(page: Any, sso_world: World,
                                                        oidc_provider: str) -> None:  # fmt: skip
    httpx.put(f"{oidc_provider}/users/dee-sub", timeout=30,
              json={"email": "dee@smartwatts.example", "groups": ["sre-leads"]})  # fmt: skip
    page.goto(f"{sso_world.url}/")
    page.get_by_role("link", name="Log in with your company account").click()
    page.wait_for_url(re.compile(r".*/oauth2/authorize.*"))
    page.get_by_placeholder("sub").fill("dee-sub")
    page.get_by_role("button", name="Authorize").click()
    page.wait_for_url(f"{sso_world.url}/")
    assert page.get_by_text("dee@smartwatts.example (commander: ic)").count() == 1
