"""The API's recoverability: each system with its drills' figures, the KPIs against the
success criteria, a drill's evidence downloaded by run id only (never a path the request
or an edited catalog names, never a file changed since), and a drill started on demand
by a commander only, audited."""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from drplan import clock
from drplan.catalog.paths import state_dir
from drplan.repo.repository import Repository
from drplan.storage.local import LocalStorage
from drplan.web.app import build
from drplan.web.context import WebContext
from drplan.web.server import WebServer
from tests.conftest import wait_until
from tests.fixtures.web import World
from tests.integration.test_locations import FAST_KDF


def drill(world: World, run: str, days_ago: int, rto: float, evidence: Path | None = None,
          **extra: Any) -> None:  # fmt: skip
    started = clock.now() - timedelta(days=days_ago)
    body = evidence.read_bytes() if evidence is not None else b""
    world.catalog.record_drill({
        "run": run, "drill": "quarterly", "kind": "full_platform", "started_at": started,
        "ended_at": started + timedelta(seconds=rto), "passed": 1, "rto_seconds": rto,
        "rto_met": 1, "rpo_seconds": 30.0, "rpo_met": 1, "integrity": 1,
        "evidence": str(evidence) if evidence else None,
        "sha256": hashlib.sha256(body).hexdigest() if evidence else None,
        "result": json.dumps({"systems": [{"system": "db", "rto": {"seconds": rto, "met": rto < 800},
                                           "rpo": {"seconds": 30.0, "met": True}}]}),
        **extra,
    })  # fmt: skip


def evidence_file(name: str, text: str = '{"drill": "quarterly"}\n') -> Path:
    home = Path(state_dir()) / "drills" / "evidence"
    home.mkdir(parents=True, exist_ok=True)
    path = home / name
    path.write_text(text)
    return path


def test_systems_carry_their_drills_figures_and_kpis_their_criteria(world: World) -> None:
    world.user("vera", "--access", "viewer")
    reader = world.client(world.token("vera", "read"))
    for n, rto in enumerate((600.0, 900.0, 300.0)):
        drill(world, f"r{n}", 10 - n, rto)
    systems = {s["name"]: s for s in reader.get("/api/v1/systems").json()["systems"]}
    assert set(systems) == {"db", "web"}
    db = systems["db"]
    assert db["last_drill"]["run"] == "r2"  # the newest
    assert (db["last_drill"]["rto_seconds"], db["last_drill"]["rpo_seconds"]) == (300.0, 30.0)
    assert db["predicted_rto"] == {"median_seconds": 600.0, "worst_seconds": 900.0, "drills": 3,
                                   "scaled": False}  # fmt: skip
    assert db["rto_seconds"] == 4 * 3600
    # Its KPIs: 2 of its 3 recoveries within its RTO, under the 95% the plan asks.
    assert db["kpis"]["recoveries"] == 3
    assert db["kpis"]["met"] == {"rto_achievement": False, "rpo_achievement": True,
                                 "data_integrity": True}  # fmt: skip
    assert "below the success criteria over 90 days: rto achievement" in db["why"]
    assert systems["web"]["kpis"]["recoveries"] == 0
    kpis = reader.get("/api/v1/kpis").json()
    assert kpis["criteria"]["rto_achievement"] == 0.95
    assert kpis["windows"]["30d"]["all"]["recoveries"] == 3  # a row per drill run
    # The KPI report, as `drplan report` makes it.
    report = reader.get("/api/v1/report", params={"since": "90d"}).json()
    shown = json.loads(world.run("--plan", str(world.plan_path), "report", "--since", "90d",
                                 "--format", "json").out)  # fmt: skip
    assert (report["title"], report["kpis"], report["trends"]) == (
        shown["title"], shown["kpis"], shown["trends"])  # fmt: skip
    html = reader.get("/api/v1/report", params={"format": "html"})
    assert html.headers["content-disposition"] == 'attachment; filename="recovery-report.html"'
    assert reader.get("/api/v1/report", params={"since": "soon"}).status_code == 422


def test_evidence_is_served_by_run_id_from_its_directory_and_only_unchanged(
    world: World, tmp_path: Path
) -> None:
    world.user("vera", "--access", "viewer")
    reader = world.client(world.token("vera", "read"))
    good = evidence_file("quarterly-good.json")
    drill(world, "good", 1, 60.0, good)
    got = reader.get("/api/v1/drills/good/evidence")
    assert got.status_code == 200
    assert got.content == good.read_bytes()
    assert got.headers["content-disposition"] == 'attachment; filename="quarterly-good.json"'
    summed = reader.get("/api/v1/drills/good/evidence.sha256").text
    assert summed == f"{hashlib.sha256(good.read_bytes()).hexdigest()}  quarterly-good.json\n"

    secret = tmp_path / "outside.json"  # a file elsewhere the catalog is made to name
    secret.write_text('{"not": "evidence"}')
    drill(world, "edited", 2, 60.0, secret)
    planted = evidence_file("quarterly-link.json")
    planted.unlink()
    planted.symlink_to(secret)
    drill(world, "linked", 3, 60.0, planted)
    for run in ("edited", "linked", "../../catalog.db", "..%2F..%2Fcatalog.db", "nope"):
        refused = reader.get(f"/api/v1/drills/{run}/evidence")
        assert refused.status_code == 404, (run, refused.text)
        assert b"not" not in refused.content.replace(b"not in this", b"")
    changed = evidence_file("quarterly-changed.json")
    drill(world, "changed", 4, 60.0, changed)
    changed.write_text('{"drill": "quarterly", "passed": true}\n')  # edited after the fact
    assert reader.get("/api/v1/drills/changed/evidence").status_code == 409
    assert world.client().get("/api/v1/drills/good/evidence").status_code == 401


def test_a_drill_is_started_by_a_commander_only_and_audited(
    world: World, monkeypatch: pytest.MonkeyPatch, password: str
) -> None:
    monkeypatch.setenv("DRPLAN_PASSWORD", password)  # the server's: its children's
    world.user("cleo", "--role", "ic")
    world.user("vera", "--access", "viewer")
    refused = world.client(world.token("vera", "read")).post("/api/v1/drills/quarterly/runs")
    assert refused.status_code == 403
    commander = world.client(world.token("cleo", "drills:run"))
    assert commander.post("/api/v1/drills/nope/runs").status_code == 404
    started = commander.post("/api/v1/drills/quarterly/runs")
    assert started.status_code == 202, started.text
    assert started.json()["drill"] == "quarterly"
    log = Path(state_dir()) / "drills" / "started" / "quarterly.log"
    # The drill runs for real, against this test's plan (whose systems are not here, in a
    # directory too deep for a server's socket): it ends, and says why.
    wait_until(lambda: log.exists() and log.stat().st_size > 0 and not _running(started.json()),
               "the drill to end", 120, log.read_text)  # fmt: skip
    said = log.read_text()  # `drill run --json`'s: its result, or why it could not run
    assert '"drill": "quarterly"' in said or said.startswith("drplan: the scratch server"), said
    trail = [json.loads(line) for line in world.run("audit", "list", "--json").out.splitlines()]
    (audited,) = [e for e in trail if e["kind"] == "drill.run"]
    assert audited["data"]["drill"] == "quarterly"
    assert audited["actor"].startswith("cleo")


def _running(started: dict[str, Any]) -> bool:
    from drplan.liveness import alive  # noqa: PLC0415

    return alive(int(started["pid"]))


def test_a_locations_snapshots_are_listed_where_the_server_holds_the_password(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, password: str
) -> None:
    world.user("vera", "--access", "viewer")
    token = world.token("vera", "read")
    reader = world.client(token)
    refused = reader.get("/api/v1/locations/local/snapshots")
    assert refused.status_code == 503  # this server was given no password
    assert "holds no repository password" in refused.json()["detail"]

    monkeypatch.setenv("DRPLAN_PASSWORD", password)
    repo, source = tmp_path / "repo", tmp_path / "src"
    source.mkdir()
    (source / "a.txt").write_text("a")
    assert world.run("repo", "init", str(repo), *FAST_KDF).code == 0
    for _ in range(2):
        assert world.run("backup", "files", str(source), "--repo", str(repo)).code == 0
    ctx = WebContext(lambda: world.plan, str(world.plan_path), world.catalog, world.catalog_url,
                     open_location=lambda plan, name: Repository.open(LocalStorage(repo),
                                                                      password.encode()))  # fmt: skip
    server = WebServer(build(ctx), "127.0.0.1:0", world.plan.web)
    server.start()
    try:
        client = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"})
        listed = client.get("/api/v1/locations/local/snapshots", params={"limit": 1})
        assert listed.status_code == 200, listed.text
        body = listed.json()
        assert (body["total"], len(body["items"])) == (2, 1)
        assert body["items"][0]["paths"] == [str(source)]
        assert 'rel="next"' in listed.headers["link"]
        assert client.get("/api/v1/locations/nowhere/snapshots").status_code == 404
        assert httpx.get(f"{server.url}/api/v1/locations/local/snapshots").status_code == 401
    finally:
        server.stop()
