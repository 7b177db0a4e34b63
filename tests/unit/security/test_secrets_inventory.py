"""The credential inventory's parts: kinds from the schema, keyed fingerprints, the history."""

from __future__ import annotations

import json
import os
import stat
import typing
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import BaseModel

from drplan.errors import DrplanError
from drplan.plan.model import Plan
from drplan.plan.secrets import SecretRef
from drplan.security.secrets_inventory import (
    HISTORY_FILE,
    KEY_FILE,
    KINDS,
    Fingerprinter,
    History,
    load_key,
)
from drplan.security.secrets_verify import UNVERIFIABLE, mask


def _types(annotation: object) -> list[object]:
    """Every type inside an annotation (unions, Annotated, lists, dicts)."""
    out = [annotation]
    for arg in typing.get_args(annotation):
        out += _types(arg)
    return out


def secret_fields(model: type[BaseModel], seen: set[type] | None = None) -> set[tuple[str, str]]:
    """(model class, field) of every field of the plan schema that holds a SecretRef."""
    seen = set() if seen is None else seen
    if model in seen:
        return set()
    seen.add(model)
    found = set()
    for name, info in model.model_fields.items():
        for inner in _types(info.annotation) + _types(info.metadata):
            if inner is SecretRef:
                found.add((model.__name__, name))
            elif isinstance(inner, type) and issubclass(inner, BaseModel):
                found |= secret_fields(inner, seen)
    return found


def test_every_secret_field_of_the_schema_has_a_kind() -> None:
    fields = secret_fields(Plan)
    assert len(fields) >= 14
    assert fields == set(KINDS), "a secret field without a kind: add it to KINDS and a probe"


def test_every_kind_is_probed_or_says_why_not() -> None:
    probed = {"s3-access-key", "s3-secret-key", "postgres-password", "registry-password",
              "etcd-password", "smtp-password", "status-page-api-key"}  # fmt: skip
    for kind in KINDS.values():
        assert (kind in probed) != (kind in UNVERIFIABLE), kind


def test_the_key_is_made_private_once_and_then_kept(tmp_path: Path) -> None:
    state = tmp_path / "state"
    key = load_key(state)
    assert len(key) == 32
    assert stat.S_IMODE((state / KEY_FILE).stat().st_mode) == 0o600
    assert load_key(state) == key
    assert Fingerprinter(state)(b"hunter2") == Fingerprinter(state)(b"hunter2")
    assert Fingerprinter(state)(b"hunter2") != Fingerprinter(tmp_path / "other")(b"hunter2")
    assert [p.name for p in state.iterdir()] == [KEY_FILE]  # no temporary file left


def test_a_key_others_may_read_is_refused(tmp_path: Path) -> None:
    load_key(tmp_path)
    os.chmod(tmp_path / KEY_FILE, 0o644)
    with pytest.raises(DrplanError, match="may be read by others"):
        load_key(tmp_path)


def test_a_truncated_key_is_refused(tmp_path: Path) -> None:
    (tmp_path / KEY_FILE).write_bytes(b"short")
    os.chmod(tmp_path / KEY_FILE, 0o600)
    with pytest.raises(DrplanError, match="not a fingerprint key"):
        load_key(tmp_path)


def at(day: int) -> datetime:
    return datetime(2026, 11, day, 12, tzinfo=UTC)


def test_history_dates_changes_only(tmp_path: Path) -> None:
    history = History(tmp_path)
    first = history.record("${A}", "aaaa", at(1))
    assert (first.last_changed, first.first_recorded, first.reused) == (None, at(1), False)
    assert history.record("${A}", "aaaa", at(2)).last_changed is None  # same value: no change
    assert history.record("${A}", "bbbb", at(3)).last_changed == at(3)
    assert history.record("${A}", "bbbb", at(4)).last_changed == at(3)
    back = history.record("${A}", "aaaa", at(5))  # the old value put back is a change too
    assert (back.last_changed, back.reused) == (at(5), True)
    history.save()
    stored = json.loads((tmp_path / HISTORY_FILE).read_text())
    assert [e["fingerprint"] for e in stored["references"]["${A}"]] == ["aaaa", "bbbb", "aaaa"]
    assert History(tmp_path).record("${A}", "aaaa", at(6)).last_changed == at(5)


def test_a_damaged_history_is_named_not_replaced(tmp_path: Path) -> None:
    (tmp_path / HISTORY_FILE).write_text("{not json")
    with pytest.raises(DrplanError, match=r"secrets-seen\.json cannot be read") as raised:
        History(tmp_path)
    assert "move it aside" in (raised.value.hint or "")


def test_mask_keeps_details_on_one_line_without_values() -> None:
    text = "server said:\n  bad password 'hunter22' for\tuser"
    assert mask(text, [b"hunter22"]) == "server said: bad password '***' for user"
