"""Command backups: a system's `command` output stored as SYSTEM.out in a snapshot,
deduplicated across runs; a command that fails saves nothing and says why in one line."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import yaml

from tests.conftest import Result
from tests.integration.conftest import files_job_plan
from tests.integration.test_locations import FAST_KDF

Run = Callable[..., Result]


def command_plan(tmp_path: Path, command: str) -> Path:
    primary = {"role": "primary", "kind": "local", "path": str(tmp_path / "primary")}
    plan_path = files_job_plan(tmp_path, tmp_path, {"primary": primary})
    raw = yaml.safe_load(plan_path.read_text())
    raw["systems"] = {"kubernetes": {"kind": "command", "tier": "critical",
                                     "data_classes": ["configuration"], "command": command}}  # fmt: skip
    raw["jobs"] = {"k8s-state": {"system": "kubernetes", "type": "command", "schedule": "4h",
                                 "locations": ["primary"]}}  # fmt: skip
    plan_path.write_text(yaml.safe_dump(raw))
    subprocess.run([sys.executable, "-m", "drplan", "--plan", str(plan_path), "repo", "init",
                    "primary", *FAST_KDF], check=True, capture_output=True)  # fmt: skip
    return plan_path


def test_a_command_backup_stores_its_output_and_restores_it_bit_exact(
    run: Run, tmp_path: Path, password: str
) -> None:
    dump = tmp_path / "etcd.snapshot"
    dump.write_bytes(random.Random(5).randbytes(24 << 20))  # as etcdctl would write
    plan = command_plan(tmp_path, f"cat {dump}; echo 'snapshot saved' >&2")
    first = run("--plan", str(plan), "backup", "k8s-state", "--json")
    assert first.code == 0, first.err
    report = json.loads(first.out)
    assert report["source"] == {"kind": "command", "output": "kubernetes.out",
                                "size": dump.stat().st_size}  # fmt: skip
    assert "kubernetes: snapshot saved" in first.err  # its standard error, passed on

    with dump.open("ab") as f:  # a little changes: a little is stored
        f.write(b"one more key")
    second = run("--plan", str(plan), "backup", "k8s-state", "--json")
    assert second.code == 0, second.err
    added = json.loads(second.out)["summary"]["bytes_added"]
    assert added < report["summary"]["bytes_added"] / 3

    restored = tmp_path / "restored"
    done = run("--plan", str(plan), "restore", "latest", "--target", str(restored),
               "--repo", "primary")  # fmt: skip
    assert done.code == 0, done.err
    assert (restored / "kubernetes.out").read_bytes() == dump.read_bytes()


def test_a_failing_command_saves_nothing_and_says_why(
    run: Run, tmp_path: Path, password: str
) -> None:
    plan = command_plan(
        tmp_path, "echo partial-output; echo 'etcd: connection refused' >&2; exit 3"
    )
    failed = run("--plan", str(plan), "backup", "k8s-state")
    assert failed.code == 1
    lines = failed.err.strip().splitlines()
    assert len(lines) == 1, failed.err
    assert "its command exited with code 3: etcd: connection refused" in lines[0]
    listed = run("--plan", str(plan), "snapshots", "--repo", "primary", "--json")
    assert json.loads(listed.out) == []
