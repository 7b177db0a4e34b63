"""`drplan evidence capture|verify|list` through the CLI, against a real SeaweedFS bucket
under COMPLIANCE Object Lock and a real, running PostgreSQL: the copy matches the bytes it
was taken from, the storage refuses to delete it, verify proves it and names a file that
was tampered with, retention never lets it go, and the incident's timeline records each
capture and verification. Refusals (no lock, no incident) are one line each."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import yaml
from botocore.exceptions import ClientError

from drplan.repo.repository import SNAPSHOT_PREFIX, pack_name
from drplan.security.evidence_manifest import path_of, stored_nodes
from testbed.plans import clean_plan, local_only
from tests.conftest import Result
from tests.fixtures.postgres import PgCluster, give_to_server
from tests.fixtures.seaweedfs import SeaweedFS
from tests.integration.conftest import open_repo
from tests.integration.test_locations import FAST_KDF, s3_location

Run = Callable[..., Result]
Cli = Callable[..., Result]


def evidence_plan(tmp_path: Path, source: Path, evidence: dict[str, Any] | None = None,
                  **extra: Any) -> Path:  # fmt: skip
    """A clean plan with a local location, `web` backing up ``source``, an evidence
    location when given (named `evidence`, and the plan's), and ``extra`` top-level keys."""
    plan = local_only(clean_plan())
    plan["systems"]["web"]["paths"] = [str(source)]
    plan["locations"]["local"]["path"] = str(tmp_path / "local")
    if evidence is not None:
        plan["locations"]["evidence"] = evidence
        plan["security"] = {"evidence": {"location": "evidence"}}
    plan.update(extra)
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(plan))
    return path


def declared(cli: Cli) -> str:
    done = cli("incident", "declare", "db-loss", "--json")
    assert done.code == 0, done.err
    return str(json.loads(done.out)["id"])


def ready(cli: Cli, location: str) -> str:
    """The location's repository made and an incident declared: the incident's id."""
    assert cli("repo", "init", location, *FAST_KDF).code == 0
    return declared(cli)


def captured_by(cli: Cli, system: str, incident: str, *extra: str) -> dict[str, Any]:
    done = cli("evidence", "capture", system, "--incident", incident, "--json", *extra)
    assert done.code == 0, done.err
    return dict(json.loads(done.out))


def timeline(cli: Cli, incident: str, kind: str) -> list[dict[str, Any]]:
    done = cli("incident", "timeline", incident, "--json")
    assert done.code == 0, done.err
    events = [json.loads(line) for line in done.out.splitlines()]
    return [e for e in events if e["kind"] == kind]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def files_under(root: Path) -> dict[bytes, Path]:
    """Every regular file below ``root``, by absolute path as bytes."""
    found = {}
    for dirpath, _, names in os.walk(os.fsencode(root)):
        for name in names:
            path = os.path.join(dirpath, name)
            if stat.S_ISREG(os.lstat(path).st_mode):
                found[path] = Path(os.fsdecode(path))
    return found


def restored_manifest(cli: Cli, snapshot: str, location: str, target: Path) -> bytes:
    done = cli("restore", snapshot, "--repo", location, "--target", str(target))
    assert done.code == 0, done.err
    return (target / "manifest.json").read_bytes()


@pytest.fixture
def locked(tmp_path: Path, source: Path, seaweedfs: SeaweedFS, s3_secrets: None,
           password: str) -> tuple[Path, str]:  # fmt: skip
    """The plan's CLI, its evidence location a fresh bucket under COMPLIANCE Object Lock."""
    bucket = seaweedfs.create_bucket(object_lock=True)
    location = s3_location(seaweedfs, bucket, "cloud",
                           immutability={"mode": "compliance", "days": 1})  # fmt: skip
    return evidence_plan(tmp_path, source, location), bucket


def test_files_evidence_under_compliance_lock_matches_the_source_and_cannot_be_deleted(
    run: Run, tmp_path: Path, source: Path, seaweedfs: SeaweedFS, locked: tuple[Path, str]
) -> None:
    plan, bucket = locked
    cli = partial(run, "--plan", str(plan))
    incident = ready(cli, "evidence")

    captured = captured_by(cli, "web", incident)
    assert captured["immutable"]
    assert captured["lock_mode"] == "compliance"
    until = datetime.fromisoformat(captured["locked_until"].replace("Z", "+00:00"))
    assert until > datetime.now(UTC) + timedelta(hours=23)

    # The manifest names every file with the SHA-256 of the bytes it holds on disk, and is
    # itself the one whose SHA-256 the timeline recorded.
    body = restored_manifest(cli, captured["snapshot"], "evidence", tmp_path / "restored")
    assert hashlib.sha256(body).hexdigest() == captured["manifest_sha256"]
    entries = {path_of(e): e for e in json.loads(body)["entries"]}
    on_disk = files_under(source)
    assert len(on_disk) == captured["files"] > 5
    for path, where in on_disk.items():
        assert entries[path]["sha256"] == sha256(where), path
        assert entries[path]["size"] == where.stat().st_size
        assert entries[path]["mode"] == stat.S_IMODE(where.stat().st_mode)
    assert entries[os.fsencode(source / "conf-link")]["target"] == "etc/app/app.conf"
    assert entries[os.fsencode(source / "pipe")]["type"] == "fifo"
    restored = tmp_path / "restored" / "files" / source.relative_to("/")
    assert {p: sha256(restored / w.relative_to(source)) for p, w in on_disk.items()} == {
        p: sha256(w) for p, w in on_disk.items()
    }

    # Nobody can delete a version of what the evidence needs, whatever the credentials.
    client = seaweedfs.client()
    versions = client.list_object_versions(Bucket=bucket, Prefix="drplan/")["Versions"]
    needed = [v for v in versions if v["Key"].startswith(("drplan/data/", "drplan/snapshots/"))]
    assert f"drplan/{SNAPSHOT_PREFIX}{captured['snapshot']}" in {v["Key"] for v in needed}
    for version in needed:
        with pytest.raises(ClientError) as denied:
            client.delete_object(Bucket=bucket, Key=version["Key"], VersionId=version["VersionId"])
        assert denied.value.response["Error"]["Code"] == "AccessDenied"

    verified = cli("evidence", "verify", "--incident", incident)
    assert verified.code == 0, verified.err
    assert f"ok, {captured['files']} files" in verified.out
    assert "locked until" in verified.out

    # The chain of custody: who, what, where, when, the manifest's digest, the lock's end.
    [entry] = timeline(cli, incident, "evidence_captured")
    data = entry["data"]
    assert data["paths"] == [str(source)]
    assert data["system"] == "web"
    assert data["location"] == "evidence"
    assert data["snapshot"] == captured["snapshot"]
    assert data["manifest_sha256"] == captured["manifest_sha256"]
    assert data["locked_until"] == captured["locked_until"]
    assert data["immutable"] is True
    assert data["host"]
    assert data["user"]
    assert data["bytes"] > 3 * 1024 * 1024
    [check] = timeline(cli, incident, "evidence_verified")
    assert check["data"]["ok"] is True
    assert check["data"]["snapshot"] == captured["snapshot"]
    listed = json.loads(cli("evidence", "list", "--json").out)
    assert [(r["snapshot"], r["last_verified"]["ok"]) for r in listed] == [
        (captured["snapshot"], True)
    ]


def test_a_running_postgres_with_a_tablespace_is_captured_as_it_is(
    run: Run, tmp_path: Path, locked: tuple[Path, str], pg_cluster: Callable[..., PgCluster],
    pg_scratch: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    cluster = pg_cluster()
    space = pg_scratch / "ts"
    space.mkdir()
    give_to_server(space)
    cluster.sql(f"create tablespace ts1 location '{space}'")
    cluster.sql("create table r tablespace ts1 as select generate_series(1, 5000) id")
    plan_path, _ = locked
    plan = yaml.safe_load(plan_path.read_text())
    plan["systems"]["db"].update(connection=f"host=127.0.0.1 port={cluster.port} user=postgres",
                                 data_dir=str(cluster.data_dir))  # fmt: skip
    plan_path.write_text(yaml.safe_dump(plan))
    monkeypatch.setenv("TEST_DB_PASSWORD", cluster.password)
    cli = partial(run, "--plan", str(plan_path))
    incident = ready(cli, "evidence")

    captured = captured_by(cli, "db", incident)
    assert captured["kind"] == "postgres"
    assert captured["immutable"]
    assert captured["paths"] == sorted([str(cluster.data_dir), str(space)])

    body = restored_manifest(cli, captured["snapshot"], "evidence", tmp_path / "restored")
    manifest = json.loads(body)
    entries = {path_of(e): e for e in manifest["entries"]}
    version = cluster.data_dir / "PG_VERSION"
    assert entries[os.fsencode(version)]["sha256"] == sha256(version)
    oid = cluster.sql("select oid from pg_tablespace where spcname = 'ts1'")[0][0]
    link = entries[os.fsencode(cluster.data_dir / "pg_tblspc" / str(oid))]
    assert link["type"] == "symlink"
    assert link["target"] == str(space)
    assert any(p.startswith(os.fsencode(space) + b"/PG_") for p in entries)  # the table itself
    pid = (cluster.data_dir / "postmaster.pid").read_text().splitlines()[0]
    assert captured["postmaster_pid"] == pid  # a running server's files, as they were
    assert captured["linked"] == {f"pg_tblspc/{oid}": str(space)}
    restored = tmp_path / "restored" / "files"
    for path, entry in entries.items():  # stored exactly as read, changed while read or not
        if entry["type"] == "file" and "sha256" in entry:
            assert sha256(restored / os.fsdecode(path).lstrip("/")) == entry["sha256"], path

    assert cluster.sql("select count(*) from r") == [(5000,)]  # the server never noticed
    verified = cli("evidence", "verify")
    assert verified.code == 0, verified.err + verified.out
    [entry] = timeline(cli, incident, "evidence_captured")
    assert entry["data"]["kind"] == "postgres"
    assert entry["data"]["files"] == captured["files"]


def test_unlocked_evidence_from_a_runbook_step_is_kept_by_forget_and_tampering_is_named(
    run: Run, tmp_path: Path, source: Path, password: str
) -> None:
    runbook = {"phases": [{"name": "Contain", "window": "0-1h", "steps": [
        {"title": "Preserve evidence", "owner": "ic", "action": "evidence capture web --unlocked"},
        {"title": "Assess", "owner": "ic"},
    ]}]}  # fmt: skip
    plan = evidence_plan(tmp_path, source, runbooks={"rb": runbook})
    raw = yaml.safe_load(plan.read_text())
    raw["security"] = {"evidence": {"location": "local"}}
    plan.write_text(yaml.safe_dump(raw))
    cli = partial(run, "--plan", str(plan))
    incident = ready(cli, "local")

    # Without --unlocked, a location without Object Lock is refused, in one line.
    refused = cli("evidence", "capture", "web", "--incident", incident)
    assert refused.code == 2
    assert refused.err.count("\n") == 1
    assert "location local has no Object Lock" in refused.err
    assert "--unlocked" in refused.err

    # The runbook's step captures it, in the incident it runs in ($DRPLAN_INCIDENT).
    ran = cli("incident", "run", incident)
    assert ran.code == 0, ran.err + ran.out
    [entry] = timeline(cli, incident, "evidence_captured")
    assert entry["data"]["immutable"] is False
    assert entry["data"]["lock_mode"] is None
    assert entry["data"]["locked_until"] is None

    # Retention never selects evidence: forget keeps both captures, prune frees none of it.
    captured_by(cli, "web", incident, "--unlocked")
    forgot = cli("forget", "--repo", "local", "--keep-last", "1", "--json")
    assert forgot.code == 0, forgot.err
    decisions = json.loads(forgot.out)["snapshots"]
    assert len(decisions) == 2
    assert all(d["keep"] for d in decisions)
    assert all("evidence: never forgotten" in d["reasons"] for d in decisions)
    assert cli("prune", "--repo", "local").code == 0
    assert cli("evidence", "verify").code == 0

    # Someone alters the pack holding app.conf's content: verify names the file.
    repo = open_repo(str(tmp_path / "local"))
    snapshot = repo.find_snapshot(entry["data"]["snapshot"])
    conf = os.fsencode(source / "etc" / "app" / "app.conf")
    node = next(n for p, n in stored_nodes(repo, snapshot.tree) if p == b"/files" + conf)
    where = repo.index.lookup(node.content[0])
    assert where is not None
    pack = tmp_path / "local" / pack_name(where.pack.id)
    damaged = bytearray(pack.read_bytes())
    damaged[where.entry.offset + 8] ^= 0xFF
    pack.chmod(0o644)
    pack.write_bytes(bytes(damaged))
    bad = cli("evidence", "verify", "--incident", incident)
    assert bad.code == 13, bad.err
    assert bad.err.count("\n") == 1
    assert os.fsdecode(conf) in bad.err
    assert f"{os.fsdecode(conf)}: cannot be read back" in bad.out
    last = timeline(cli, incident, "evidence_verified")[-2:]
    assert [v["data"]["ok"] for v in last] == [False, False]  # both captures share the blob
    assert any(os.fsdecode(conf) in p for p in last[0]["data"]["problems"])


def test_an_unknown_or_missing_incident_is_refused_in_one_line(
    run: Run, tmp_path: Path, source: Path, password: str
) -> None:
    cli = partial(run, "--plan", str(evidence_plan(tmp_path, source)))
    assert cli("repo", "init", "local", *FAST_KDF).code == 0
    for args in (("--incident", "INC-ZZZZ"), ()):
        refused = cli("evidence", "capture", "web", "--location", "local", "--unlocked", *args)
        assert refused.code == 2, refused.err
        assert refused.err.count("\n") == 1, refused.err
    assert "no incident INC-ZZZZ" in cli("evidence", "verify", "--incident", "INC-ZZZZ").err
    nothing = cli("evidence", "verify")
    assert nothing.code == 1
    assert "no evidence was captured" in nothing.err
    assert json.loads(cli("snapshots", "--repo", "local", "--json").out) == []
    incident = declared(cli)
    kind = cli("evidence", "capture", "db", "--incident", incident, "--location", "local",
               "--unlocked")  # fmt: skip
    assert kind.code == 2
    assert "has no data_dir" in kind.err
