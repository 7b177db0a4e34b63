"""A plan's four locations (local primary and secondary, S3 cloud, locked S3 archive): fan-out,
status, loss of the primary, and locations that fail."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from botocore.exceptions import ClientError

from testbed.plans import clean_plan
from tests.conftest import Result
from tests.fixtures.seaweedfs import SeaweedFS
from tests.integration.conftest import Compare

Run = Callable[..., Result]
FAST_KDF = ("--kdf-memory", "1024", "--kdf-time", "1")


def s3_location(server: SeaweedFS, bucket: str, role: str, **extra: Any) -> dict[str, Any]:
    return {
        "role": role,
        "kind": "s3",
        "bucket": bucket,
        "prefix": "drplan",
        "endpoint": server.endpoint_url,
        "region": server.region,
        "access_key_id": "${DR_S3_KEY}",
        "secret_access_key": "${DR_S3_SECRET}",
        **extra,
    }


@pytest.fixture
def four_locations(
    tmp_path: Path, seaweedfs: SeaweedFS, s3_secrets: None, password: str, source: Path
) -> Path:
    """A plan whose files job writes to a local primary and copies to three more locations."""
    plan = clean_plan()
    plan["systems"]["web"]["paths"] = [str(source)]
    plan["locations"] = {
        "primary": {"role": "primary", "kind": "local", "path": str(tmp_path / "primary")},
        "secondary": {"role": "secondary", "kind": "local", "path": str(tmp_path / "secondary")},
        "cloud": s3_location(seaweedfs, seaweedfs.create_bucket(), "cloud"),
        "archive": s3_location(
            seaweedfs,
            seaweedfs.create_bucket(object_lock=True),
            "archive",
            immutability={"mode": "compliance", "days": 1},
            retention={"keep_yearly": 7},
        ),
    }
    plan["data_classes"]["database"]["locations"] = ["primary", "cloud"]
    for job in plan["jobs"].values():
        job["locations"] = ["primary", "secondary", "cloud", "archive"]
    plan_file = tmp_path / "plan.yaml"
    plan_file.write_text(yaml.safe_dump(plan))
    return plan_file


def init_all(run: Run, plan: str) -> None:
    """The repository in the primary, seeded as a replica in every other location."""
    assert run("--plan", plan, "repo", "init", "primary", *FAST_KDF).code == 0
    for name in ("secondary", "cloud", "archive"):
        seeded = run("--plan", plan, "copy", "--from", "primary", "--to", name)
        assert seeded.code == 0, seeded.err


def status(run: Run, plan: Path, code: int = 0) -> dict[str, dict[str, Any]]:
    """Each location's state; ``code`` 23 when one is down (unreachable, lost, foreign)."""
    result = run("--plan", str(plan), "locations", "status", "--json")
    assert result.code == code, result.err
    return {entry["location"]: entry for entry in json.loads(result.out)}


def test_backups_reach_every_location_and_the_cloud_copy_alone_restores(
    run: Run, four_locations: Path, source: Path, tmp_path: Path, same_tree: Compare
) -> None:
    plan = str(four_locations)
    init_all(run, plan)
    first = run("--plan", plan, "backup", "web", "--json")
    assert first.code == 0, first.err
    report = json.loads(first.out)
    snapshot = report["snapshot"]
    assert report["location"].startswith("primary")
    assert {n: c["copied"] for n, c in report["copies"].items()} == {
        "secondary": [snapshot],
        "cloud": [snapshot],
        "archive": [snapshot],
    }
    states = status(run, four_locations)
    for name in ("primary", "secondary", "cloud", "archive"):
        assert states[name]["state"] == "ok", states[name]
        web = states[name]["jobs"]["web"]
        assert (web["snapshots"], web["missing"], web["lag_seconds"]) == (1, 0, 0.0)
        assert web["bytes_behind"] == 0
    assert states["archive"]["immutability"] == "compliance 1d"
    assert states["primary"]["free_bytes"] > 0

    (source / "late.txt").write_text("written after the first backup\n")
    again = json.loads(run("--plan", plan, "backup", "web", "--json").out)
    second = again["snapshot"]
    assert again["copies"]["cloud"]["copied"] == [second]
    assert again["copies"]["archive"]["copied"] == []  # it keeps one a year: it has this year's
    assert status(run, four_locations)["archive"]["state"] == "ok"
    shutil.rmtree(tmp_path / "primary")  # the primary site is gone
    states = status(run, four_locations, code=23)
    assert states["primary"]["state"] == "lost"
    assert states["cloud"]["jobs"]["web"]["snapshots"] == 2
    table = run("--plan", plan, "locations", "status")
    assert table.code == 23, table.err
    assert "primary (lost)" in table.err
    assert "lost" in table.out
    assert "compliance 1d" in table.out
    assert "web: current" in table.out

    target = tmp_path / "restored"
    restored = run(
        "--plan", plan, "restore", second, "--target", str(target), "--repo", "cloud",
        "--special-files",
    )  # fmt: skip
    assert restored.code == 0, restored.err
    same_tree(source, target / source.relative_to("/"))


def test_an_unreachable_location_does_not_stop_the_others_and_catches_up(
    run: Run, four_locations: Path, tmp_path: Path
) -> None:
    plan = str(four_locations)
    init_all(run, plan)
    doc = yaml.safe_load(four_locations.read_text())
    good_port = doc["locations"]["cloud"]["endpoint"]
    doc["locations"]["cloud"]["endpoint"] = "http://127.0.0.1:9"  # nothing listens there
    four_locations.write_text(yaml.safe_dump(doc))
    result = run("--plan", plan, "backup", "web", "--json")
    assert result.code == 16, result.err
    report = json.loads(result.out)
    assert report["copies"]["cloud"]["error"].startswith("location cloud:")
    assert report["copies"]["secondary"]["error"] is None
    assert "not to cloud" in result.err
    states = status(run, four_locations, code=23)
    assert states["cloud"]["state"] == "unreachable"
    assert states["secondary"]["state"] == "ok"

    doc["locations"]["cloud"]["endpoint"] = good_port  # back again
    four_locations.write_text(yaml.safe_dump(doc))
    states = status(run, four_locations)
    assert states["cloud"]["state"] == "lagging"
    assert states["cloud"]["jobs"]["web"]["missing"] == 1
    again = run("--plan", plan, "backup", "web", "--json")
    assert again.code == 0, again.err
    assert len(json.loads(again.out)["copies"]["cloud"]["copied"]) == 2  # the gap is closed
    states = status(run, four_locations)
    assert all(s["state"] == "ok" for s in states.values()), states


def test_a_primary_that_is_down_sends_the_backup_to_the_next_and_it_comes_back(
    run: Run, four_locations: Path, tmp_path: Path
) -> None:
    plan = str(four_locations)
    init_all(run, plan)
    assert run("--plan", plan, "backup", "web").code == 0
    primary = tmp_path / "primary"
    primary.rename(tmp_path / "primary-offline")
    primary.write_text("not a directory: the volume is gone")
    result = run("--plan", plan, "backup", "web", "--json")
    assert result.code == 16, result.err
    report = json.loads(result.out)
    assert report["location"].startswith("secondary")
    assert report["copies"]["primary"]["error"]
    primary.unlink()
    (tmp_path / "primary-offline").rename(primary)
    back = json.loads(run("--plan", plan, "backup", "web", "--json").out)
    assert back["location"].startswith("primary")
    assert len(back["caught_up"]) == 1  # the backup taken while it was down
    assert status(run, four_locations)["primary"]["jobs"]["web"]["snapshots"] == 3


def test_wrong_credentials_for_one_location_name_it_and_never_the_secret(
    run: Run, four_locations: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = str(four_locations)
    init_all(run, plan)
    monkeypatch.setenv("DR_S3_SECRET", "wrong-secret-value-1234")
    result = run("--plan", plan, "backup", "web")
    assert result.code == 16
    assert "location cloud:" in result.err
    assert "location archive:" in result.err
    assert "wrong-secret-value-1234" not in result.err + result.out


def test_a_full_location_is_reported_and_the_others_get_the_copy(
    run: Run, four_locations: Path, tmp_path: Path
) -> None:
    plan = str(four_locations)
    small = tmp_path / "secondary"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(small)], check=True)
    try:
        init_all(run, plan)
        result = run("--plan", plan, "backup", "web", "--json")
        assert result.code == 16, result.err
        report = json.loads(result.out)
        assert "no space left" in report["copies"]["secondary"]["error"].lower()
        assert report["copies"]["cloud"]["copied"]
        assert report["copies"]["archive"]["copied"]
        assert not any(small.rglob("snapshots/*"))  # nothing half-visible there
    finally:
        subprocess.run(["umount", str(small)], check=True)


def test_locked_objects_survive_forget_prune_and_a_direct_delete(
    run: Run, four_locations: Path, source: Path, seaweedfs: SeaweedFS
) -> None:
    plan = str(four_locations)
    doc = yaml.safe_load(four_locations.read_text())
    doc["locations"]["archive"]["retention"] = {"keep_last": 10}  # every backup goes there
    four_locations.write_text(yaml.safe_dump(doc))
    init_all(run, plan)
    first = json.loads(run("--plan", plan, "backup", "web", "--json").out)["snapshot"]
    (source / "late.txt").write_text("second generation\n")
    second = json.loads(run("--plan", plan, "backup", "web", "--json").out)["snapshot"]
    archive = yaml.safe_load(four_locations.read_text())["locations"]["archive"]
    client, bucket = seaweedfs.client(), archive["bucket"]
    assert {first, second} <= set(_ids(run, plan, "archive"))

    # Retention lets the first snapshot go, but its lock has a day to run: it stays.
    result = run("--plan", plan, "forget", "--repo", "archive", "--keep-last", "1", "--json")
    assert result.code == 0, result.err
    decisions = {s["id"]: s for s in json.loads(result.out)["snapshots"]}
    assert decisions[first]["keep"] is True
    assert any(r.startswith("locked until") for r in decisions[first]["reasons"])
    assert set(_ids(run, plan, "archive")) == {first, second}

    # Someone deletes the first snapshot behind drplan's back: S3 only hides it behind a
    # delete marker. Prune then finds packs only it needed, and leaves them: locked.
    client.delete_object(Bucket=bucket, Key=f"drplan/snapshots/{first}")
    before = {v["Key"] for v in client.list_objects_v2(Bucket=bucket)["Contents"]}
    pruned = run("--plan", plan, "prune", "--repo", "archive")
    assert pruned.code == 0, pruned.err
    assert "still under Object Lock" in pruned.err
    after = {v["Key"] for v in client.list_objects_v2(Bucket=bucket)["Contents"]}
    assert {k for k in before if "/data/" in k} <= after

    # Nobody can remove a locked version, whatever the credentials.
    versions = client.list_object_versions(Bucket=bucket, Prefix="drplan/data/")["Versions"]
    assert versions
    head = client.head_object(Bucket=bucket, Key=versions[0]["Key"])
    assert head["ObjectLockMode"] == "COMPLIANCE"
    with pytest.raises(ClientError) as denied:
        client.delete_object(
            Bucket=bucket, Key=versions[0]["Key"], VersionId=versions[0]["VersionId"]
        )
    assert denied.value.response["Error"]["Code"] == "AccessDenied"
    assert _ids(run, plan, "archive") == [second]
    check = run("--plan", plan, "check", "--read-data", "--repo", "archive")
    assert check.code == 0, check.err + check.out


def test_forget_renews_the_locks_of_what_retention_keeps_and_only_that(
    run: Run, four_locations: Path, source: Path, seaweedfs: SeaweedFS
) -> None:
    plan = str(four_locations)
    doc = yaml.safe_load(four_locations.read_text())
    doc["locations"]["archive"]["retention"] = {"keep_last": 10}  # every backup goes there
    four_locations.write_text(yaml.safe_dump(doc))
    init_all(run, plan)
    old = json.loads(run("--plan", plan, "backup", "web", "--json").out)["snapshot"]
    (source / "late.txt").write_text("second generation\n")
    new = json.loads(run("--plan", plan, "backup", "web", "--json").out)["snapshot"]
    doc = yaml.safe_load(four_locations.read_text())
    doc["locations"]["archive"]["immutability"]["days"] = 3  # retention now asks for more
    four_locations.write_text(yaml.safe_dump(doc))
    client, bucket = seaweedfs.client(), doc["locations"]["archive"]["bucket"]

    def until(snapshot: str) -> dt.datetime:
        head = client.head_object(Bucket=bucket, Key=f"drplan/snapshots/{snapshot}")
        value: dt.datetime = head["ObjectLockRetainUntilDate"]
        return value

    before = until(old)
    result = run("--plan", plan, "forget", "--repo", "archive", "--keep-last", "1")
    assert result.code == 0, result.err
    assert "renewed the Object Lock" in result.out
    assert until(new) > dt.datetime.now(dt.UTC) + dt.timedelta(days=2.5)
    assert until(old) == before  # kept only by its lock: left to expire


def _ids(run: Run, plan: str, location: str) -> list[str]:
    result = run("--plan", plan, "snapshots", "--repo", location, "--json")
    assert result.code == 0, result.err
    return [s["id"] for s in json.loads(result.out)]


def test_an_archive_location_lists_without_a_thaw_and_says_what_a_restore_needs(
    run: Run,
    four_locations: Path,
    source: Path,
    tmp_path: Path,
    same_tree: Compare,
    seaweedfs: SeaweedFS,
) -> None:
    doc = yaml.safe_load(four_locations.read_text())
    doc["locations"]["archive"]["storage_class"] = "GLACIER"
    four_locations.write_text(yaml.safe_dump(doc))
    plan = str(four_locations)
    init_all(run, plan)
    result = run("--plan", plan, "backup", "web", "--json")
    assert result.code == 0, result.err
    snapshot = json.loads(result.out)["snapshot"]

    client, bucket = seaweedfs.client(), doc["locations"]["archive"]["bucket"]
    listed = client.list_objects_v2(Bucket=bucket, Prefix="drplan/")["Contents"]
    classes = {
        o["Key"]: client.head_object(Bucket=bucket, Key=o["Key"]).get("StorageClass", "STANDARD")
        for o in listed
    }
    packs = {k: c for k, c in classes.items() if "/data/" in k}
    assert set(packs.values()) == {"GLACIER", "STANDARD"}  # file data archived, listings not
    assert all(c == "STANDARD" for k, c in classes.items() if "/data/" not in k)
    assert _ids(run, plan, "archive") == [snapshot]
    assert run("--plan", plan, "ls", snapshot, "--repo", "archive").code == 0

    target = tmp_path / "restored"
    cold = run("--plan", plan, "restore", snapshot, "--target", str(target), "--repo", "archive")
    assert cold.code == 17
    assert "not readable yet" in cold.err
    assert "--request-thaw" in cold.err
    assert cold.err.count("\n") == 1
    assert not target.exists()
    ask = run(
        "--plan", plan, "restore", snapshot, "--target", str(target), "--repo", "archive",
        "--request-thaw",
    )  # fmt: skip
    assert ask.code == 1  # SeaweedFS keeps every class readable and cannot thaw
    assert "cannot thaw archived objects" in ask.err
    served = run(
        "--plan", plan, "restore", snapshot, "--target", str(target), "--repo", "archive",
        "--no-thaw-check", "--special-files",
    )  # fmt: skip
    assert served.code == 0, served.err
    same_tree(source, target / source.relative_to("/"))


def test_an_empty_location_is_a_failure_not_a_new_replica(
    run: Run, four_locations: Path, tmp_path: Path
) -> None:
    plan = str(four_locations)
    init_all(run, plan)
    secondary = tmp_path / "secondary"
    secondary.rename(tmp_path / "secondary-disk")
    secondary.mkdir()  # the mount point, with the disk not mounted
    result = run("--plan", plan, "backup", "web", "--json")
    assert result.code == 16, result.err
    error = json.loads(result.out)["copies"]["secondary"]["error"]
    assert "holds no repository" in error
    assert "drplan copy" in error
    assert list(secondary.iterdir()) == []
    assert status(run, four_locations, code=23)["secondary"]["state"] == "lost"
    typo = run("--plan", plan, "copy", "--from", "primary", "--to", "secondry")
    assert typo.code == 2
    assert "'secondry' is not a location of the plan" in typo.err


def test_an_archive_keeping_one_a_year_gets_one_a_year(
    run: Run, four_locations: Path, source: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    doc = yaml.safe_load(four_locations.read_text())
    doc["jobs"]["web"]["retention"] = {"keep_daily": 2}
    doc["locations"]["archive"]["retention"] = {"keep_yearly": 5}
    four_locations.write_text(yaml.safe_dump(doc))
    plan = str(four_locations)
    init_all(run, plan)
    for day in range(1, 8):
        monkeypatch.setenv("DRPLAN_NOW", f"2026-03-{day:02d}T02:00:00Z")
        (source / "daily.txt").write_text(f"day {day}\n")
        result = run("--plan", plan, "backup", "web", "--json")
        assert result.code == 0, result.err
        forgot = run("--plan", plan, "forget", "--repo", "primary", "--prune")
        assert forgot.code == 0, forgot.err
    assert len(_ids(run, plan, "primary")) == 2
    archived = json.loads(run("--plan", plan, "snapshots", "--repo", "archive", "--json").out)
    assert [s["time"][:10] for s in archived] == ["2026-03-01"]


def test_status_with_a_wrong_password_says_so(
    run: Run, four_locations: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = str(four_locations)
    init_all(run, plan)
    monkeypatch.setenv("DRPLAN_PASSWORD", "not the password")
    result = run("--plan", plan, "locations", "status")
    assert result.code == 12
    assert "repo init" not in result.err
