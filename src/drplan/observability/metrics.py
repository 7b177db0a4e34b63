"""``/metrics``: the daemon's state in the Prometheus text format (docs/metrics.md).

A collector renders what the daemon knows at scrape time (its job events and the
watcher's latest status) into metric families; nothing is kept in module globals,
and a registry belongs to one daemon. Names follow Prometheus conventions: a
``drplan_`` prefix, base units (seconds, bytes), ``_total`` for counters,
``_timestamp_seconds`` for points in time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from drplan.observability.rpo import AT_RISK, BREACHED, OK, UNKNOWN
from drplan.observability.status import Status
from drplan.scheduler.daemon import JobEvents

STATUSES = (OK, AT_RISK, BREACHED, UNKNOWN)


class DaemonCollector(Collector):
    def __init__(
        self,
        events: Callable[[], dict[str, JobEvents]],
        status: Callable[[], Status | None],
        running: Callable[[], set[str]],
    ) -> None:
        self.events = events
        self.status = status
        self.running = running

    def collect(self) -> Iterator[Metric]:
        yield from self._jobs()
        status = self.status()
        if status is not None:
            yield from self._rpo(status)
            yield from self._locations(status)
            yield from _drills(status)
            yield from _kpis(status)
            yield from _incidents(status)

    def _jobs(self) -> Iterator[Metric]:
        events = self.events()
        running = self.running()
        last_success = _gauge(
            "drplan_job_last_success_timestamp_seconds",
            "When the job's last successful run ended (Unix time).",
            "job",
        )
        last_attempt = _gauge(
            "drplan_job_last_attempt_timestamp_seconds",
            "When the job's last run started (Unix time).",
            "job",
        )
        runs = CounterMetricFamily(
            "drplan_job_runs", "Runs of the job that ended, by outcome.", labels=["job", "outcome"]
        )
        overruns = CounterMetricFamily(
            "drplan_job_overruns", "Times the job was still running at its next slot.",
            labels=["job"],
        )  # fmt: skip
        is_running = _gauge("drplan_job_running", "1 while a run of the job is going on.", "job")
        duration = _gauge(
            "drplan_job_last_duration_seconds", "How long the job's last ended run took.", "job"
        )
        added = _gauge(
            "drplan_job_last_added_bytes",
            "Bytes of new data the job's last successful run added to the repository.",
            "job",
        )
        for job, e in sorted(events.items()):
            if e.last_success is not None:
                last_success.add_metric([job], e.last_success.timestamp())
            if e.last_attempt is not None:
                last_attempt.add_metric([job], e.last_attempt.timestamp())
            for outcome, count in sorted(e.outcomes.items()):
                runs.add_metric([job, outcome], count)
            overruns.add_metric([job], e.overruns)
            is_running.add_metric([job], 1.0 if job in running else 0.0)
            if e.last_duration is not None:
                duration.add_metric([job], e.last_duration.total_seconds())
            if e.last_added is not None:
                added.add_metric([job], e.last_added)
        yield from (last_success, last_attempt, runs, overruns, is_running, duration, added)
        yield from _checks(events)

    def _rpo(self, status: Status) -> Iterator[Metric]:
        exposure = _gauge(
            "drplan_rpo_exposure_seconds",
            "Now minus the newest point the data class can be restored to from the location.",
            "data_class",
            "location",
        )
        objective = _gauge(
            "drplan_rpo_objective_seconds",
            "The data class's recovery point objective.",
            "data_class",
        )
        state = _gauge(
            "drplan_rpo_status",
            "1 for the data class's current RPO status in the location (ok, at_risk,"
            " breached, unknown), 0 for the others.",
            "data_class",
            "location",
            "status",
        )
        newest = _gauge(
            "drplan_rpo_newest_point_timestamp_seconds",
            "The newest point the data class can be restored to from the location.",
            "data_class",
            "location",
        )
        seen: set[str] = set()
        for e in status.exposures:
            age = e.exposure(status.now)
            if age is not None:
                exposure.add_metric([e.data_class, e.location], age.total_seconds())
                newest.add_metric([e.data_class, e.location], e.newest.timestamp())  # type: ignore[union-attr]
            for name in STATUSES:
                state.add_metric([e.data_class, e.location, name], 1.0 if e.status == name else 0.0)
            if e.data_class not in seen:
                seen.add(e.data_class)
                objective.add_metric([e.data_class], e.objective.total_seconds())
        window = _gauge(
            "drplan_recoverable_window_seconds",
            "Span of the points a PostgreSQL system can be recovered to, from any location.",
            "system",
        )
        for system, (start, end) in sorted(status.windows.items()):
            if start is not None and end is not None:
                window.add_metric([system], (end - start).total_seconds())
        assessed = GaugeMetricFamily(
            "drplan_rpo_assessed_timestamp_seconds", "When the locations were last read."
        )
        assessed.add_metric([], status.now.timestamp())
        yield from (exposure, objective, state, newest, window, assessed)

    def _locations(self, status: Status) -> Iterator[Metric]:
        up = _gauge(
            "drplan_location_up", "1 when the location's repository could be read.", "location"
        )
        snapshots = _gauge("drplan_location_snapshots", "Snapshots in the location.", "location")
        lag = _gauge(
            "drplan_location_lag_seconds",
            "How far the location's newest snapshot of a job is behind the newest anywhere.",
            "location",
            "job",
        )
        size = _gauge(
            "drplan_location_size_bytes",
            "Bytes stored in the location: snapshot data, archived WAL, metadata.",
            "location",
            "kind",
        )
        wal_age = _gauge(
            "drplan_wal_archive_age_seconds",
            "Now minus the newest point the WAL archived in the location reaches.",
            "location",
            "system",
        )
        for name, loc in sorted(status.locations.items()):
            up.add_metric([name], 0.0 if loc.get("error") else 1.0)
            snapshots.add_metric([name], float(loc.get("snapshots", 0)))
            for job, behind in sorted(loc.get("lagging", {}).items()):
                if behind is not None:
                    lag.add_metric([name, job], behind.total_seconds())
            for kind, stored in sorted(loc.get("size", {}).items()):
                size.add_metric([name, kind], float(stored))
            for system, end in sorted(loc.get("wal", {}).items()):
                if end is not None:
                    wal_age.add_metric([name, system], (status.now - end).total_seconds())
        yield from (up, snapshots, lag, size, wal_age)


def _checks(events: dict[str, JobEvents]) -> Iterator[Metric]:
    """The last ``check`` of each location (the tasks named ``check:LOCATION``)."""
    last = _gauge(
        "drplan_check_last_timestamp_seconds", "When the location's last check ended.", "location"
    )
    errors = _gauge(
        "drplan_check_errors", "Errors the location's last check found (0: none).", "location"
    )
    read = _gauge(
        "drplan_check_read_bytes", "Bytes of packs the location's last check read back.", "location"
    )
    for task, e in sorted(events.items()):
        if e.check is not None:
            location = task.removeprefix("check:")
            last.add_metric([location], e.check.at.timestamp())
            errors.add_metric([location], float(e.check.errors))
            read.add_metric([location], float(e.check.bytes_read))
    yield from (last, errors, read)


def _drills(status: Status) -> Iterator[Metric]:
    """Each drill's last run (from the catalog: manual runs too) and whether it is overdue."""
    last = _gauge(
        "drplan_drill_last_run_timestamp_seconds", "When the drill's last run started.", "drill"
    )
    passed = _gauge(
        "drplan_drill_last_passed", "1 when the drill's last run passed, 0 when it failed.", "drill"
    )
    rto = _gauge(
        "drplan_drill_last_rto_seconds",
        "The RTO the drill's last run measured (slowest system).",
        "drill",
    )
    rpo = _gauge(
        "drplan_drill_last_rpo_seconds",
        "The RPO the drill's last run measured (largest loss).",
        "drill",
    )
    overdue = _gauge(
        "drplan_drill_overdue",
        "1 when a slot of the drill's schedule passed without a run.",
        "drill",
    )
    for name, d in sorted(status.drills.items()):
        overdue.add_metric([name], 0.0 if d["overdue_since"] is None else 1.0)
        if d["last_started"] is not None:
            last.add_metric([name], d["last_started"].timestamp())
            passed.add_metric([name], 1.0 if d["last_passed"] else 0.0)
            if d["last_rto_seconds"] is not None:
                rto.add_metric([name], d["last_rto_seconds"])
            if d["last_rpo_seconds"] is not None:
                rpo.add_metric([name], d["last_rpo_seconds"])
    yield from (last, passed, rto, rpo, overdue)


def _kpis(status: Status) -> Iterator[Metric]:
    """The recovery KPIs per window and group (all, tier:T, class:C), from the drills."""
    count = _gauge("drplan_kpi_recoveries", "Recoveries (drilled systems) in the window.",
                   "window", "group")  # fmt: skip
    labels = ("window", "group")
    ratios = {
        "within_rto": _gauge("drplan_kpi_within_rto_ratio",
                             "Share of the window's recoveries within their RTO.", *labels),
        "within_rpo": _gauge("drplan_kpi_within_rpo_ratio",
                             "Share of the window's recoveries within their RPO.", *labels),
        "integrity": _gauge("drplan_kpi_integrity_ratio",
                            "Share of the window's recoveries that passed every validation.",
                            *labels),
    }  # fmt: skip
    for window, groups in sorted(status.kpis.items()):
        for group, k in sorted(groups.items()):
            count.add_metric([window, group], float(k["recoveries"]))
            for key, gauge in ratios.items():
                if k[key] is not None:
                    gauge.add_metric([window, group], float(k[key]))
    yield from (count, *ratios.values())


def _incidents(status: Status) -> Iterator[Metric]:
    """Open incidents by scenario and tier, each system's time left to its deadline, and
    the phases past their window with steps open."""
    open_ = _gauge("drplan_incidents_open", "Open incidents, by scenario and tier.",
                   "scenario", "tier", "rehearsal")  # fmt: skip
    left = _gauge("drplan_incident_rto_remaining_seconds",
                  "Time left to the system's RTO deadline in an open incident (negative: missed);"
                  " a system recovered is not listed.", "incident", "system", "scenario")  # fmt: skip
    overrun = _gauge("drplan_incident_phases_overrun",
                     "Phases of an open incident past their window with steps open.",
                     "incident", "scenario")  # fmt: skip
    counts: dict[tuple[str, str, str], int] = {}
    for inc in status.incidents:
        key = (inc["scenario"], str(inc["tier"]), "true" if inc["rehearsal"] else "false")
        counts[key] = counts.get(key, 0) + 1
        for system in inc["clock"]["systems"]:
            if system["recovered"] is None:
                left.add_metric([inc["id"], system["system"], inc["scenario"]],
                                float(system["remaining_seconds"]))  # fmt: skip
        overrun.add_metric([inc["id"], inc["scenario"]],
                           float(sum(1 for p in inc["phases"] if p["overrun"])))  # fmt: skip
    for key, n in sorted(counts.items()):
        open_.add_metric(list(key), float(n))
    yield from (open_, left, overrun)


def _gauge(name: str, doc: str, *labels: str) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=list(labels))


def registry(collector: DaemonCollector) -> CollectorRegistry:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(collector)
    return reg
