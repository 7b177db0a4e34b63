"""The order rule read from a timeline: an old value may be recorded revoked only after
its new value was recorded verified, for the same fingerprints; the proof helpers."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Any

import pytest

from drplan.incidents.timeline import Event, make_event
from drplan.plan.model import Plan, S3Location
from drplan.plan.secrets import SecretRef
from drplan.security.secrets_rotate_proof import Checks, with_values
from drplan.security.secrets_rotate_timeline import (
    FAILED,
    NEW_VERIFIED,
    NOT_VERIFIABLE,
    OLD_REVOKED,
    SUMMARIES,
    not_yet,
    rotations,
)
from drplan.security.secrets_verify import Attempt
from testbed.plans import clean_plan

AT = datetime(2026, 12, 7, 23, 0, tzinfo=UTC)


def timeline(*entries: tuple[str, dict[str, Any]]) -> list[Event]:
    events: list[Event] = []
    for kind, data in (("declared", {}), *entries):
        events.append(make_event(events[-1] if events else None, "INC-TEST", kind, "ic", data, AT))
    return events


def pair(reference: str, old: str, new: str, **more: Any) -> dict[str, Any]:
    return {"reference": reference, "old_fingerprint": old, "new_fingerprint": new, **more}


def test_a_revocation_needs_the_same_rotation_verified_first() -> None:
    assert not_yet(None, "${A}", "o", "n") == "no new value of ${A} was verified in this incident"
    found = rotations(timeline((NEW_VERIFIED, pair("${A}", "o", "n"))))["${A}"]
    assert (found.verified_entry, found.revoked_entry) == (2, None)
    assert not_yet(found, "${A}", "o", "n") is None
    assert "is o -> n, not o -> x" in (not_yet(found, "${A}", "o", "x") or "")


def test_only_a_matching_revocation_counts_and_the_latest_rotation_wins() -> None:
    events = timeline(
        (OLD_REVOKED, pair("${A}", "o", "n")),  # before any verification: ignored
        (NEW_VERIFIED, pair("${A}", "o", "n", revoke_at_provider=["channels.mail.password"])),
        (OLD_REVOKED, pair("${A}", "x", "n")),  # another pair: ignored
        (NEW_VERIFIED, pair("${B}", "p", "q")),
        (OLD_REVOKED, pair("${B}", "p", "q")),
    )
    found = rotations(events)
    assert found["${A}"].revoked_entry is None
    assert found["${A}"].revoke_at_provider == ("channels.mail.password",)
    assert found["${B}"].revoked_entry == 6
    assert "recorded revoked already (entry 6)" in (not_yet(found["${B}"], "${B}", "p", "q") or "")
    # A new rotation of B starts over: its old value is not revoked yet.
    again = rotations([*events, *timeline((NEW_VERIFIED, pair("${B}", "q", "r")))[1:]])
    assert again["${B}"].revoked_entry is None


def test_every_entry_kind_reads_as_one_line_of_fingerprints() -> None:
    data = pair("${A}", "0123456789ab", "ba9876543210", verified_entry=3, by="drplan",
                stage="verify", reason="SMTP answered 535", left_changed=[],
                revoke_at_provider=["channels.mail.password"])  # fmt: skip
    lines = {
        kind: SUMMARIES[kind](data) for kind in (NEW_VERIFIED, OLD_REVOKED, FAILED, NOT_VERIFIABLE)
    }
    assert lines[NEW_VERIFIED].endswith("revoked at the provider: channels.mail.password")
    assert "after entry 3" in lines[OLD_REVOKED]
    assert lines[FAILED].endswith("nothing changed")
    assert all("0123456789ab -> ba9876543210" in line for line in lines.values())


def attempt(status: str = "ok", refused: bool = False, detail: str = "said") -> Attempt:
    return Attempt(status, detail, 0.1, refused)  # type: ignore[arg-type]


def test_checks_need_every_use_and_at_least_one() -> None:
    assert not Checks([]).accepted
    assert not Checks([]).refused
    mixed = Checks([("a", attempt()), ("b", attempt("failed", True, "535 no"))])
    assert not mixed.accepted
    assert mixed.not_accepted() == "b: 535 no"
    assert mixed.not_refused() == "a: said"
    # A service that could not be asked proves nothing refused.
    down = Checks([("a", attempt("failed", False, "timed out"))])
    assert not down.refused
    assert Checks([("a", attempt("failed", True)), ("b", attempt("failed", True))]).refused
    assert mixed.shown()[1] == {"use": "b", "status": "failed", "refused": True, "detail": "535 no"}


def test_a_plan_can_read_given_values_without_touching_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KEY_ID", "old-id")
    monkeypatch.delenv("KEY_SECRET", raising=False)
    raw = clean_plan()
    raw["locations"]["cloud"] |= {
        "access_key_id": "${KEY_ID}",
        "secret_access_key": "${KEY_SECRET}",
    }
    plan = Plan.model_validate(raw)
    given = with_values(plan, {"KEY_SECRET": b"new-secret"})
    cloud, before = given.locations["cloud"], plan.locations["cloud"]
    assert isinstance(cloud, S3Location)
    assert isinstance(before, S3Location)
    assert isinstance(cloud.access_key_id, SecretRef)
    assert isinstance(cloud.secret_access_key, SecretRef)  # still the plan's reference
    assert (cloud.access_key_id.resolve(), cloud.secret_access_key.resolve()) == (
        "old-id",
        "new-secret",
    )
    assert cloud.secret_access_key.variable == "KEY_SECRET"
    assert str(cloud.secret_access_key) == "${KEY_SECRET}"  # and shows as one, not the value
    assert "KEY_SECRET" not in os.environ
    assert before.secret_access_key == SecretRef("KEY_SECRET")
