"""Prometheus alert rules and a Grafana dashboard, written from the plan.

The rules know the plan's schedules: a job is late when its last success is older
than the longest gap its schedule allows plus a grace (its timeout, or a tenth of
the gap, at least five minutes); a job that never succeeded is caught by
``absent()`` after the same time. RPO status, failing runs, overruns, unreadable
locations, open incidents (a phase past its window, a system past its RTO deadline)
and a daemon that stopped reporting each have a rule. ``promtool check
rules`` accepts what ``rules`` returns (tested); ``dashboard`` uses the same metric
names as ``metrics``.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from drplan.plan.model import Plan
from drplan.plan.schedule import NeverFiresError

MIN_GRACE = timedelta(minutes=5)


def _seconds(value: timedelta) -> int:
    return max(1, int(value.total_seconds()))


def _duration(value: timedelta) -> str:
    """Prometheus duration syntax, units combined (``1d2h24m``)."""
    seconds, out = _seconds(value), ""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            out += f"{seconds // size}{unit}"
            seconds %= size
    return out


def _rule(
    name: str, expr: str, for_: str, severity: str, summary: str, **labels: str
) -> dict[str, Any]:
    return {
        "alert": name,
        "expr": expr,
        "for": for_,
        "labels": {"severity": severity, **labels},
        "annotations": {"summary": summary},
    }


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def rules(plan: Plan, watch_every: timedelta = timedelta(seconds=60)) -> dict[str, Any]:
    """The rule file: one group per concern."""
    jobs = []
    for name, job in plan.jobs.items():
        try:
            gap = job.schedule.worst_gap(plan.job_timezone(job))
        except NeverFiresError:
            gap = None
        if gap is None or gap <= timedelta(0):
            continue  # manual, event-driven and continuous work has no rhythm to miss
        grace = max(job.timeout or gap / 10, MIN_GRACE)
        late = gap + grace
        q = _quote(name)
        jobs.append(_rule(
            "DrplanJobLate",
            f'time() - drplan_job_last_success_timestamp_seconds{{job="{q}"}} > {_seconds(late)}',
            "0m", "error",
            f"job {name} has not succeeded for more than {_duration(late)} (it runs every {_duration(gap)} at worst)",
            job=name,
        ))  # fmt: skip
        jobs.append(_rule(
            "DrplanJobNeverSucceeded",
            f'absent(drplan_job_last_success_timestamp_seconds{{job="{q}"}})',
            _duration(late), "error",
            f"job {name} has not succeeded since the daemon started {_duration(late)} ago",
            job=name,
        ))  # fmt: skip
    jobs.append(_rule(
        "DrplanJobFailing",
        'increase(drplan_job_runs_total{outcome=~"failed|timed_out"}[1h]) >= 2',
        "0m", "error", "job {{ $labels.job }} failed twice or more in the last hour",
    ))  # fmt: skip
    jobs.append(_rule(
        "DrplanJobOverrunning",
        "increase(drplan_job_overruns_total[1h]) > 0",
        "0m", "warning", "job {{ $labels.job }} was still running at its next slot",
    ))  # fmt: skip
    rpo = [
        _rule(
            "DrplanRpoBreached", 'drplan_rpo_status{status="breached"} == 1', "0m", "critical",
            "RPO breached: {{ $labels.data_class }} in {{ $labels.location }}",
        ),
        _rule(
            "DrplanRpoAtRisk", 'drplan_rpo_status{status="at_risk"} == 1', "0m", "warning",
            "RPO at risk: {{ $labels.data_class }} in {{ $labels.location }}",
        ),
        _rule(
            "DrplanLocationUnreadable", "drplan_location_up == 0", "5m", "error",
            "location {{ $labels.location }} cannot be read",
        ),
        _rule(
            "DrplanCheckFoundDamage", "drplan_check_errors > 0", "0m", "critical",
            "the last check of {{ $labels.location }} found {{ $value }} error(s)",
        ),
    ]  # fmt: skip
    drills = [
        _rule(
            "DrplanDrillOverdue", "drplan_drill_overdue == 1", "0m", "error",
            "drill {{ $labels.drill }} is overdue: the testing schedule is not kept",
        ),
        _rule(
            "DrplanDrillFailed", "drplan_drill_last_passed == 0", "0m", "error",
            "the last run of drill {{ $labels.drill }} failed",
        ),
        *(
            _rule(
                f"DrplanKpi{title}",
                f'drplan_kpi_{metric}_ratio{{window="90d",group="all"}} < {target}', "0m",
                "warning", f"{what} over 90 days is below the plan's {target:.0%}",
            )
            for title, metric, what, target in (
                ("RtoAchievement", "within_rto", "recoveries within RTO",
                 plan.success_criteria.rto_achievement),
                ("RpoAchievement", "within_rpo", "recoveries within RPO",
                 plan.success_criteria.rpo_achievement),
                ("DataIntegrity", "integrity", "recoveries passing every validation",
                 plan.success_criteria.data_integrity),
            )
        ),
    ]  # fmt: skip
    stale = watch_every * 3 + timedelta(minutes=2)
    daemon = [
        _rule(
            "DrplanDaemonDown", "absent(drplan_rpo_assessed_timestamp_seconds)", "5m", "critical",
            "no drplan daemon reports: backups are not being scheduled",
        ),
        _rule(
            "DrplanAssessmentStale",
            f"time() - drplan_rpo_assessed_timestamp_seconds > {_seconds(stale)}", "0m", "error",
            "drplan has not read its locations for more than " + _duration(stale),
        ),
    ]  # fmt: skip
    incidents = [
        _rule(
            "DrplanIncidentOpen", 'drplan_incidents_open{rehearsal="false"} > 0', "0m", "critical",
            "{{ $value }} incident(s) of {{ $labels.scenario }} open (tier {{ $labels.tier }})",
        ),
        _rule(
            "DrplanIncidentPhaseOverrun", "drplan_incident_phases_overrun > 0", "0m", "error",
            "incident {{ $labels.incident }}: {{ $value }} phase(s) past their window",
        ),
        _rule(
            "DrplanIncidentRtoMissed", "drplan_incident_rto_remaining_seconds < 0", "0m",
            "critical", "incident {{ $labels.incident }}: {{ $labels.system }} is past its RTO"
            " deadline",
        ),
    ]  # fmt: skip
    return {
        "groups": [
            {"name": "drplan-jobs", "rules": jobs},
            {"name": "drplan-rpo", "rules": rpo},
            {"name": "drplan-drills", "rules": drills},
            {"name": "drplan-incidents", "rules": incidents},
            {"name": "drplan-daemon", "rules": daemon},
        ]
    }


_DATASOURCE = {
    "name": "datasource",
    "type": "datasource",
    "query": "prometheus",
    "label": "Prometheus",
    "current": {},
}


def dashboard(plan: Plan) -> dict[str, Any]:
    """A Grafana dashboard (JSON model, schema 39) over the daemon's metrics."""
    panels: list[dict[str, Any]] = []

    def panel(title: str, kind: str, exprs: list[tuple[str, str]], unit: str, w: int = 12) -> None:
        index = len(panels)
        panels.append({
            "id": index + 1,
            "type": kind,
            "title": title,
            "datasource": {"type": "prometheus", "uid": "${datasource}"},
            "gridPos": {"h": 8, "w": w, "x": (index * 12) % 24, "y": (index // 2) * 8},
            "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
            "targets": [{"refId": chr(65 + i), "expr": e, "legendFormat": legend}
                        for i, (e, legend) in enumerate(exprs)],
        })  # fmt: skip

    panel("RPO exposure against objective", "timeseries", [
        ("drplan_rpo_exposure_seconds", "{{data_class}} in {{location}}"),
        ("drplan_rpo_objective_seconds", "objective {{data_class}}"),
    ], "s")  # fmt: skip
    panel(
        "RPO status",
        "table",
        [("drplan_rpo_status == 1", "{{data_class}} {{location}}: {{status}}")],
        "none",
    )
    panel("Time since last success", "bargauge", [
        ("time() - drplan_job_last_success_timestamp_seconds", "{{job}}"),
    ], "s")  # fmt: skip
    panel("Runs by outcome (1h)", "timeseries", [
        ("increase(drplan_job_runs_total[1h])", "{{job}} {{outcome}}"),
    ], "none")  # fmt: skip
    panel(
        "Location lag", "timeseries", [("drplan_location_lag_seconds", "{{location}} {{job}}")], "s"
    )
    panel("Locations readable", "stat", [("drplan_location_up", "{{location}}")], "none")
    panel("Recoverable window (PostgreSQL)", "timeseries", [
        ("drplan_recoverable_window_seconds", "{{system}}"),
    ], "s")  # fmt: skip
    panel(
        "Data added by the last run",
        "bargauge",
        [("drplan_job_last_added_bytes", "{{job}}")],
        "bytes",
    )
    panel("Stored per location", "timeseries", [
        ("sum by (location) (drplan_location_size_bytes)", "{{location}}"),
        ("drplan_location_size_bytes", "{{location}} {{kind}}"),
    ], "bytes")  # fmt: skip
    panel("Drills: measured RTO and RPO", "timeseries", [
        ("drplan_drill_last_rto_seconds", "RTO {{drill}}"),
        ("drplan_drill_last_rpo_seconds", "RPO {{drill}}"),
    ], "s")  # fmt: skip
    panel("WAL archive age and check errors", "timeseries", [
        ("drplan_wal_archive_age_seconds", "WAL {{system}} in {{location}}"),
        ("drplan_check_errors", "check errors {{location}}"),
    ], "none")  # fmt: skip
    return {
        "title": f"drplan: {plan.name}",
        "uid": "drplan",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "time": {"from": "now-24h", "to": "now"},
        "refresh": "1m",
        "tags": ["drplan", "disaster-recovery"],
        "templating": {"list": [_DATASOURCE]},
        "panels": panels,
    }
