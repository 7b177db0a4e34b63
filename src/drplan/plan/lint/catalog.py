"""docs/lint-rules.md, generated from the rule table (``make docs``); a test keeps it current."""

from __future__ import annotations

from drplan.plan.lint.rules import RULES

INTRO = """# Lint rules

`drplan plan lint` holds a valid plan against its own objectives. Each rule has a
stable id, a severity and, for every finding, a hint saying what to change.

- `error`: the plan cannot meet one of its objectives; lint exits with code 6.
- `warning`: it meets it with no margin, or leaves a gap a reviewer would flag;
  lint exits 0 unless `--strict`.
- `info`: worth knowing; never fails lint.

`--ignore DR013` skips a rule; `--list-rules` prints this table. Findings are located
in the plan file (`plan.yaml:249:15: error DR001 ...`) and in `--json` output carry
`line` and `column`.

Generated from `src/drplan/plan/lint/rules.py` by `make docs`.

| rule | name | severity | finds |
|---|---|---|---|
"""


def render_rule_catalog() -> str:
    rows = [f"| {r.id} | `{r.name}` | {r.severity.value} | {r.summary} |" for r in RULES]
    return INTRO + "\n".join(rows) + "\n"


if __name__ == "__main__":  # pragma: no cover - exercised by `make docs`
    print(render_rule_catalog(), end="")
