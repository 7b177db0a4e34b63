"""The machinery of lint: rules, findings, and running every rule over a plan."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from drplan.plan.model import Plan
from drplan.plan.source import PathKey, dotted


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"
    INFO = "info"

    @property
    def rank(self) -> int:
        return list(Severity).index(self)


@dataclass(frozen=True)
class LintContext:
    """What rules may look at: the plan and the moment lint runs (injectable for tests)."""

    plan: Plan
    now: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))

    @property
    def today(self) -> dt.date:
        return self.now.date()


@dataclass(frozen=True)
class Hit:
    """What a rule's check yields: where, what is wrong, what to do."""

    path: PathKey
    message: str
    hint: str


@dataclass(frozen=True)
class Rule:
    id: str
    name: str
    severity: Severity
    summary: str
    check: Callable[[LintContext], Iterable[Hit]]


@dataclass(frozen=True)
class Finding:
    rule: str
    name: str
    severity: Severity
    path: PathKey
    message: str
    hint: str

    @property
    def where(self) -> str:
        return dotted(self.path)

    def as_dict(self) -> dict[str, str]:
        return {
            "rule": self.rule,
            "name": self.name,
            "severity": self.severity.value,
            "path": self.where,
            "message": self.message,
            "hint": self.hint,
        }


def run_lint(ctx: LintContext, rules: Sequence[Rule]) -> list[Finding]:
    """Every finding of every rule, most severe first, then in plan order of rule ids."""
    findings = [
        Finding(rule.id, rule.name, rule.severity, hit.path, hit.message, hit.hint)
        for rule in rules
        for hit in rule.check(ctx)
    ]
    return sorted(findings, key=lambda f: (f.severity.rank, f.rule, f.where))


def failing(findings: Iterable[Finding], *, strict: bool) -> list[Finding]:
    """Findings that make lint fail: errors, and warnings too when strict."""
    worst = Severity.WARNING if strict else Severity.ERROR
    return [f for f in findings if f.severity.rank <= worst.rank]
