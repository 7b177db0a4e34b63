"""The repository on S3 (a real SeaweedFS on loopback) through the CLI, including a server that dies mid-backup."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import Result
from tests.fixtures.seaweedfs import SeaweedFS, running_seaweedfs
from tests.integration.conftest import Compare

Run = Callable[..., Result]
DRPLAN = str(Path(sys.executable).parent / "drplan")


def s3_env(server: SeaweedFS, monkeypatch: pytest.MonkeyPatch) -> None:
    # Short timeouts and few attempts, so a dead server fails the command in seconds.
    monkeypatch.setenv("DRPLAN_S3_TIMEOUT", "2")
    monkeypatch.setenv("DRPLAN_S3_ATTEMPTS", "3")
    monkeypatch.setenv("AWS_ENDPOINT_URL", server.endpoint_url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", server.access_key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", server.secret_access_key)
    monkeypatch.setenv("AWS_REGION", server.region)


@pytest.fixture
def s3_repo(seaweedfs: SeaweedFS, password: str, monkeypatch: pytest.MonkeyPatch) -> str:
    s3_env(seaweedfs, monkeypatch)
    return f"s3://{seaweedfs.create_bucket()}/drplan"


def test_backup_restore_check_on_s3(
    run: Run, s3_repo: str, source: Path, tmp_path: Path, same_tree: Compare
) -> None:
    init = run("repo", "init", s3_repo, "--kdf-memory", "1024", "--kdf-time", "1")
    assert init.code == 0, init.err
    first = run("backup", "files", str(source), "--repo", s3_repo, "--json")
    assert first.code == 0, first.err
    second = json.loads(run("backup", "files", str(source), "--repo", s3_repo, "--json").out)
    assert second["summary"]["bytes_read"] == 0
    target = tmp_path / "out"
    restored = run(
        "restore", "latest", "--target", str(target), "--repo", s3_repo, "--special-files"
    )
    assert restored.code == 0, restored.err
    same_tree(source, target / source.relative_to("/"))
    check = run("check", "--read-data", "--repo", s3_repo)
    assert check.code == 0, check.err
    assert s3_repo in check.out


def test_s3_repository_missing_and_wrong_credentials(
    run: Run, s3_repo: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = run("snapshots", "--repo", s3_repo)
    assert missing.code == 10
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "Sentinel-Wrong-Secret")
    denied = run("repo", "init", s3_repo)
    assert denied.code == 1
    assert "Sentinel-Wrong-Secret" not in denied.err
    assert denied.err.count("\n") == 1


@pytest.fixture
def private_server(tmp_path: Path) -> Iterator[object]:
    with running_seaweedfs(tmp_path / "weed") as server:
        yield server


def test_server_dying_mid_backup_fails_cleanly_and_leaves_nothing_half_visible(
    private_server: object, tmp_path: Path, password: str, monkeypatch: pytest.MonkeyPatch, run: Run
) -> None:
    server = private_server.s3  # type: ignore[attr-defined]
    s3_env(server, monkeypatch)
    url = f"s3://{server.create_bucket()}/drplan"
    assert run("repo", "init", url, "--kdf-memory", "1024", "--kdf-time", "1").code == 0
    src = tmp_path / "data"
    src.mkdir()
    for i in range(40):
        (src / f"blob{i}").write_bytes(os.urandom(1024 * 1024))
    proc = subprocess.Popen(
        [DRPLAN, "backup", "files", str(src), "--repo", url, "--workers", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
    )
    # Stop the server once the backup has written its first pack, i.e. in the middle.
    deadline = time.monotonic() + 60
    client = server.client()
    bucket = url.split("/")[2]
    while time.monotonic() < deadline:
        listed = client.list_objects_v2(Bucket=bucket, Prefix="drplan/data/")
        if listed.get("KeyCount", 0) > 0:
            break
        time.sleep(0.05)
    private_server.process.send_signal(signal.SIGSTOP)  # type: ignore[attr-defined]
    try:
        out, err = proc.communicate(timeout=120)
    finally:
        private_server.process.send_signal(signal.SIGCONT)  # type: ignore[attr-defined]
    assert proc.returncode == 1, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "did not answer" in lines[0]
    assert "3 attempts" in lines[0]
    assert "Traceback" not in err
    assert out == ""
    # The server is back: no snapshot was made visible, and the repository checks clean.
    assert json.loads(run("snapshots", "--repo", url, "--json").out) == []
    check = run("check", "--read-data", "--repo", url)
    assert check.code == 0, check.err
    assert run("backup", "files", str(src), "--repo", url).code == 0


def test_forget_and_prune_on_s3(run: Run, s3_repo: str, tmp_path: Path) -> None:
    assert run("repo", "init", s3_repo, "--kdf-memory", "1024", "--kdf-time", "1").code == 0
    src = tmp_path / "gen"
    src.mkdir()
    for _ in range(3):
        (src / "data.bin").write_bytes(os.urandom(3 * 1024 * 1024))
        assert run("backup", "files", str(src), "--repo", s3_repo).code == 0
    result = run("forget", "--keep-last", "1", "--prune", "--repo", s3_repo, "--json")
    assert result.code == 0, result.err
    assert len(json.loads(run("snapshots", "--repo", s3_repo, "--json").out)) == 1
    check = json.loads(run("check", "--read-data", "--repo", s3_repo, "--json").out)
    assert check["ok"] is True
    assert check["bytes_read"] < 5 * 1024 * 1024  # two of the three generations are gone
