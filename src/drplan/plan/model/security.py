"""Responding to a security breach: how long one may go unnoticed, and where evidence of the
compromised systems is preserved."""

from __future__ import annotations

from pydantic import StrictBool

from drplan.plan.durations import Duration
from drplan.plan.model.base import Name, PlanModel


class Evidence(PlanModel):
    location: Name
    """The location (see `locations`) `drplan evidence capture` copies compromised systems
    into, as they are: an S3 location with `immutability: {mode: compliance, days: N}`, so
    that nobody, the bucket's owner included, can delete the evidence before its lock ends
    (docs/security.md, "Evidence"). Best a bucket or prefix of its own: evidence is never
    forgotten there."""
    allow_unlocked: StrictBool = False
    """Accept an evidence location without compliance-mode Object Lock: lint (DR024) stays
    quiet, and captures there need no `--unlocked`; each is still recorded in the
    incident's timeline as not immutable."""


class Security(PlanModel):
    detection_window: Duration | None = None
    """How long a compromise may go unnoticed (e.g. `30d`): an attacker inside that long may
    delete every backup whose Object Lock ends sooner, so lint (DR025, DR026) holds each
    location's `immutability.days` against it (docs/security.md, "Detection window")."""
    evidence: Evidence | None = None
    """Where evidence goes (`drplan evidence capture SYSTEM`, a runbook action too)."""


def compliance_locked(location: object) -> bool:
    """Whether a location keeps what is written to it under compliance-mode Object Lock:
    the one kind of lock nobody can lift (governance mode yields to privileged users)."""
    immutability = getattr(location, "immutability", None)
    return immutability is not None and immutability.mode == "compliance"
