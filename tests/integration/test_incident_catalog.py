"""An incident whose PostgreSQL catalog goes away mid-incident (a failover, the data
center's database): every command goes on from the local journal, says the catalog is
away, and the catalog gets every event it missed once it answers again, in order, the
hash chain intact in both copies."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from drplan.catalog.store import Catalog
from testbed.plans import clean_plan
from tests.conftest import Result, minutes_ago
from tests.fixtures.postgres import PgCluster

Run = Callable[..., Result]


def test_a_catalog_that_fails_mid_incident_catches_up_from_the_journal(
    run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    pg_cluster: Callable[..., PgCluster],
) -> None:  # fmt: skip
    cluster = pg_cluster()
    url = f"postgresql://postgres:{cluster.password}@127.0.0.1:{cluster.port}/postgres"
    plan = tmp_path / "plan.yaml"
    plan.write_text(yaml.safe_dump(clean_plan()))
    monkeypatch.setenv("DRPLAN_PLAN", str(plan))
    monkeypatch.setenv("DRPLAN_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("DRPLAN_CATALOG", url)

    def in_catalog(inc: str) -> int:
        catalog = Catalog.open(url)
        try:
            return len(catalog.incident_events(inc))
        finally:
            catalog.close()

    declared = run("incident", "declare", "db-loss", "--since", minutes_ago(10), "--json")
    assert declared.code == 0, declared.err
    inc = json.loads(declared.out)["id"]
    assert in_catalog(inc) == 1

    cluster.stop()  # the catalog's server goes, mid-incident
    outputs = []
    for args in (("step", inc, "1.1", "done", "--note", "contained"),
                 ("note", inc, "catalog down, working from the journal"),
                 ("status", inc)):  # fmt: skip
        done = run("incident", *args)
        assert done.code == 0, done.err
        outputs.append(done.out + done.err)
    assert "the incident journal keeps every event" in outputs[0]
    assert "1.1 Assess - ic: done" in outputs[2]  # read from the journal alone

    cluster.start()
    assert run("incident", "note", inc, "catalog back").code == 0  # syncs all it missed
    assert in_catalog(inc) == 4
    verified = run("incident", "verify", inc)
    assert verified.code == 0, verified.err
    assert "4 entries in the journal, 4 entries in the catalog, every link intact" in verified.out
    assert all(cluster.password not in text for text in outputs)
