"""Where `secrets rotate` takes new and old values: the NAME=value file (private, strict),
the NEW_/OLD_ environment, and which credentials a run covers. No value in an error."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from drplan.errors import UsageError
from drplan.security.secrets_inventory import REPOSITORY_PASSWORD, Credential, Use
from drplan.security.secrets_rotate_values import (
    chosen_new,
    from_environment,
    name_of,
    new_values,
    old_candidates,
    parse_values,
    read_values_file,
)

SECRET = "s3cr3t-SENTINEL"


def credential(
    reference: str, kind: str = "postgres-password", value: str | None = None
) -> Credential:
    def read() -> bytes:
        if value is None:
            raise UsageError("not set")
        return value.encode()

    return Credential(reference, (Use("systems.db.password", kind),), read)


REPO = Credential("$DRPLAN_PASSWORD", (Use("locations.local", REPOSITORY_PASSWORD),), lambda: b"r")


def test_names_are_the_variable_or_drplan_password_for_the_repository() -> None:
    assert name_of(credential("${PG_PASSWORD}")) == "PG_PASSWORD"
    assert name_of(REPO) == "DRPLAN_PASSWORD"
    assert name_of(Credential("password_command", REPO.uses, REPO.read)) == "DRPLAN_PASSWORD"


def test_lines_are_taken_as_they_are() -> None:
    lines = ["# rotated 2026-12-07", "", "PG_PASSWORD=a=b c ", "  SMTP_PASSWORD =x#y"]
    assert parse_values(lines, "f") == {"PG_PASSWORD": b"a=b c ", "SMTP_PASSWORD": b"x#y"}


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (f"export PG_PASSWORD={SECRET}", "f:2 is not a NAME=value line"),
        (SECRET, "f:2 is not a NAME=value line"),
        ("PG_PASSWORD=", "f:2: PG_PASSWORD has an empty value"),
        (f"A={SECRET}", "f:2: A is given twice"),
    ],
)
def test_a_bad_line_is_named_by_its_number_never_its_value(line: str, message: str) -> None:
    with pytest.raises(UsageError) as refused:
        parse_values(["A=1", line], "f")
    assert refused.value.message == message
    assert SECRET not in refused.value.message + (refused.value.hint or "")


def test_a_file_others_may_read_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "new.env"
    path.write_text(f"PG_PASSWORD={SECRET}\n")
    path.chmod(0o640)
    with pytest.raises(UsageError, match="may be read or written by others") as refused:
        read_values_file(str(path))
    assert f"chmod 600 {path}" in (refused.value.hint or "")
    path.chmod(0o600)
    assert read_values_file(str(path)) == {"PG_PASSWORD": SECRET.encode()}
    with pytest.raises(UsageError, match="cannot read"):
        read_values_file(str(tmp_path / "missing"))


def test_the_environment_gives_values_under_a_prefix() -> None:
    environ = {"NEW_PG_PASSWORD": "p", "NEW_": "x", "NEW_EMPTY": "", "PG_PASSWORD": "old"}
    assert from_environment("NEW_", environ) == {"PG_PASSWORD": b"p"}
    assert new_values(None, None, environ) == ({"PG_PASSWORD": b"p"}, "the environment (NEW_NAME)")
    assert new_values(None, "ROT_", {"ROT_A": "1"})[0] == {"A": b"1"}
    with pytest.raises(UsageError, match="not both"):
        new_values("file", "NEW_", environ)


def test_which_credentials_a_run_rotates() -> None:
    pg, mail = credential("${PG_PASSWORD}"), credential("${MAIL}", "smtp-password")
    both = [pg, mail, REPO]
    values = {"PG_PASSWORD": b"p", "DRPLAN_PASSWORD": b"r"}
    assert chosen_new(both, values, False, "f", True) == [(pg, b"p"), (REPO, b"r")]
    with pytest.raises(UsageError, match=r"no new value for \$\{MAIL\} in f"):
        chosen_new([mail], values, True, "f", True)
    # A name the plan does not use: a typo in the file, refused; other NEW_ variables, not.
    with pytest.raises(UsageError, match="f gives PG_PASWORD, which the plan does not use"):
        chosen_new(both, {"PG_PASWORD": b"p"}, False, "f", True)
    assert chosen_new(both, {"RELIC_KEY": b"k", "MAIL": b"m"}, False, "env", False) == [
        (mail, b"m")
    ]
    with pytest.raises(UsageError, match="no new value in env for any secret"):
        chosen_new(both, {"RELIC_KEY": b"k"}, False, "env", False)


def test_old_values_are_looked_for_in_order() -> None:
    pg = credential("${PG_PASSWORD}", value="current")
    environ = {"OLD_PG_PASSWORD": "from-env", **os.environ}
    assert old_candidates(pg, {"PG_PASSWORD": b"from-file"}, environ) == [
        b"from-file", b"from-env", b"current"
    ]  # fmt: skip
    assert old_candidates(credential("${PG_PASSWORD}"), {}, {}) == []  # not set anywhere
