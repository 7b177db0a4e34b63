"""What a drill found: per system (and per stage of a scenario) the recovery's phases,
validations, measured RTO and RPO against the objectives; for the drill, whether it
passed. The evidence file and the catalog row are made from these."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from drplan import __version__, clock
from drplan.drills.validations import Validation
from drplan.plan.model import Plan

PHASES = ("fetch", "rebuild", "verify", "start", "replay", "validate")


@dataclass
class SystemResult:
    system: str
    disaster: datetime
    location: str | None = None
    snapshots: list[str] = field(default_factory=list)
    recovery_point: str = "latest"
    reached_lsn: str | None = None
    last_transaction: datetime | None = None
    sentinel_found: bool | None = None  # None: no sentinel was written
    phases: dict[str, float] = field(default_factory=dict)
    validations: list[Validation] = field(default_factory=list)
    rto_seconds: float | None = None
    rto_objective_seconds: float = 0.0
    rpo_seconds: float | None = None
    rpo_objective_seconds: float | None = None
    server_version: int | None = None
    error: str | None = None  # why the recovery itself failed
    stage: str = "recovery"  # or "corruption", "recovery before the corruption"
    restored_bytes: int | None = None  # the base backups' data (predictions scale by it)
    wal_bytes: int | None = None  # WAL replayed past the base backup's start

    @property
    def failures(self) -> list[str]:
        who = self.system if self.stage == "recovery" else f"{self.system} ({self.stage})"
        found = [f"{who}: {self.error}"] if self.error else []
        found += [f"{who}: {v.name} failed: {v.detail}" for v in self.validations
                  if v.outcome == "failed"]  # fmt: skip
        if self.rto_seconds is not None and self.rto_seconds > self.rto_objective_seconds:
            found.append(f"{self.system}: RTO {self.rto_seconds:.0f}s is over its objective"
                         f" {self.rto_objective_seconds:.0f}s")  # fmt: skip
        if (self.rpo_seconds is not None and self.rpo_objective_seconds is not None
                and self.rpo_seconds > self.rpo_objective_seconds):  # fmt: skip
            found.append(f"{self.system}: RPO {self.rpo_seconds:.0f}s is over its objective"
                         f" {self.rpo_objective_seconds:.0f}s")  # fmt: skip
        return found

    def as_dict(self) -> dict[str, Any]:
        return {
            "system": self.system,
            "stage": self.stage,
            "disaster": clock.rfc3339(self.disaster),
            "location": self.location,
            "snapshots": self.snapshots,
            "recovery_point": self.recovery_point,
            "reached": {
                "lsn": self.reached_lsn,
                "last_transaction": self.last_transaction.isoformat()
                if self.last_transaction
                else None,
                "sentinel_found": self.sentinel_found,
            },
            "phases": {p: self.phases[p] for p in PHASES if p in self.phases},
            "rto": {
                "seconds": _round(self.rto_seconds),
                "objective_seconds": self.rto_objective_seconds,
                "met": self.rto_seconds is not None
                and self.rto_seconds <= self.rto_objective_seconds,
            },
            "rpo": {
                "seconds": _round(self.rpo_seconds),
                "objective_seconds": self.rpo_objective_seconds,
                "met": self.rpo_seconds is not None
                and (
                    self.rpo_objective_seconds is None
                    or self.rpo_seconds <= self.rpo_objective_seconds
                ),
            },
            "validations": [v.as_dict() for v in self.validations],
            "size": {"restored_bytes": self.restored_bytes, "wal_bytes": self.wal_bytes},
            "server_version": self.server_version,
            "error": self.error,
        }


@dataclass
class DrillResult:
    drill: str
    kind: str
    scenario: str | None
    run: str
    started_at: datetime
    ended_at: datetime | None = None
    budget_seconds: float = 0.0
    systems: list[SystemResult] = field(default_factory=list)
    error: str | None = None  # why the drill as a whole stopped (budget, refusal)
    kept: str | None = None  # the scratch directory, when --keep
    # Service and full-platform drills: the chain of dependencies that took longest, its
    # time, the full-platform RTO, and what past drills predicted before this one began.
    critical_path: list[str] = field(default_factory=list)
    critical_seconds: float | None = None
    critical_objective_seconds: float | None = None
    predicted_seconds: float | None = None

    @property
    def failures(self) -> list[str]:
        found = [self.error] if self.error else []
        for system in self.systems:
            found += system.failures
        if (self.critical_seconds is not None and self.critical_objective_seconds is not None
                and self.critical_seconds > self.critical_objective_seconds):  # fmt: skip
            found.append(f"the platform's critical path took {self.critical_seconds:.0f}s, over"
                         f" the full-platform RTO of {self.critical_objective_seconds:.0f}s")  # fmt: skip
        return found

    @property
    def passed(self) -> bool:
        return not self.failures and bool(self.systems)

    def as_dict(self) -> dict[str, Any]:
        return {
            "drill": self.drill,
            "kind": self.kind,
            "scenario": self.scenario,
            "run": self.run,
            "started_at": clock.rfc3339(self.started_at),
            "ended_at": clock.rfc3339(self.ended_at) if self.ended_at else None,
            "budget_seconds": self.budget_seconds,
            "passed": self.passed,
            "failures": self.failures,
            "systems": [s.as_dict() for s in self.systems],
            "kept": self.kept,
            "critical_path": {
                "systems": self.critical_path,
                "seconds": _round(self.critical_seconds),
                "objective_seconds": self.critical_objective_seconds,
                "predicted_seconds": _round(self.predicted_seconds),
            },
            "drplan_version": __version__,
        }


def new_result(
    plan: Plan,
    system: str,
    disaster: datetime,
    location: str | None,
    recovery_point: str,
    stage: str = "recovery",
) -> SystemResult:
    """A system's result with its objectives: its RTO (its own, else its tier's) and the
    tightest RPO of its data classes."""
    outcome = SystemResult(system, disaster, location, recovery_point=recovery_point, stage=stage)
    outcome.rto_objective_seconds = plan.rto_of(system).total_seconds()
    classes = plan.systems[system].data_classes
    objectives = [plan.objectives.rpo[c] for c in classes if c in plan.objectives.rpo]
    outcome.rpo_objective_seconds = min(objectives).total_seconds() if objectives else None
    return outcome


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
