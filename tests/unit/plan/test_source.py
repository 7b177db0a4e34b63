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
    data, smap, problems = parse(TEXT, "f.yaml")
    assert problems == []
    assert data == {"a": 1, "b": {"c": ["x", "y"], "d": {"e": True}}, "on": "no"}
    assert smap.locate(("b", "c", 1)).line == 3
    assert (smap.locate(("b", "d", "e")).line, smap.locate(("b", "d", "e")).column) == (5, 8)
    # A mapping is located at its key, not at its first entry.
    assert (smap.locate(("b", "d")).line, smap.locate(("b", "d")).column) == (4, 3)
    # Unknown paths fall back to their nearest known ancestor.
    assert smap.locate(("b", "d", "nope")).line == 4


def test_yaml_11_booleans_stay_text_and_keys_stay_strings() -> None:
    data, _, _ = parse("on: yes\noff: false\n", "f.yaml")
    assert data == {"on": "yes", "off": False}


def test_anchors_and_merge_keys() -> None:
    data, _, _ = parse("base: &b {x: 1, y: 2}\nother:\n  <<: *b\n  y: 3\n", "f.yaml")
    assert data["other"] == {"x": 1, "y": 3}


def test_duplicate_keys_are_errors_with_both_places() -> None:
    data, _, problems = parse("a: 1\nb: 2\na: 3\n", "f.yaml")
    assert [str(p) for p in problems] == ["f.yaml:3:1: a: duplicate key 'a' (first at line 1)"]
    assert data == {"a": 1, "b": 2}  # the first one counts, so later checks still run


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a: !foo x\n", "f.yaml:1:4: a: unsupported YAML tag '!foo'"),
        (
            "a: !!python/object:os.system x\n",
            "f.yaml:1:4: a: unsupported YAML tag 'tag:yaml.org,2002:python/object:os.system'",
        ),
        ("a: 2026-02-30\n", "f.yaml:1:4: a: '2026-02-30' is not a valid date"),
        ("a: &l [*l]\n", "f.yaml:1:4: a[0]: an alias refers to a block that contains it"),
    ],
)
def test_values_that_cannot_be_built_are_located_problems(text: str, message: str) -> None:
    _, _, problems = parse(text, "f.yaml")
    assert [str(p) for p in problems] == [message]


def test_alias_bombs_are_refused_quickly() -> None:
    levels = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    levels += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    with pytest.raises(PlanInvalidError, match="expands to more than"):
        parse("\n".join(levels) + "\n", "f.yaml")


def test_tabs_get_a_hint() -> None:
    with pytest.raises(PlanInvalidError, match="does not allow tabs"):
        parse("a:\n\tb: 1\n", "f.yaml")


def test_several_documents_are_refused() -> None:
    with pytest.raises(PlanInvalidError, match="YAML syntax error"):
        parse("a: 1\n---\nb: 2\n", "f.yaml")


def test_empty_file() -> None:
    with pytest.raises(PlanInvalidError, match="the plan file is empty"):
        parse("# nothing\n", "f.yaml")
