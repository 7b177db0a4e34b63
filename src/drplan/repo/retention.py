"""Which snapshots a retention policy keeps, and why; pure functions over snapshot lists.

Rules, applied within each group of snapshots (by host and paths, or by job):

- ``keep_last N``: the newest N;
- ``keep_hourly/daily/weekly/monthly/yearly N``: the newest snapshot in each of the
  last N hours/days/ISO weeks/months/years that have one (in UTC);
- ``keep_within D``: every snapshot taken within D of the group's newest snapshot.
  Measured from the newest snapshot, not from now, so that when backups stop,
  forget never empties the repository;
- ``keep_tags``: every snapshot carrying one of these tags.

A snapshot kept by any rule is kept. An empty policy keeps everything: nothing is
ever forgotten without a rule saying so. Evidence (tagged ``evidence``, or of source
kind ``evidence``: ``drplan evidence capture``) is kept whatever the policy: drplan never
deletes evidence, so forget never lets it go and prune never frees what it needs.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from drplan.repo.snapshot import Snapshot

if TYPE_CHECKING:  # the plan schema is slow to import; only plan-driven callers pass one
    from drplan.plan.model import Plan, Retention

Bucket = Callable[[datetime], tuple[int, ...]]

EVIDENCE_TAG = "evidence"

BUCKETS: dict[str, Bucket] = {
    "hourly": lambda t: (t.year, t.month, t.day, t.hour),
    "daily": lambda t: (t.year, t.month, t.day),
    "weekly": lambda t: tuple(t.isocalendar()[:2]),
    "monthly": lambda t: (t.year, t.month),
    "yearly": lambda t: (t.year,),
}


@dataclass(frozen=True)
class Policy:
    last: int = 0
    hourly: int = 0
    daily: int = 0
    weekly: int = 0
    monthly: int = 0
    yearly: int = 0
    within: timedelta | None = None
    tags: frozenset[str] = frozenset()

    @classmethod
    def from_plan(cls, retention: Retention) -> Policy:
        return cls(
            last=retention.keep_last or 0,
            hourly=retention.keep_hourly or 0,
            daily=retention.keep_daily or 0,
            weekly=retention.keep_weekly or 0,
            monthly=retention.keep_monthly or 0,
            yearly=retention.keep_yearly or 0,
            within=retention.keep_within,
        )

    @property
    def empty(self) -> bool:
        counts = (self.last, self.hourly, self.daily, self.weekly, self.monthly, self.yearly)
        return not any(counts) and self.within is None and not self.tags

    def describe(self) -> str:
        parts = [f"last {self.last}"] if self.last else []
        parts += [f"{name} {getattr(self, name)}" for name in BUCKETS if getattr(self, name)]
        if self.within is not None:
            parts.append(f"within {_format(self.within)}")
        if self.tags:
            parts.append(f"tags {', '.join(sorted(self.tags))}")
        return ", ".join(parts) or "keep everything"


@dataclass
class Decision:
    snapshot: Snapshot
    keep: bool
    reasons: list[str] = field(default_factory=list)


def apply_policy(snapshots: Iterable[Snapshot], policy: Policy) -> list[Decision]:
    """One decision per snapshot of one group, newest first."""
    ordered = sorted(snapshots, key=lambda s: (s.time, s.id), reverse=True)
    decisions = [Decision(s, policy.empty, ["no policy"] if policy.empty else []) for s in ordered]
    if policy.empty or not ordered:
        return decisions
    for i, d in enumerate(decisions[: policy.last]):
        d.reasons.append(f"last {i + 1}")
    for name, bucket in BUCKETS.items():
        wanted = getattr(policy, name)
        seen: list[tuple[int, ...]] = []
        for d in decisions:
            if len(seen) >= wanted:
                break
            key = bucket(d.snapshot.time)
            if key not in seen:
                seen.append(key)
                d.reasons.append(f"{name} {len(seen)}")
    if policy.within is not None:
        cutoff = ordered[0].time - policy.within
        for d in decisions:
            if d.snapshot.time >= cutoff:
                d.reasons.append(f"within {_format(policy.within)}")
    for d in decisions:
        tagged = policy.tags & set(d.snapshot.tags)
        if tagged:
            d.reasons.append(f"tag {', '.join(sorted(tagged))}")
        d.keep = bool(d.reasons)
    return decisions


def _format(duration: timedelta) -> str:
    # Imported here: durations pulls in pydantic, which a copy or a backup need not load.
    from drplan.plan.durations import format_duration  # noqa: PLC0415

    return format_duration(duration)


def group_key(snapshot: Snapshot, by: tuple[str, ...]) -> tuple[object, ...]:
    """The group a snapshot belongs to: by any of host, paths, tags, job."""
    values: dict[str, object] = {
        "host": snapshot.host,
        "paths": tuple(snapshot.paths),
        "tags": tuple(snapshot.tags),
        "job": snapshot.job,
    }
    return tuple(values[k] for k in by)


def plan_policies(plan: Plan, location: str | None) -> dict[str | None, Policy]:
    """The policy for each job's snapshots in ``location``: the location's own retention
    when it has one, else the job's. Snapshots of no job (or a job without retention)
    get the empty policy: kept."""
    where = plan.locations.get(location or "")
    policies: dict[str | None, Policy] = defaultdict(Policy)
    for name, job in plan.jobs.items():
        retention = (where.retention if where and where.retention else None) or job.retention
        if retention is not None:
            policies[name] = Policy.from_plan(retention)
    return policies


def decide(
    snapshots: Iterable[Snapshot], policies: dict[str | None, Policy], by: tuple[str, ...]
) -> list[Decision]:
    """Decisions for every snapshot: grouped by job and ``by``, each group with its job's policy."""
    groups: dict[tuple[object, ...], list[Snapshot]] = defaultdict(list)
    for s in snapshots:
        groups[(s.job, *group_key(s, by))].append(s)
    decisions = [
        d
        for (job, *_), members in groups.items()
        for d in apply_policy(members, policies[job])  # type: ignore[index]
    ]
    for d in decisions:
        if is_evidence(d.snapshot):
            d.keep = True
            d.reasons.append("evidence: never forgotten")
    return decisions


def is_evidence(snapshot: Snapshot) -> bool:
    return EVIDENCE_TAG in snapshot.tags or snapshot.source.get("kind") == EVIDENCE_TAG


def keep_chains(decisions: list[Decision]) -> None:
    """Keep every snapshot a kept one builds on (an incremental base backup's full and
    earlier incrementals, listed in its ``source.chain``): forgetting one would leave
    the kept snapshot impossible to restore."""
    by_id = {d.snapshot.id: d for d in decisions}
    for d in [d for d in decisions if d.keep]:
        for needed in d.snapshot.source.get("chain", []):
            base = by_id.get(needed)
            if base is not None and not base.keep:
                base.keep = True
                base.reasons.append(f"needed by {d.snapshot.short_id}")
            elif base is not None and f"needed by {d.snapshot.short_id}" not in base.reasons:
                base.reasons.append(f"needed by {d.snapshot.short_id}")
