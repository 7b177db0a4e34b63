"""Rules about responding to a breach: evidence that could be deleted is no evidence."""

from __future__ import annotations

from collections.abc import Iterator

from drplan.plan.lint.engine import Hit, LintContext
from drplan.plan.model import Plan
from drplan.plan.model.security import compliance_locked
from drplan.plan.source import PathKey


def evidence_not_immutable(ctx: LintContext) -> Iterator[Hit]:
    """The evidence location (the plan's, or a runbook step's `--location`) is unknown or
    not under compliance-mode Object Lock, unless the plan or the step says so; or a
    runbook captures evidence while the plan names no location for it."""
    plan = ctx.plan
    evidence = plan.security.evidence
    if evidence is not None:
        chosen: PathKey = ("security", "evidence", "location")
        yield from _unlocked(plan, evidence.location, chosen, evidence.allow_unlocked)
    for path, title, words in _captures(plan):
        named = _option(words, "--location")
        if named is None and evidence is None:
            yield Hit(path, f"step '{title}' captures evidence, but the plan names no evidence"
                      " location", "set `security: {evidence: {location: NAME}}`, or pass"
                      " --location")  # fmt: skip
        elif named is not None:
            yield from _unlocked(plan, named, path, "--unlocked" in words)


def _unlocked(plan: Plan, name: str, path: PathKey, allowed: bool) -> Iterator[Hit]:
    location = plan.locations.get(name)
    if location is None:
        yield Hit(path, f"evidence goes to location '{name}', which the plan does not define",
                  f"name one of: {', '.join(plan.locations)}")  # fmt: skip
    elif not allowed and not compliance_locked(location):
        yield Hit(
            path,
            f"evidence goes to '{name}', which has no Object Lock in compliance mode: whoever"
            " holds its credentials (the attacker too) can delete the evidence",
            "use an S3 location with `immutability: {mode: compliance, days: N}`, or accept it"
            " (`allow_unlocked: true`; in a step, --unlocked)",
        )


def _option(words: list[str], flag: str) -> str | None:
    """The value a command line gives ``flag`` (``--flag V`` or ``--flag=V``), if any."""
    for i, word in enumerate(words):
        if word == flag:
            return words[i + 1] if i + 1 < len(words) else ""
        if word.startswith(flag + "="):
            return word.split("=", 1)[1]
    return None


def _captures(plan: Plan) -> Iterator[tuple[PathKey, str, list[str]]]:
    """Each runbook step that captures evidence: where it is, its title, its words."""
    for name, runbook in plan.runbooks.items():
        for p, phase in enumerate(runbook.phases):
            for s, step in enumerate(phase.steps):
                words = (step.action or "").split()
                if words[:2] == ["evidence", "capture"]:
                    yield ("runbooks", name, "phases", p, "steps", s, "action"), step.title, words
