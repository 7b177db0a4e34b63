"""Lint: does the plan meet its own objectives? Rules that find plans which cannot.

A plan can be valid (every key known, every name defined) and still unable to
deliver what it promises: a job that runs less often than its data's RPO, a data
class with no off-site copy, a critical system waiting on a non-critical one.
Each rule has a stable id (``DR001``), a severity, and for every finding a
message saying what is wrong and a hint saying what to change.

Severities: ``error`` (the plan cannot meet an objective), ``warning`` (it meets it
with no margin, or leaves a gap a reviewer would flag), ``info`` (worth knowing).
"""

from __future__ import annotations

from drplan.plan.lint.engine import (
    Finding,
    LintContext,
    Rule,
    Severity,
    failing,
    run_lint,
)
from drplan.plan.lint.rules import RULES

__all__ = ["RULES", "Finding", "LintContext", "Rule", "Severity", "failing", "run_lint"]
