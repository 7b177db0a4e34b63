"""The audit entry's format: names, bodies, sealing and opening (security/repo_audit.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from drplan.errors import IntegrityError
from drplan.repo.keys import KdfParams
from drplan.repo.repository import Repository
from drplan.security.repo_audit import (
    PREFIX,
    Ref,
    block_prefix,
    canonical,
    form_problem,
    list_refs,
    open_entry,
    seal_entry,
)
from drplan.storage.local import LocalStorage

FAST_KDF = KdfParams(time_cost=1, memory_kib=1024, parallelism=1)
HASH = "ab" * 32


def body(**changes: Any) -> dict[str, Any]:
    """A body of the form, as a writer makes it."""
    fields = {
        "version": 1, "seq": 2, "prev": [f"{1:016d}-{HASH}"], "op": "0" * 32,
        "operation": "backup", "subject": "web", "host": "db1", "user": "root", "pid": 42,
        "program": "drplan 0.1.0", "started": "2026-12-08T01:45:00.000001Z",
        "time": "2026-12-08T01:45:09.000001Z", "location": "primary", "url": "/srv/b",
        "outcome": "ok", "error": None, "exit_code": 0, "details": {}, "touched": {},
        "witness": [{"location": "cloud", "url": "s3://b/p", "head": f"{7:016d}-{HASH}"}],
        "late": False,
    }  # fmt: skip
    return {**fields, **changes}


@pytest.fixture
def repo(tmp_path: Path) -> Repository:
    return Repository.init(LocalStorage(tmp_path / "repo"), b"pw", kdf=FAST_KDF)


def test_a_name_is_sixteen_digits_of_seq_and_the_hash() -> None:
    ref = Ref(42, HASH)
    assert ref.name == f"0000000000000042-{HASH}"
    assert Ref.parse(ref.name) == ref
    assert ref.short == f"42 ({HASH[:12]})"
    for wrong in (f"42-{HASH}", f"{0:016d}-{HASH}", f"{1:016d}-{HASH.upper()}",
                  f"{1:016d}-{HASH[:-1]}", f"{1:016d}-{HASH}.tmp"):  # fmt: skip
        assert Ref.parse(wrong) is None, wrong


def test_a_block_is_a_thousand_seqs_under_one_prefix() -> None:
    assert block_prefix(5) == "audit/0000000000000"
    assert block_prefix(999) == block_prefix(0)
    assert block_prefix(1000) == "audit/0000000000001"
    assert Ref(1234, HASH).name.startswith(block_prefix(1234).removeprefix(PREFIX))


def test_the_body_is_canonical_json() -> None:
    assert canonical({"b": "é", "a": [1, 2]}) == b'{"a":[1,2],"b":"\\u00e9"}'


def test_a_body_of_the_form_passes_and_each_wrong_field_is_named() -> None:
    assert form_problem(body()) is None
    assert form_problem(body(extra="a reader ignores keys it does not know")) is None
    assert "version 2" in str(form_problem(body(version=2)))
    assert form_problem([]) == "its body is not a JSON object"
    for key, value in [("seq", 0), ("seq", True), ("prev", ["2-abc"]), ("op", "xyz"),
                       ("outcome", "fine"), ("time", "2026-12-08T01:45:09"), ("pid", -1),
                       ("witness", [{"location": "x", "url": "y", "head": "z"}]),
                       ("late", 0), ("details", []), ("subject", 3)]:  # fmt: skip
        assert f"its {key} not of" in str(form_problem(body(**{key: value}))), key


def test_an_entry_opens_only_as_it_was_written(repo: Repository) -> None:
    ref, stored = seal_entry(repo, body())
    assert ref.seq == 2
    assert open_entry(repo, ref, stored).fields == body()
    assert open_entry(repo, ref, stored).what == "backup web by root@db1"
    with pytest.raises(IntegrityError, match="failed authentication"):
        open_entry(repo, ref, stored[:-1] + bytes([stored[-1] ^ 1]))
    with pytest.raises(IntegrityError, match="says it is entry 2: it was renamed"):
        open_entry(repo, Ref(3, ref.hash), stored)
    with pytest.raises(IntegrityError, match="does not match its name's hash"):
        open_entry(repo, Ref(2, HASH), stored)
    _, bad = seal_entry(repo, body(outcome="fine"))
    with pytest.raises(IntegrityError, match="its outcome not of the audit entry's form"):
        open_entry(repo, ref, bad)


def test_a_listing_tells_entries_from_foreign_names(repo: Repository) -> None:
    ref, stored = seal_entry(repo, body())
    repo.storage.write(PREFIX + ref.name, stored)
    repo.storage.write(PREFIX + "notes.txt", b"planted")
    assert list_refs(repo.storage) == ([ref], ["audit/notes.txt"])
