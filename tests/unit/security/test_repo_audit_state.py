"""What a host remembers of the trails: anchors and entries owed (security/repo_audit_state.py)."""

from __future__ import annotations

from pathlib import Path

from drplan.security.repo_audit import Ref
from drplan.security.repo_audit_state import AuditState

HASH = "cd" * 32


def test_an_anchor_moves_only_forward_and_survives_a_garbled_file(tmp_path: Path) -> None:
    state = AuditState(tmp_path / "audit")
    assert state.anchor("repo", "/srv/b") is None
    state.set_anchor("repo", "/srv/b", Ref(5, HASH), "2026-12-08T01:45:09Z")
    state.set_anchor("repo", "/srv/b", Ref(3, HASH), "2026-12-08T01:40:00Z")  # older news
    assert state.anchor("repo", "/srv/b") == Ref(5, HASH)
    assert state.anchor("repo", "s3://b/p") is None  # per location
    assert state.anchor("other", "/srv/b") is None  # and per repository
    (tmp_path / "audit" / "anchors.json").write_text("{cut short")
    assert state.anchor("repo", "/srv/b") is None
    state.set_anchor("repo", "/srv/b", Ref(6, HASH), "2026-12-08T02:00:00Z")
    assert state.anchor("repo", "/srv/b") == Ref(6, HASH)


def test_owed_entries_come_back_oldest_first_and_are_capped(tmp_path: Path) -> None:
    state = AuditState(tmp_path / "audit", max_pending=2)
    assert state.add_pending("repo", "/srv/b", {"time": "2026-12-08T02:00:00.000000Z", "n": 2})
    assert state.add_pending("repo", "/srv/b", {"time": "2026-12-08T01:00:00.000000Z", "n": 1})
    assert not state.add_pending("repo", "/srv/b", {"time": "2026-12-08T03:00:00.000000Z"})
    assert [p.fields["n"] for p in state.pending("repo", "/srv/b")] == [1, 2]
    assert state.pending("repo", "s3://b/p") == []
    owed = state.pending("repo", "/srv/b")[0]
    owed.path.write_text("{cut short")  # a crash mid-write promised nothing
    assert [p.fields["n"] for p in state.pending("repo", "/srv/b")] == [2]
