"""One-line summaries of timeline entries (``incidents.view.summary``): the evidence
entries, with the fields ``security.evidence`` and ``evidence_verify`` record."""

from __future__ import annotations

from typing import Any

from drplan.incidents.view import summary
from drplan.security.evidence import CAPTURED, VERIFIED

DIGEST = "9f" * 32


def captured(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "system": "db", "kind": "postgres", "files": 120, "bytes": 4096, "unread": 0,
        "manifest_sha256": DIGEST, "location": "evidence", "snapshot": "1a2b3c4d" + "0" * 56,
        "immutable": True, "lock_mode": "compliance", "locked_until": "2027-12-07T23:00:00Z",
    }  # fmt: skip
    data.update(changes)
    return data


def test_a_capture_names_system_location_snapshot_manifest_and_lock() -> None:
    assert summary(CAPTURED, captured()) == (
        "evidence of db captured to evidence: snapshot 1a2b3c4d, 120 files, manifest SHA-256 "
        f"{DIGEST}, locked until 2027-12-07T23:00:00Z"
    )


def test_a_capture_that_is_not_immutable_says_so_and_why() -> None:
    unlocked = summary(CAPTURED, captured(immutable=False, locked_until=None, unread=2))
    assert unlocked.endswith(", 120 files, 2 unreadable, manifest SHA-256 " + DIGEST
                             + ", NOT immutable")  # fmt: skip
    problem = "3 object(s) are not locked, e.g. data/ab/abcd"
    short = summary(CAPTURED, captured(immutable=False, lock_problem=problem))
    assert short.endswith(f"NOT immutable ({problem})")


def test_a_verification_says_ok_or_counts_its_problems_and_names_the_first() -> None:
    base = {"snapshot": "1a2b3c4d" + "0" * 56, "location": "evidence", "files": 120}
    assert summary(VERIFIED, {**base, "ok": True, "problems": [], "problem_count": 0}) == (
        "evidence 1a2b3c4d in evidence verified: ok (120 files)"
    )
    problems = ["pg_hba.conf: SHA-256 differs from the manifest", "base/1/2: missing"]
    failed = {**base, "ok": False, "problems": problems, "problem_count": 7}
    assert summary(VERIFIED, failed) == (
        "evidence 1a2b3c4d in evidence verified: 7 problem(s),"
        " first: pg_hba.conf: SHA-256 differs from the manifest"
    )


def test_credential_rotation_entries_read_as_verified_then_revoked_by_fingerprint() -> None:
    from drplan.security.secrets_rotate_timeline import NEW_VERIFIED, OLD_REVOKED  # noqa: PLC0415

    entry = {"reference": "${PG_PASSWORD}", "old_fingerprint": "aa11", "new_fingerprint": "bb22"}
    assert summary(NEW_VERIFIED, entry) == "new value of ${PG_PASSWORD} (aa11 -> bb22) verified"
    assert summary(OLD_REVOKED, {**entry, "by": "drplan", "verified_entry": 7}) == (
        "old value of ${PG_PASSWORD} (aa11 -> bb22) revoked (by drplan): refused at every use,"
        " after entry 7"
    )
