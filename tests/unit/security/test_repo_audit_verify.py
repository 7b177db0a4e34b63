"""Verifying a trail, and finding its head from names (security/repo_audit_verify.py and
repo_audit_write.py): what is damage, what is a gap, a fork, a branch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from drplan.repo.repository import Repository
from drplan.security.repo_audit import PREFIX, Ref, seal_entry
from drplan.security.repo_audit_verify import cross_check, read_trail
from drplan.security.repo_audit_write import Chain, Target, listing
from drplan.storage.local import LocalStorage
from tests.unit.security.test_repo_audit import FAST_KDF, body


@pytest.fixture
def repo(tmp_path: Path) -> Repository:
    return Repository.init(LocalStorage(tmp_path / "repo"), b"pw", kdf=FAST_KDF)


def chain(repo: Repository) -> Chain:
    found = Chain(Target("here", repo.storage, "2026-12-08T01:45:00Z", {}), None)
    found.find_head()
    return found


def write(repo: Repository, n: int, **changes: Any) -> list[Ref]:
    return [chain(repo).write(repo, body(op=f"{i:032x}", **changes)) for i in range(n)]


def findings(repo: Repository) -> list[tuple[str, str]]:
    return [(f.kind, f.message) for f in read_trail(repo, "here").findings]


def test_a_chain_written_in_turn_holds(repo: Repository) -> None:
    refs = write(repo, 3)
    assert [r.seq for r in refs] == [1, 2, 3]
    assert findings(repo) == []


def test_a_key_holder_forging_a_place_in_the_chain_is_caught(repo: Repository) -> None:
    write(repo, 2)
    forged, stored = seal_entry(repo, body(seq=5, prev=[Ref(1, "0" * 64).name]))
    repo.storage.write(PREFIX + forged.name, stored)
    kinds = [kind for kind, _ in findings(repo)]
    assert "damaged" in kinds  # follows entry 1, claims to be 5
    gaps = [m for k, m in findings(repo) if k == "gap"]
    assert gaps == [gaps[0]]
    assert gaps[0].startswith("entries 3 to 4 are missing, after entry 2 of")


def test_a_replaced_entry_breaks_the_link_of_the_next(repo: Repository) -> None:
    first, second, _ = write(repo, 3)
    repo.storage.delete(PREFIX + second.name)
    other, stored = seal_entry(repo, body(seq=2, prev=[first.name], host="elsewhere"))
    repo.storage.write(PREFIX + other.name, stored)
    assert [k for k, _ in findings(repo)] == ["replaced"]


def test_a_fork_is_joined_by_the_next_writer_and_a_late_branch_is_named(
    repo: Repository,
) -> None:
    (first,) = write(repo, 1)
    racing = [chain(repo), chain(repo)]  # both listed before either wrote
    forked = [c.write(repo, body(op=f"{i:032x}")) for i, c in enumerate(racing)]
    assert [k for k, _ in findings(repo)] == ["fork"]
    assert "not joined yet: the newest" in findings(repo)[0][1]
    (joined,) = write(repo, 1)
    assert joined.seq == 3
    assert "joined at entry 3" in findings(repo)[0][1]
    # A writer that listed before entry 2 and wrote after entry 3: nothing follows its entry.
    slow = Chain(Target("here", repo.storage, "t", {}), None, head=[first])
    assert slow.write(repo, body(op="f" * 32)).seq == 2
    assert [k for k, _ in findings(repo)] == ["branch", "fork"]
    assert "fork at entry 2: 3 entries" in findings(repo)[1][1]
    assert forked[0].seq == 2


def test_a_writer_lists_from_its_anchor_block_on(repo: Repository, tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "names")
    for seq in (1, 999, 1000, 1001, 3500):
        storage.write(f"{PREFIX}{Ref(seq, 'e' * 64).name}", b"")
    assert {r.seq for r in listing(storage, None)} == {1, 999, 1000, 1001, 3500}
    # From block 0: blocks 0 and 1 hold entries, block 2 none: the listing stops there.
    assert {r.seq for r in listing(storage, Ref(5, "e" * 64))} == {1, 999, 1000, 1001}
    assert {r.seq for r in listing(storage, Ref(3500, "e" * 64))} == {3500}
    # An anchor whose block is empty (the trail cut below it): everything.
    assert len(listing(storage, Ref(7000, "e" * 64))) == 5


def test_an_anchor_the_trail_lacks_is_a_truncation(repo: Repository, tmp_path: Path) -> None:
    from drplan.security.repo_audit_state import AuditState  # noqa: PLC0415

    refs = write(repo, 3)
    state = AuditState(tmp_path / "state")
    state.set_anchor(repo.config.id, repo.storage.url, refs[-1], "2026-12-08T01:45:09Z")
    repo.storage.delete(PREFIX + refs[-1].name)
    trail = read_trail(repo, "here")
    cross_check([trail], state)
    assert [f.kind for f in trail.findings] == ["truncated"]
    assert "this host saw entry 3 (" in trail.findings[0].message
    assert "the trail ends at entry 2" in trail.findings[0].message
