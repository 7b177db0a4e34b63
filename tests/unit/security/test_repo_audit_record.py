"""Recording one operation: what it touched, its outcome, its entries written or owed
(security/repo_audit_record.py, through repo_audit_write.py)."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest

from drplan.errors import IntegrityError
from drplan.repo.repository import Repository
from drplan.security.repo_audit_record import (
    MAX_IDS,
    Recorder,
    Tally,
    also_used,
    audited,
    note,
    recorder_of,
)
from drplan.security.repo_audit_verify import read_trail
from drplan.storage.local import LocalStorage
from tests.unit.security.test_repo_audit import FAST_KDF


@pytest.fixture
def storage(tmp_path: Path) -> LocalStorage:
    storage = LocalStorage(tmp_path / "repo")
    Repository.init(storage, b"pw", kdf=FAST_KDF)
    return storage


def test_the_operation_and_its_subject() -> None:
    assert (Recorder.start("backup web").operation, Recorder.start("backup web").subject) == (
        "backup", "web")  # fmt: skip
    assert Recorder.start("key add").operation == "key add"
    assert Recorder.start("key add").subject is None
    assert Recorder.start("restore db").subject == "db"
    assert Recorder.start("check").subject is None


def test_a_tally_counts_per_kind_names_what_matters_and_leaves_out_locks() -> None:
    tally = Tally()
    tally.add("written", "data/ab/abcd", 100)
    tally.add("written", "data/cd/cdef", 50)
    for n in range(MAX_IDS + 3):
        tally.add("deleted", f"snapshots/{n:064x}", 0)
    tally.add("written", "locks/1234", 10)
    tally.add("written", "audit/1-2", 10)
    tally.add("read", "config", 300)
    counts = tally.as_dict()
    assert counts["written"] == {"data": {"objects": 2, "bytes": 150}}
    assert len(counts["deleted"]["snapshots"]["ids"]) == MAX_IDS
    assert counts["deleted"]["snapshots"]["more"] == 3
    assert counts["read"] == {"config": {"objects": 1, "bytes": 300}}


def entries(storage: LocalStorage) -> list[dict[str, object]]:
    return [e.fields for e in read_trail(Repository.open(storage, b"pw"), "here").entries]


@pytest.mark.parametrize(
    ("failure", "outcome", "code"),
    [(None, "ok", 0), (IntegrityError("a blob is damaged"), "failed", 13),
     (KeyboardInterrupt(), "interrupted", 130), (ValueError("a bug"), "failed", 70)],
)  # fmt: skip
def test_the_entry_says_how_the_operation_ended(
    storage: LocalStorage, failure: BaseException | None, outcome: str, code: int
) -> None:
    warnings: list[str] = []
    expected = pytest.raises(type(failure)) if failure else contextlib.nullcontext()
    with expected, audited("check", "here", storage, warnings.append) as run:
        run.repo = Repository.open(run.storage, b"pw")
        note(run.repo, errors=0)
        if failure is not None:
            raise failure
    (entry,) = entries(storage)
    assert (entry["outcome"], entry["exit_code"], entry["details"]) == (outcome, code,
                                                                         {"errors": 0})  # fmt: skip
    assert warnings == []
    if failure is not None:
        assert str(failure) in str(entry["error"])


def test_what_it_touched_is_counted_where_it_was_touched(
    storage: LocalStorage, tmp_path: Path
) -> None:
    other = LocalStorage(tmp_path / "not-a-replica")
    with audited("copy", "here", storage, print) as run:
        repo = run.repo = Repository.open(run.storage, b"pw")
        assert recorder_of(repo) is not None
        also_used(repo, "there", other).write("data/00/0000", b"x" * 10)
    (entry,) = entries(storage)
    assert entry["touched"]["read"]["config"]["objects"] == 1  # type: ignore[index]
    assert not list(other.list("audit/"))  # holds no repository of ours: no entry there


def test_nothing_is_recorded_without_an_operation_or_an_open_repository(
    storage: LocalStorage,
) -> None:
    plain = Repository.open(storage, b"pw")
    note(plain, ignored=True)  # not recorded: nothing to note into
    assert recorder_of(plain) is None
    with audited("", "here", storage, print) as run:
        assert run.storage is storage
    with pytest.raises(IntegrityError), audited("check", "here", storage, print):
        raise IntegrityError("the repository did not open")
    assert entries(storage) == []


def test_a_write_that_fails_is_a_warning_and_owed(storage: LocalStorage, tmp_path: Path) -> None:
    (tmp_path / "repo" / "audit").write_text("in the way")
    warnings: list[str] = []
    with audited("check", "here", storage, warnings.append) as run:
        run.repo = Repository.open(run.storage, b"pw")
    (warning,) = warnings
    assert warning.startswith("the audit entry of this check could not be written to here:")
    assert warning.endswith("it is kept on this host and written with the next one there")
    (tmp_path / "repo" / "audit").unlink()
    with audited("prune", "here", storage, warnings.append) as run:
        run.repo = Repository.open(run.storage, b"pw")
    assert [(e["operation"], e["late"]) for e in entries(storage)] == [
        ("check", True), ("prune", False)]  # fmt: skip
