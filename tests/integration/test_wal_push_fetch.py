"""`drplan wal push` and `drplan wal fetch` as PostgreSQL runs them: separate processes,
one per file, through the spool and the agent (no server needed to prove the contract)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from drplan.sources.postgres.wal_archive import WAL_PREFIX
from drplan.storage.local import LocalStorage
from testbed.plans import clean_plan
from testbed.seaweedfs import SeaweedFS
from tests.conftest import wait_until
from tests.integration.conftest import PASSWORD, init_repo

SEGMENT = 16 * 1024 * 1024


@pytest.fixture
def wal_env(tmp_path: Path) -> dict[str, Path]:
    repo = tmp_path / "repo"
    init_repo(LocalStorage(repo))
    plan = clean_plan()
    plan["locations"]["local"]["path"] = str(repo)
    plan["jobs"]["db-wal"] = {
        "system": "db",
        "type": "wal",
        "schedule": "continuous",
        "locations": ["local"],
    }
    plan_path = tmp_path / "plan.yaml"
    plan_path.write_text(yaml.safe_dump(plan))
    password = tmp_path / "password"
    password.write_text(PASSWORD + "\n")
    pg_wal = tmp_path / "data" / "pg_wal"
    (pg_wal / "archive_status").mkdir(parents=True)
    return {"repo": repo, "plan": plan_path, "password": password, "pg_wal": pg_wal}


def drplan(env: dict[str, Path], *args: str) -> subprocess.CompletedProcess[str]:
    program = Path(sys.executable).with_name("drplan")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DRPLAN_")}
    return subprocess.run(
        [str(program), "--plan", str(env["plan"]), "wal", args[0],
         "--password-file", str(env["password"]), *args[1:]],
        capture_output=True, text=True, timeout=120, env=clean, check=False,
    )  # fmt: skip


def wal_push_script(env: dict[str, Path], path: Path) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).with_name("drplan-wal-push")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DRPLAN_")}
    return subprocess.run(
        [str(script), "--plan", str(env["plan"]), "--password-file", str(env["password"]),
         str(path)],
        capture_output=True, text=True, timeout=120, env=clean, check=False,
    )  # fmt: skip


def segment(env: dict[str, Path], name: str, fill: bytes) -> Path:
    path = env["pg_wal"] / name
    path.write_bytes(fill * (SEGMENT // len(fill)))
    return path


def test_push_is_idempotent_and_refuses_a_different_file_under_an_archived_name(
    wal_env: dict[str, Path],
) -> None:
    first = segment(wal_env, "000000010000000000000001", b"first segment ")
    pushed = drplan(wal_env, "push", str(first))
    assert pushed.returncode == 0, pushed.stderr
    stored = list(LocalStorage(wal_env["repo"]).list(WAL_PREFIX))
    assert [s.name.split("/")[-1].split(".")[0] for s in stored] == [first.name]
    assert stored[0].size < SEGMENT // 100  # compressed (and encrypted: not the plain bytes)
    assert b"first segment" not in (wal_env["repo"] / stored[0].name).read_bytes()

    again = drplan(wal_env, "push", str(first))  # PostgreSQL retries after a crash
    assert again.returncode == 0, again.stderr

    first.write_bytes(b"another history " * (SEGMENT // 16))
    conflict = wal_push_script(wal_env, first)  # no answer waiting: it runs drplan wal push
    assert conflict.returncode == 18  # WalConflictError, as docs/cli.md says
    assert "already holds a different 000000010000000000000001" in conflict.stderr
    assert len(conflict.stderr.strip().splitlines()) == 1
    assert len(list(LocalStorage(wal_env["repo"]).list(WAL_PREFIX))) == 1


def test_push_archives_what_postgres_marked_ready_ahead_of_being_asked(
    wal_env: dict[str, Path],
) -> None:
    names = [f"0000000100000000000000{n:02X}" for n in range(1, 6)]
    for name in names:
        segment(wal_env, name, name.encode())
        (wal_env["pg_wal"] / "archive_status" / f"{name}.ready").touch()
    status = wal_env["pg_wal"] / "archive_status"

    def stored() -> set[str]:
        return {
            s.name.split("/")[-1].split(".")[0]
            for s in LocalStorage(wal_env["repo"]).list(WAL_PREFIX)
        }

    for i, name in enumerate(names):
        if i % 2:  # the shell script: the same contract, without Python for what is archived
            result = wal_push_script(wal_env, wal_env["pg_wal"] / name)
        else:
            result = drplan(wal_env, "push", str(wal_env["pg_wal"] / name))
        assert result.returncode == 0, result.stderr
        (status / f"{name}.ready").rename(status / f"{name}.done")  # as PostgreSQL does
        if i == 0:  # the agent goes on with every ready file without being asked
            wait_until(lambda: stored() == set(names), "the ready files to be archived")
    spool = wal_env["pg_wal"] / "drplan-archive"
    assert not list(spool.glob("*.ok"))  # every answer was taken


def test_fetch_hands_over_archived_files_and_tells_missing_from_damaged(
    wal_env: dict[str, Path], tmp_path: Path
) -> None:
    names = [f"0000000100000000000000{n:02X}" for n in range(1, 4)]
    for name in names:
        path = segment(wal_env, name, name.encode())
        assert drplan(wal_env, "push", str(path)).returncode == 0
    restored = tmp_path / "restored" / "pg_wal"
    restored.mkdir(parents=True)
    target = restored / "RECOVERYXLOG"
    for name in names:
        fetched = drplan(wal_env, "fetch", name, str(target))
        assert fetched.returncode == 0, fetched.stderr
        assert target.read_bytes() == (wal_env["pg_wal"] / name).read_bytes()

    missing = drplan(wal_env, "fetch", "000000010000000000000009", str(target))
    assert missing.returncode == 1  # PostgreSQL: the archive ends here
    history = drplan(wal_env, "fetch", "00000002.history", str(target))
    assert history.returncode == 1

    storage = LocalStorage(wal_env["repo"])
    victim = next(s.name for s in storage.list(WAL_PREFIX) if names[1] in s.name)
    data = bytearray((wal_env["repo"] / victim).read_bytes())
    data[-40] ^= 0x01
    (wal_env["repo"] / victim).write_bytes(bytes(data))
    damaged = drplan(wal_env, "fetch", names[1], str(tmp_path / "restored" / "pg_wal" / "X"))
    assert damaged.returncode == 255  # above 125: PostgreSQL aborts recovery, not ends it
    assert names[1] in damaged.stderr
    assert "Traceback" not in damaged.stderr


def test_push_without_a_usable_repository_fails_with_the_reason(
    wal_env: dict[str, Path],
) -> None:
    wal_env["password"].write_text("wrong password\n")
    path = segment(wal_env, "000000010000000000000001", b"x")
    result = drplan(wal_env, "push", str(path))
    assert result.returncode == 1
    assert "password" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("name", ["../../victim", "000000010000000000000001/../../../victim"])
def test_fetch_refuses_a_name_that_is_not_a_wal_file_and_touches_nothing(
    wal_env: dict[str, Path], name: str
) -> None:
    """restore_command's %f is joined to the spool's path: a crafted one must not move a
    file from anywhere into the cluster, nor leave anything behind."""
    victim = wal_env["pg_wal"].parent / "victim"  # where ../../victim leads from the spool
    victim.write_text("mine")
    target = wal_env["pg_wal"] / "RECOVERYXLOG"
    fetched = drplan(wal_env, "fetch", name, str(target))
    assert victim.read_text() == "mine"
    assert not target.exists()
    assert fetched.returncode == 1, fetched.stderr  # not archived: there is no such WAL file
    assert f"{name!r} is not the name of a WAL file" in fetched.stderr
    assert not (wal_env["pg_wal"] / "drplan-prefetch").exists()


def test_check_read_data_reads_back_archived_wal_and_finds_a_flipped_bit(
    wal_env: dict[str, Path],
) -> None:
    for number, fill in ((1, b"one "), (2, b"two ")):
        pushed = drplan(
            wal_env, "push", str(segment(wal_env, f"00000001000000000000000{number}", fill))
        )
        assert pushed.returncode == 0, pushed.stderr
    program = Path(sys.executable).with_name("drplan")

    def check() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(program), "check", "--read-data", "--repo", str(wal_env["repo"]),
             "--password-file", str(wal_env["password"])],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip

    clean = check()
    assert clean.returncode == 0, clean.stderr
    assert "2 WAL files" in clean.stdout
    (stored,) = sorted(wal_env["repo"].joinpath("wal").rglob("000000010000000000000002.*"))
    damaged = bytearray(stored.read_bytes())
    damaged[len(damaged) // 2] ^= 0x10
    stored.write_bytes(bytes(damaged))
    found = check()
    assert found.returncode == 13, found.stderr
    assert f"error: archived WAL {stored.relative_to(wal_env['repo'])}" in found.stderr


def test_a_fetch_from_another_location_is_answered_by_its_own_agent_at_once(
    wal_env: dict[str, Path], seaweedfs: SeaweedFS, monkeypatch: pytest.MonkeyPatch
) -> None:
    """restore_command switched to another location while the first one's agent still runs
    (it outlives its call): that agent must not answer, and must not take the answer away
    as it goes. The fetch failed after 90 s with 255, which ends a recovery."""
    bucket = seaweedfs.create_bucket()
    for name, value in {"AWS_ENDPOINT_URL": seaweedfs.endpoint_url,
                        "AWS_ACCESS_KEY_ID": seaweedfs.access_key_id,
                        "AWS_SECRET_ACCESS_KEY": seaweedfs.secret_access_key,
                        "AWS_REGION": seaweedfs.region}.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    program = Path(sys.executable).with_name("drplan")
    copied = subprocess.run(
        [str(program), "copy", "--from", str(wal_env["repo"]), "--to", f"s3://{bucket}/repo",
         "--password-file", str(wal_env["password"])],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert copied.returncode == 0, copied.stderr
    plan = yaml.safe_load(wal_env["plan"].read_text())
    plan["locations"]["second"] = {
        "role": "cloud", "kind": "s3", "bucket": bucket, "prefix": "repo",
    }  # fmt: skip
    plan["jobs"]["db-wal"]["locations"] = ["local", "second"]
    wal_env["plan"].write_text(yaml.safe_dump(plan))
    first = segment(wal_env, "000000010000000000000001", b"wal ")
    assert drplan(wal_env, "push", str(first)).returncode == 0
    for location in ("local", "second") * 3:
        out = wal_env["pg_wal"] / f"RECOVERYXLOG-{location}"
        started = time.monotonic()
        fetched = drplan(wal_env, "fetch", "--repo", location, first.name, str(out))
        assert fetched.returncode == 0, fetched.stderr
        assert out.read_bytes() == first.read_bytes()
        assert time.monotonic() - started < 20, f"{location}: {time.monotonic() - started:.0f}s"
        out.unlink()


def test_a_file_archived_ahead_for_another_command_line_is_archived_again_for_this_one(
    wal_env: dict[str, Path],
) -> None:
    """The agent archives ready files ahead of PostgreSQL and leaves a marker for each. If
    archive_command then names another plan (another system, other locations), such a
    marker is no answer: the file went to the old plan's locations, not this one's."""
    other_repo = wal_env["repo"].with_name("other-repo")
    init_repo(LocalStorage(other_repo))
    plan = yaml.safe_load(wal_env["plan"].read_text())
    plan["locations"]["local"]["path"] = str(other_repo)
    other = {**wal_env, "plan": wal_env["plan"].with_name("other-plan.yaml")}
    other["plan"].write_text(yaml.safe_dump(plan))
    ahead = segment(wal_env, "000000010000000000000002", b"ready ahead ")
    (wal_env["pg_wal"] / "archive_status" / f"{ahead.name}.ready").touch()
    first = segment(wal_env, "000000010000000000000001", b"first ")
    assert wal_push_script(wal_env, first).returncode == 0
    marker = wal_env["pg_wal"] / "drplan-archive" / f"{ahead.name}.ok"
    wait_until(marker.exists, "the agent to archive the ready file ahead")
    for push in (wal_push_script, lambda env, path: drplan(env, "push", str(path))):
        pushed = push(other, ahead)
        assert pushed.returncode == 0, pushed.stderr
        stored = [i.name for i in LocalStorage(other_repo).list(WAL_PREFIX)]
        assert any(ahead.name in name for name in stored), stored
