"""Rendering a plan summary as Rich tables for people (``drplan plan show``)."""

from __future__ import annotations

from datetime import timedelta

from rich.console import Console
from rich.table import Table

from drplan.clock import rfc3339
from drplan.plan.durations import format_duration
from drplan.plan.model import LocalLocation, Plan, S3Location
from drplan.plan.summary import PlanSummary, Timing


def _dur(value: timedelta | None) -> str:
    if value is None:
        return "-"
    return format_duration(value) if value else "continuous"


def _next(t: Timing) -> str:
    if t.never_fires:
        return "[red]never[/]"
    return rfc3339(t.next_runs[0]) if t.next_runs else "-"


def _pct(value: float) -> str:
    return f"{value * 100:g}%"


def render_summary(out: Console, summary: PlanSummary) -> None:
    plan = summary.plan
    review = plan.review
    header = f"[bold]{plan.name}[/] · plan format {plan.version} · time zone {plan.timezone}"
    if review:
        header += f" · document {review.version}, next review {review.next_review}"
    out.print(header)
    for table in (
        _objectives(summary),
        _systems(summary),
        _jobs(summary),
        _locations(plan),
        _scenarios(plan),
        _drills(summary),
        _people(plan),
        _criteria(plan),
    ):
        out.print(table)


def _objectives(summary: PlanSummary) -> Table:
    plan = summary.plan
    table = Table(title="Objectives", title_justify="left")
    for col in ("objective", "target", "applies to", "jobs (longest wait between backups)"):
        table.add_column(col)
    rto = plan.objectives.rto
    for tier in ("critical", "important", "non_critical"):
        members = sorted(n for n, s in plan.systems.items() if s.tier == tier)
        table.add_row(f"RTO {tier}", _dur(getattr(rto, tier)), ", ".join(members) or "-", "")
    table.add_row("RTO full platform", _dur(rto.full_platform), "all systems", "")
    for cls, rpo in plan.objectives.rpo.items():
        covs = [c for c in summary.coverage if c.data_class == cls]
        gaps = [c.best_gap for c in covs if c.best_gap is not None]
        best = f"{', '.join(sorted({j for c in covs for j in c.jobs}))} ({_dur(max(gaps) if gaps else None)})"
        table.add_row(
            f"RPO {cls}", _dur(rpo), ", ".join(sorted({c.system for c in covs})) or "-", best
        )
    return table


def _systems(summary: PlanSummary) -> Table:
    plan = summary.plan
    wave_of = {name: i + 1 for i, wave in enumerate(summary.recovery_waves) for name in wave}
    table = Table(title="Systems (recovery order)", title_justify="left")
    for col in ("wave", "system", "tier", "kind", "RTO", "data classes", "depends on", "owner"):
        table.add_column(col)
    for name in [n for wave in summary.recovery_waves for n in wave]:
        s = plan.systems[name]
        table.add_row(
            str(wave_of[name]),
            name,
            s.tier.value,
            s.kind,
            _dur(plan.rto_of(name)),
            ", ".join(s.data_classes),
            ", ".join(s.depends_on) or "-",
            s.owner or "-",
        )
    return table


def _jobs(summary: PlanSummary) -> Table:
    plan = summary.plan
    table = Table(title="Jobs", title_justify="left")
    for col in ("job", "system", "type", "schedule", "next run (UTC)", "retention", "locations"):
        table.add_column(col)
    for name, job in plan.jobs.items():
        retention = (
            ", ".join(
                f"{k.removeprefix('keep_')} {format_duration(v) if isinstance(v, timedelta) else v}"
                for k, v in job.retention
                if v is not None
            )
            if job.retention
            else "keep all"
        )
        table.add_row(
            name,
            job.system,
            job.type.value,
            str(job.schedule),
            _next(summary.jobs[name]),
            retention,
            ", ".join(job.locations),
        )
    return table


def _locations(plan: Plan) -> Table:
    table = Table(title="Locations", title_justify="left")
    for col in ("location", "role", "where", "off-site", "class", "immutable", "encryption"):
        table.add_column(col)
    for name, loc in plan.locations.items():
        if isinstance(loc, LocalLocation):
            where, cls, lock, sse = loc.path, "-", "-", "-"
        else:
            assert isinstance(loc, S3Location)
            where = f"s3://{loc.bucket}/{loc.prefix}" + (f" ({loc.region})" if loc.region else "")
            cls = loc.storage_class
            lock = f"{loc.immutability.mode} {loc.immutability.days}d" if loc.immutability else "no"
            sse = loc.server_side_encryption
        client = plan.repository.encryption
        table.add_row(
            name,
            loc.role.value,
            where,
            "yes" if loc.is_offsite else "no",
            cls,
            lock,
            client + ("" if sse in ("-", "none") else f" + {sse}"),
        )
    return table


def _scenarios(plan: Plan) -> Table:
    table = Table(title="Disaster scenarios", title_justify="left")
    for col in ("tier", "scenario", "runbook", "phases"):
        table.add_column(col)
    for name, sc in sorted(plan.scenarios.items(), key=lambda kv: (kv[1].tier, kv[0])):
        runbook = plan.runbooks.get(sc.runbook) if sc.runbook else None
        phases = (
            " → ".join(f"{p.name} ({p.window})" if p.window else p.name for p in runbook.phases)
            if runbook
            else "-"
        )
        table.add_row(str(sc.tier), f"{sc.title} ({name})", sc.runbook or "-", phases)
    return table


def _drills(summary: PlanSummary) -> Table:
    table = Table(title="Drills", title_justify="left")
    for col in ("drill", "kind", "systems", "schedule", "next run (UTC)", "from"):
        table.add_column(col)
    for name, drill in summary.plan.drills.items():
        table.add_row(
            name,
            drill.kind,
            ", ".join(drill.systems) or "all",
            drill.schedule_text,
            _next(summary.drills[name]),
            drill.from_location or "first reachable",
        )
    return table


def _people(plan: Plan) -> Table:
    table = Table(title="Roles and channels", title_justify="left")
    for col in ("name", "what", "who / where", "reach"):
        table.add_column(col)
    for name, role in plan.roles.items():
        reach = ", ".join(x for x in (role.phone, role.email, role.slack) if x) or "-"
        table.add_row(name, role.title, role.holder, reach)
    for name, channel in plan.channels.items():
        target = getattr(channel, "channel", None) or getattr(channel, "to", None) or ""
        if isinstance(target, list):
            target = ", ".join(target)
        table.add_row(name, f"channel ({channel.kind})", str(target) or "-", "")
    return table


def _criteria(plan: Plan) -> Table:
    sc = plan.success_criteria
    table = Table(title="Success criteria", title_justify="left")
    table.add_column("criterion")
    table.add_column("target")
    table.add_row("recoveries within RTO", _pct(sc.rto_achievement))
    table.add_row("recoveries within RPO", _pct(sc.rpo_achievement))
    table.add_row("data integrity", _pct(sc.data_integrity))
    if sc.service_quality:
        table.add_row("service quality", sc.service_quality)
    for kpi, meaning in sc.kpis.items():
        table.add_row(f"KPI {kpi}", meaning)
    return table
