"""Documents that restate the code are checked against it, so they cannot drift."""

from __future__ import annotations

import re

from drplan.errors import EXIT_CODES
from drplan.plan.lint.catalog import render_rule_catalog
from drplan.plan.reference import render_reference
from tests.conftest import ROOT


def test_plan_reference_is_generated_from_the_models() -> None:
    on_disk = (ROOT / "docs" / "plan-reference.md").read_text(encoding="utf-8")
    assert on_disk == render_reference(), "docs/plan-reference.md is stale: run `make docs`"


def test_exit_code_table_matches_the_code() -> None:
    text = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    documented = {int(m.group(1)) for m in re.finditer(r"^\| `?(\d+)`? \|", text, re.MULTILINE)}
    assert documented == set(EXIT_CODES)


def test_readme_leads_with_the_two_commands() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    first_code = text.index("```")
    assert "make demo" in text[first_code : first_code + 200]
    assert "make test" in text[first_code : first_code + 200]


def test_lint_rule_catalog_is_generated_from_the_rules() -> None:
    on_disk = (ROOT / "docs" / "lint-rules.md").read_text(encoding="utf-8")
    assert on_disk == render_rule_catalog(), "docs/lint-rules.md is stale: run `make docs`"
