"""The rule table: every lint rule's id, name, severity and check, in one place.

Ids are stable: a plan's reviewers and CI configurations refer to them.
"""

from __future__ import annotations

from drplan.plan.lint import backups as cov
from drplan.plan.lint import detection as det
from drplan.plan.lint import readiness as ready
from drplan.plan.lint import security as sec
from drplan.plan.lint.engine import Rule, Severity

E, W, INFO = Severity.ERROR, Severity.WARNING, Severity.INFO

RULES: tuple[Rule, ...] = (
    Rule(
        "DR001",
        "interval-exceeds-rpo",
        E,
        "a data class is backed up less often than its RPO",
        cov.interval_exceeds_rpo,
    ),
    Rule(
        "DR002",
        "interval-equals-rpo",
        W,
        "a data class is backed up exactly as often as its RPO, leaving no margin",
        cov.interval_equals_rpo,
    ),
    Rule(
        "DR003",
        "data-class-without-job",
        E,
        "a system's data class has no backup job",
        cov.data_class_without_job,
    ),
    Rule(
        "DR004",
        "no-offsite-copy",
        E,
        "a data class has no copy off the primary site",
        cov.no_offsite_copy,
    ),
    Rule(
        "DR005",
        "critical-single-location",
        E,
        "a critical system's data is kept in fewer than two locations",
        cov.critical_single_location,
    ),
    Rule(
        "DR006",
        "depends-on-lower-tier",
        E,
        "a system depends on a system of a slower tier",
        ready.depends_on_lower_tier,
    ),
    Rule(
        "DR007",
        "retention-below-requirement",
        E,
        "a job keeps backups for less time than its data class requires",
        cov.retention_below_requirement,
    ),
    Rule(
        "DR008",
        "tier-without-drill",
        W,
        "a tier has no scheduled drill, so its RTO is never measured",
        ready.tier_without_drill,
    ),
    Rule(
        "DR009",
        "review-past-due",
        W,
        "the plan's review date has passed, or it has none",
        ready.review_past_due,
    ),
    Rule(
        "DR010",
        "system-rto-exceeds-tier",
        E,
        "a system's RTO is longer than its tier's",
        ready.system_rto_exceeds_tier,
    ),
    Rule(
        "DR011",
        "schedule-never-fires",
        E,
        "a cron schedule matches no date",
        cov.schedule_never_fires,
    ),
    Rule(
        "DR012",
        "runbook-phase-exceeds-rto",
        W,
        "a runbook recovers a system in a phase that ends after the system's RTO",
        ready.runbook_phase_exceeds_rto,
    ),
    Rule(
        "DR013",
        "no-immutable-copy",
        W,
        "critical data has no immutable (object-locked) copy",
        ready.no_immutable_copy,
    ),
    Rule("DR014", "location-unused", INFO, "a location no job writes to", cov.location_unused),
    Rule("DR015", "role-unreachable", W, "a role has no way to be reached", ready.role_unreachable),
    Rule(
        "DR016",
        "scenario-without-runbook",
        W,
        "a disaster scenario has no runbook",
        ready.scenario_without_runbook,
    ),
    Rule(
        "DR017",
        "drill-budget-exceeds-rto",
        W,
        "a drill may take longer than the RTO it proves",
        ready.drill_budget_exceeds_rto,
    ),
    Rule(
        "DR018",
        "tier-rto-order",
        W,
        "tier RTOs contradict each other or the full-platform RTO",
        ready.tier_rto_order,
    ),
    Rule(
        "DR019",
        "required-location-missing",
        E,
        "a data class does not reach every location it requires",
        cov.required_location_missing,
    ),
    Rule(
        "DR020",
        "drill-location-lacks-data",
        E,
        "a drill restores from a location that does not hold its systems",
        ready.drill_location_lacks_data,
    ),
    Rule(
        "DR021",
        "system-drilled-only-by-hand",
        W,
        "a system is recovered only by drills run by hand: no scheduled drill measures it",
        ready.system_drilled_only_by_hand,
    ),
    Rule(
        "DR022",
        "wal-loss-exceeds-rpo",
        E,
        "a PostgreSQL system's WAL setup can lose more than its RPO in a crash"
        " (archive_command without archive_timeout bounds nothing)",
        cov.wal_loss_exceeds_rpo,
    ),
    Rule(
        "DR023",
        "production-write-without-approval",
        W,
        "an automated runbook step writes to production (recovers systems, restores into"
        " production) without an approval gate",
        ready.production_write_without_approval,
    ),
    Rule(
        "DR024",
        "evidence-not-immutable",
        E,
        "evidence would go to a location without compliance-mode Object Lock (or to none)",
        sec.evidence_not_immutable,
    ),
    Rule(
        "DR025",
        "lock-shorter-than-detection",
        E,
        "a job's only immutable copies are locked for less than the detection window",
        det.lock_shorter_than_detection,
    ),
    Rule(
        "DR026",
        "shorter-lock-beside-longer",
        W,
        "a location is locked for less than the detection window (its jobs have a longer lock"
        " elsewhere)",
        det.shorter_lock_beside_longer,
    ),
)
