"""The status_page section's references: its components' systems and groups, its
audience, the S3 locations of its static copy and its webhook subscribers, each refused
by name with what the plan defines."""

from __future__ import annotations

import json
from typing import Any

import pytest

from drplan.errors import PlanInvalidError
from drplan.plan.loader import load_plan_text
from testbed.plans import clean_plan


def problems(page: dict[str, Any]) -> list[str]:
    raw = clean_plan()
    raw["channels"] = {"hook": {"kind": "webhook", "url": "${HOOK_URL}"},
                       "mail": {"kind": "email", "smtp_host": "127.0.0.1", "sender": "a@b.c",
                                "to": ["d@e.f"]}}  # fmt: skip
    raw["status_page"] = {"title": "Status", "components": {
        "api": {"title": "API", "systems": ["db"]}}, **page}  # fmt: skip
    try:
        load_plan_text(json.dumps(raw), "plan.yaml")
    except PlanInvalidError as exc:
        return [str(p) for p in exc.problems]
    return []


def test_a_valid_section_loads() -> None:
    assert problems({"subscribers": ["hook"], "publish_to": ["cloud"]}) == []


@pytest.mark.parametrize(("page", "said"), [
    ({"components": {"api": {"title": "API", "systems": ["dbb"]}}},
     "status_page.components.api.systems[0]: unknown system 'dbb' (defined: db, web); did you mean 'db'?"),
    ({"subscribers": ["mail"]},
     "status_page.subscribers[0]: unknown webhook channel 'mail' (defined: hook)"),
    ({"publish_to": ["local"]},
     "status_page.publish_to[0]: unknown S3 location 'local' (defined: cloud)"),
    ({"audience": "customers"},
     "status_page.audience: unknown audience 'customers' (defined: none: add a `audiences` section)"),
])  # fmt: skip
def test_each_reference_is_checked(page: dict[str, Any], said: str) -> None:
    assert [p.split(": ", 1)[1] for p in problems(page)] == [said]


@pytest.mark.parametrize(("probe", "said"), [
    ({}, "give the probe a url or a command, one of them"),
    ({"url": "http://127.0.0.1/health", "command": "true"}, "give the probe a url or a command"),
    ({"url": "ftp://127.0.0.1/health"}, "probe url 'ftp://127.0.0.1/health': an http:// or https://"),
    ({"command": "true", "failures": 0}, "failures: 0 is out of range: it must be at least 1"),
])  # fmt: skip
def test_a_components_probe_is_a_url_or_a_command(probe: dict[str, Any], said: str) -> None:
    found = problems({"components": {"api": {"title": "API", "systems": ["db"], "probe": probe}}})
    assert len(found) == 1
    assert said in found[0]
