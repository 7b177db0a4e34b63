"""The catalog rebuilt from the repositories of the plan's locations and the drills'
evidence: one run per snapshot of a job (wherever copies of it are), as the snapshot
tells it; the drills whose evidence is intact; what could not be read named; and a
second rebuild adds nothing."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from drplan.catalog.paths import sqlite_url
from drplan.catalog.rebuild import NOT_REBUILT, rebuild
from drplan.catalog.store import PARTIAL, SUCCEEDED, Catalog
from drplan.drills.evidence import catalog_row, write_evidence
from drplan.drills.results import DrillResult, SystemResult
from drplan.drills.validations import Validation
from drplan.plan.loader import load_plan
from drplan.plan.model import LocalLocation, Plan
from drplan.repo.replication import copy_snapshots, open_replica
from drplan.repo.repository import Repository
from drplan.repo.snapshot import Snapshot, Summary
from drplan.storage.local import LocalStorage
from tests.integration.conftest import PASSWORD, files_job_plan, init_repo

T0 = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)


def snapshot(
    repo: Repository, job: str | None, at: datetime, errors: list[str] | None = None
) -> Snapshot:
    saved = Snapshot(time=at, tree=repo.save_tree([]), paths=["/srv/web"], host="web1",
                     user="root", job=job,
                     summary=Summary(bytes_added=1000, bytes_stored=600, duration_seconds=42.5,
                                     errors=errors or []))  # fmt: skip
    repo.save_snapshot(saved)
    return saved


def drill(run: str, at: datetime, rto: float) -> DrillResult:
    system = SystemResult("web", at, "primary", rto_seconds=rto, rto_objective_seconds=3600,
                          rpo_seconds=30.0, rpo_objective_seconds=14400.0,
                          validations=[Validation("files", "files", "passed", 0.5)])  # fmt: skip
    return DrillResult("web-restore", "service", None, run, at, at + timedelta(seconds=rto),
                       systems=[system])  # fmt: skip


@pytest.fixture
def plan(tmp_path: Path) -> Plan:
    """Job `web` (hourly) writes to `primary` and copies to `secondary`; `lost` was never
    made (its disk is gone)."""
    locations = {
        name: {"role": role, "kind": "local", "path": str(tmp_path / name)}
        for name, role in (("primary", "primary"), ("secondary", "secondary"), ("lost", "cloud"))
    }
    path = files_job_plan(tmp_path, tmp_path / "src", locations)
    raw = yaml.safe_load(path.read_text())
    raw["jobs"]["web"]["locations"] = ["primary", "secondary"]
    path.write_text(yaml.safe_dump(raw))
    return load_plan(path).plan


def open_location(plan: Plan) -> Callable[[str], Repository]:
    def opened(name: str) -> Repository:
        location = plan.locations[name]
        assert isinstance(location, LocalLocation)
        return Repository.open(LocalStorage(location.path), PASSWORD.encode())

    return opened


def test_the_catalog_is_rebuilt_from_every_location_and_the_evidence(
    tmp_path: Path, plan: Plan
) -> None:
    primary = init_repo(LocalStorage(tmp_path / "primary"))
    first = snapshot(primary, "web", T0 + timedelta(minutes=5))
    partial = snapshot(primary, "web", T0 + timedelta(hours=1, minutes=3), ["/srv/web/x: denied"])
    snapshot(primary, None, T0 + timedelta(minutes=30))  # `drplan backup files`: no job's run
    retired = snapshot(primary, "old-job", T0)  # a job no longer in the plan: still history
    primary.load_index()
    secondary, _ = open_replica(primary, LocalStorage(tmp_path / "secondary"), create=True)
    secondary.load_index()
    copy_snapshots(primary, secondary, [first, partial])
    alone = snapshot(secondary, "web", T0 + timedelta(hours=2, minutes=1))  # primary was down
    evidence = tmp_path / "evidence"
    kept = [drill("a1", T0, 61.25), drill("b2", T0 + timedelta(days=1), 58.0)]
    paths = [write_evidence(result, evidence) for result in kept]
    tampered, _ = write_evidence(drill("c3", T0 + timedelta(days=2), 1.0), evidence)
    tampered.write_text(tampered.read_text().replace('"passed": true', '"passed": false'))
    url = sqlite_url(str(tmp_path / "state" / "catalog.db"))

    report = rebuild(plan, url, open_location(plan), evidence, T0 + timedelta(days=3))

    assert report.moved_aside is None  # there was no catalog to move aside
    assert report.runs_added == {"web": 3, "old-job": 1}
    assert report.locations == ["primary", "secondary"]
    assert list(report.unreadable) == ["lost"]
    assert not report.complete
    assert report.drills_added == 2
    assert list(report.evidence_left_out) == [str(tampered)]
    assert "does not match" in report.evidence_left_out[str(tampered)]
    assert report.not_rebuilt == NOT_REBUILT
    catalog = Catalog.open(url)
    runs = {r.snapshot: r for r in catalog.runs(limit=100)}
    assert set(runs) == {first.id, partial.id, retired.id, alone.id}
    one = runs[first.id]
    assert (one.job, one.status, one.location, one.error) == ("web", SUCCEEDED, "primary", None)
    assert (one.started_at, one.ended_at) == (first.time, first.time + timedelta(seconds=42.5))
    assert (one.slot, one.host) == (T0, "web1:rebuilt")  # the hourly slot it stood for
    assert (one.bytes_added, one.bytes_stored) == (1000, 600)
    assert runs[partial.id].status == PARTIAL
    assert runs[partial.id].error == "1 path(s) could not be read: /srv/web/x: denied"
    assert runs[alone.id].location == "secondary"
    assert runs[retired.id].slot is None  # no schedule to tell its slot
    assert catalog.last_slot("web") == T0 + timedelta(hours=2)
    rows = catalog.drills()
    assert [r["run"] for r in rows] == ["b2", "a1"]
    expected = catalog_row(kept[0], *paths[0])  # as `drplan drill run` recorded it,
    for key in ("started_at", "ended_at"):  # but for the evidence's times, to the second
        expected[key] = expected[key].replace(microsecond=0)
    got = next(r for r in rows if r["run"] == "a1")
    assert {k: got[k] for k in expected} == expected
    catalog.close()

    again = rebuild(plan, url, open_location(plan), evidence, T0 + timedelta(days=3))
    assert (again.runs_added, again.runs_known) == ({}, 4)
    assert (again.drills_added, again.drills_known) == (0, 2)
    catalog = Catalog.open(url)
    assert len(catalog.runs(limit=100)) == 4
    catalog.close()
