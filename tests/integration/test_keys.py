"""Key files through the CLI: several passwords open one repository; passwd and remove."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from drplan.repo.crypto import object_id
from drplan.storage.local import LocalStorage
from testbed.plans import clean_plan
from tests.conftest import Result, dump
from tests.fixtures.keyfiles import add_key_file
from tests.integration.conftest import PASSWORD, open_repo

Run = Callable[..., Result]


def test_add_list_passwd_remove(
    run: Run, repo_dir: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DRPLAN_NEW_PASSWORD", "second password")
    added = run("key", "add", "--repo", repo_dir, "--label", "ops laptop")
    assert added.code == 0, added.err
    keys = json.loads(run("key", "list", "--repo", repo_dir, "--json").out)
    assert len(keys) == 2
    assert [k["label"] for k in keys if not k["current"]] == ["ops laptop"]
    first = next(k for k in keys if k["current"])
    refused = run("key", "remove", first["id"][:12], "--repo", repo_dir)
    assert refused.code == 2
    assert "refusing to remove the key you opened" in refused.err
    # The second password opens the repository too, and can remove the first key.
    monkeypatch.setenv("DRPLAN_PASSWORD", "second password")
    assert run("key", "remove", first["id"][:12], "--repo", repo_dir).code == 0
    assert len(json.loads(run("key", "list", "--repo", repo_dir, "--json").out)) == 1
    # passwd replaces the key in use: the old password stops working, the new one works.
    monkeypatch.setenv("DRPLAN_NEW_PASSWORD", "third password")
    assert run("key", "passwd", "--repo", repo_dir).code == 0
    assert run("snapshots", "--repo", repo_dir).code == 12
    monkeypatch.setenv("DRPLAN_PASSWORD", "third password")
    assert run("snapshots", "--repo", repo_dir).code == 0


def test_new_password_required_without_a_terminal(
    run: Run, repo_dir: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DRPLAN_NEW_PASSWORD", raising=False)
    result = run("key", "add", "--repo", repo_dir)
    assert result.code == 2
    assert "no new password given" in result.err


def test_password_file_and_plan_password_command(
    run: Run, repo_dir: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    password = os.environ["DRPLAN_PASSWORD"]
    monkeypatch.delenv("DRPLAN_PASSWORD")
    secret = tmp_path / "pw"
    secret.write_text(password + "\n")
    assert run("snapshots", "--repo", repo_dir, "--password-file", str(secret)).code == 0
    plan = tmp_path / "drplan.yaml"
    # The plan is read for its password_command only when nothing else gives a password.
    data = clean_plan()
    data["repository"] = {"password_command": f"cat {secret}"}
    plan.write_text(dump(data))
    assert run("--plan", str(plan), "snapshots", "--repo", repo_dir).code == 0
    data["repository"] = {"password_command": "echo oops >&2; exit 3"}
    plan.write_text(dump(data))
    failed = run("--plan", str(plan), "snapshots", "--repo", repo_dir)
    assert failed.code == 1
    assert "password_command failed with exit code 3: oops" in failed.err


def _key_files(repo_dir: str) -> list[Path]:
    return sorted(Path(repo_dir, "keys").iterdir())


def _only_key_written_as(repo_dir: str, version: int) -> Path:
    """The repository's only key file replaced by one of ``version`` (from the spec), for
    the same master key and password."""
    master = open_repo(repo_dir).opened_master()
    for old in _key_files(repo_dir):
        old.unlink()
    name = add_key_file(LocalStorage(repo_dir), master, PASSWORD.encode(), version)
    return Path(repo_dir, name)


def test_key_add_and_passwd_write_version_2(
    run: Run, repo_dir: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _only_key_written_as(repo_dir, 1)
    monkeypatch.setenv("DRPLAN_NEW_PASSWORD", "second password")
    assert run("key", "add", "--repo", repo_dir).code == 0
    assert run("key", "passwd", "--repo", repo_dir).code == 0  # replaces the version 1 key
    monkeypatch.setenv("DRPLAN_PASSWORD", "second password")
    keys = json.loads(run("key", "list", "--repo", repo_dir, "--json").out)
    assert [k["version"] for k in keys] == [2, 2]
    check = run("check", "--repo", repo_dir)
    assert check.code == 0, check.err
    assert "version 1" not in check.out + check.err


def test_a_changed_key_file_is_found_by_check_without_its_password(
    run: Run, repo_dir: str, tmp_path: Path
) -> None:
    """Another password's key file gets a bit flipped in its time: check, opened with this
    password, names it (the file no longer matches its name, which is its hash)."""
    other = add_key_file(
        LocalStorage(repo_dir), open_repo(repo_dir).opened_master(), b"other password", 2
    )
    path = Path(repo_dir, other)
    path.write_bytes(path.read_bytes().replace(b'"2026-11-26T01', b'"2026-11-27T01'))
    assert run("snapshots", "--repo", repo_dir).code == 0  # this password's key is fine
    check = run("check", "--repo", repo_dir)
    assert check.code == 13
    assert f"error: key file {other[:17]} is damaged: its bytes do not match its name" in check.err


def test_a_version_1_key_file_still_opens_and_check_tells_what_to_do(
    run: Run, repo_dir: str
) -> None:
    key = _only_key_written_as(repo_dir, 1)
    check = run("check", "--repo", repo_dir)
    assert check.code == 0, check.err
    assert f"info: key file keys/{key.name[:12]} is version 1" in check.out
    assert "run `drplan key passwd` to rewrite it" in check.out
    key.write_bytes(key.read_bytes().replace(b'"host": "db1"', b'"host": "db2"'))
    assert run("snapshots", "--repo", repo_dir).code == 0  # nothing secret was changed
    check = run("check", "--repo", repo_dir)
    assert check.code == 13
    assert f"key file keys/{key.name[:12]} is damaged: its bytes do not match its name" in check.err


def test_a_forged_version_2_key_file_does_not_open(run: Run, repo_dir: str) -> None:
    """Someone who can write to the location changes the host and label of the key file and
    renames it to the hash of its new bytes: it no longer opens, and says which file."""
    (key,) = _key_files(repo_dir)
    doc = json.loads(key.read_bytes())
    forged = json.dumps({**doc, "host": "attacker", "label": "trust me"}, indent=2).encode()
    key.unlink()
    Path(repo_dir, "keys", object_id(forged)).write_bytes(forged)
    result = run("snapshots", "--repo", repo_dir)
    assert result.code == 12, result.err
    assert f"keys/{object_id(forged)[:12]}" in result.err
    assert result.err.count("\n") == 1


def test_a_damaged_key_file_beside_a_good_one(run: Run, repo_dir: str) -> None:
    """One of two key files has a character of its salt flipped: the other password still
    opens the repository, and check reports the damaged file and goes on."""
    other = Path(
        repo_dir, add_key_file(LocalStorage(repo_dir), open_repo(repo_dir).opened_master(), b"x", 2)
    )
    doc = json.loads(other.read_bytes())
    salt = doc["kdf"]["salt"]
    other.write_bytes(other.read_bytes().replace(salt.encode(), b"!" + salt[1:].encode()))
    assert run("snapshots", "--repo", repo_dir).code == 0
    assert run("backup", "files", str(Path(repo_dir, "config")), "--repo", repo_dir).code == 0
    check = run("check", "--repo", repo_dir)
    assert check.code == 13
    assert f"error: key file keys/{other.name[:12]} is damaged" in check.err
    assert "check of " in check.out + check.err  # the rest of the repository was checked
    restored = run(
        "restore", "latest", "--target", str(Path(repo_dir).parent / "t"), "--repo", repo_dir
    )
    assert restored.code == 0, restored.err


def _flip_positions(text: str) -> list[int]:
    """A position of every kind of character in a key file: the first, middle and last
    character of each string (keys and values: text, base64) and number, each structural
    character and each kind of whitespace."""
    found: set[int] = set()
    for token in re.finditer(r'"((?:[^"\\]|\\.)*)"|-?\d+', text):
        start, end = token.span(1) if token.group(1) is not None else token.span()
        if end > start:
            found.update({start, (start + end) // 2, end - 1})
    for char in '{}:,"\n ':
        found.add(text.index(char))
    return sorted(found)


@pytest.mark.parametrize("version", [1, 2])
def test_flipping_any_character_of_the_key_file(run: Run, repo_dir: str, version: int) -> None:
    """Whatever character of the only key file flips, opening the repository gives it
    (the flip did not matter), a wrong password or damage naming the key file, and check
    reports the key file: never an internal error (70) or a plain failure (1)."""
    key = _only_key_written_as(repo_dir, version)
    good = key.read_bytes()
    positions = _flip_positions(good.decode())
    assert len(positions) > 40
    outcomes = set()
    for at in positions:
        flipped = bytearray(good)
        flipped[at] ^= 1
        key.write_bytes(bytes(flipped))
        opened = run("snapshots", "--repo", repo_dir)
        checked = run("check", "--repo", repo_dir)
        shown = f"flip at {at} ({good[at : at + 1]!r}): {opened.err}{checked.err}"
        assert opened.code in (0, 12, 13), shown
        assert checked.code in (12, 13), shown
        for result in (opened, checked):
            if result.code:
                assert f"keys/{key.name[:12]}" in result.err, shown
                assert "internal error" not in result.err, shown
        outcomes.add((opened.code, checked.code))
    key.write_bytes(good)
    assert run("check", "--repo", repo_dir).code == 0
    # Version 1 opens with its time or host flipped; version 2 binds them: it never opens.
    assert (0, 13) in outcomes if version == 1 else all(o != 0 for o, _ in outcomes)
