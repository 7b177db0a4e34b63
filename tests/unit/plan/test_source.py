from __future__ import annotations

import pytest

from drplan.errors import PlanInvalidError
from drplan.plan.source import parse

TEXT = """\
a: 1
b:
  c: [x, y]
  d:
    e: true
on: no
"""


def test_positions_of_keys_and_values() -> None:
    data, smap = parse(TEXT, "f.yaml")
    assert data == {"a": 1, "b": {"c": ["x", "y"], "d": {"e": True}}, "on": "no"}
    assert smap.locate(("b", "c", 1)).line == 3
    assert (smap.locate(("b", "d", "e")).line, smap.locate(("b", "d", "e")).column) == (5, 8)
    # A mapping is located at its key, not at its first entry.
    assert (smap.locate(("b", "d")).line, smap.locate(("b", "d")).column) == (4, 3)
    # Unknown paths fall back to their nearest known ancestor.
    assert smap.locate(("b", "d", "nope")).line == 4


def test_yaml_11_booleans_stay_text_and_keys_stay_strings() -> None:
    data, _ = parse("on: yes\noff: false\n", "f.yaml")
    assert data == {"on": "yes", "off": False}


def test_anchors_and_merge_keys() -> None:
    data, _ = parse("base: &b {x: 1, y: 2}\nother:\n  <<: *b\n  y: 3\n", "f.yaml")
    assert data["other"] == {"x": 1, "y": 3}


def test_duplicate_keys_are_errors_with_both_places() -> None:
    with pytest.raises(PlanInvalidError) as info:
        parse("a: 1\nb: 2\na: 3\n", "f.yaml")
    assert str(info.value) == "f.yaml:3:1: a: duplicate key 'a' (first at line 1)"


def test_several_documents_are_refused() -> None:
    with pytest.raises(PlanInvalidError, match="YAML syntax error"):
        parse("a: 1\n---\nb: 2\n", "f.yaml")


def test_empty_file() -> None:
    with pytest.raises(PlanInvalidError, match="the plan file is empty"):
        parse("# nothing\n", "f.yaml")
