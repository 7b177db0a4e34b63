"""etcd systems against a real etcd on loopback: snapshots checked before they are
stored, deduplicated between runs, copied to S3, restored from S3 alone into a data
directory a member starts from, with its keys counted against the backup's."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from testbed.etcd import Etcd
from tests.conftest import Result
from tests.fixtures.seaweedfs import SeaweedFS
from tests.integration.conftest import platform_plan
from tests.integration.test_locations import s3_location

Run = Callable[..., Result]
CHECKED = ["/registry/pods/", "/registry/deployments/"]


def _plan(tmp_path: Path, member: Etcd, seaweedfs: SeaweedFS | None = None, **extra: Any) -> Path:
    locations: dict[str, Any] = {
        "primary": {"role": "primary", "kind": "local", "path": str(tmp_path / "primary")}
    }
    if seaweedfs is not None:
        locations["cloud"] = s3_location(seaweedfs, seaweedfs.create_bucket(), "cloud")
    system = member.system(check_prefixes=CHECKED, **extra)
    return platform_plan(tmp_path, {"kubernetes": system}, locations)


def _backup(run: Run, plan: Path) -> dict[str, Any]:
    result = run("--plan", str(plan), "backup", "kubernetes", "--json")
    assert result.code == 0, result.err
    data: dict[str, Any] = json.loads(result.out)
    return data


def _snapshots(run: Run, plan: Path) -> list[dict[str, Any]]:
    listed = run("--plan", str(plan), "snapshots", "--repo", "primary", "--json")
    assert listed.code == 0, listed.err
    found: list[dict[str, Any]] = json.loads(listed.out)
    return found


def test_an_etcd_snapshot_is_stored_once_then_only_its_change_and_restored_from_s3_alone(
    run: Run, tmp_path: Path, etcd_member: Etcd, seaweedfs: SeaweedFS, s3_secrets: None,
    password: str,
) -> None:  # fmt: skip
    # About 24 MB of state, as a mid-size cluster's: a change of ten keys must not cost that.
    etcd_member.put_many({f"/registry/configmaps/default/cm-{i}": os.urandom(6000).hex()
                          for i in range(2000)})  # fmt: skip
    plan = _plan(tmp_path, etcd_member, seaweedfs)
    first = _backup(run, plan)
    assert first["source"]["kind"] == "etcd"
    assert first["source"]["keys"] == etcd_member.count()
    assert first["source"]["prefixes"] == {p: etcd_member.count(p) for p in CHECKED}
    assert first["summary"]["bytes_added"] > 20_000_000
    assert first["copies"]["cloud"]["error"] is None

    etcd_member.put_many({f"/registry/pods/default/new-{i}": f"pod-{i}" for i in range(10)})
    second = _backup(run, plan)
    assert second["source"]["revision"] > first["source"]["revision"]
    assert (
        second["source"]["prefixes"]["/registry/pods/"]
        == first["source"]["prefixes"]["/registry/pods/"] + 10
    )
    # The second stores the blocks of the pages that changed (0.46 MB when measured),
    # not the database again, nor 1 MiB chunks around each changed page (8 MB).
    assert second["summary"]["bytes_added"] < 2_000_000, second["summary"]

    data_dir = tmp_path / "restored" / "member"
    restored = run("--plan", str(plan), "restore", "etcd", "kubernetes", "--repo", "cloud",
                   "--data-dir", str(data_dir), "--name", "m1",
                   "--initial-advertise-peer-urls", "http://127.0.0.1:2390", "--prove", "--json")  # fmt: skip
    assert restored.code == 0, restored.err
    report = json.loads(restored.out)
    assert report["location"] == "cloud"
    assert report["snapshot"] == second["snapshot"]
    assert report["checks"]["keys"] == str(second["source"]["keys"])
    assert report["checks"]["/registry/pods/"] == str(etcd_member.count("/registry/pods/"))
    assert stat.S_IMODE((data_dir / "member").stat().st_mode) == 0o700
    assert (data_dir / "member" / "snap" / "db").is_file()


def test_an_older_etcd_snapshot_is_restored_by_time(
    run: Run, tmp_path: Path, etcd_member: Etcd, password: str
) -> None:
    plan = _plan(tmp_path, etcd_member)
    first = _backup(run, plan)
    etcd_member.ctl("del", "/registry/pods/", "--prefix")
    assert etcd_member.count("/registry/pods/") == 0
    _backup(run, plan)
    restored = run("--plan", str(plan), "restore", "etcd", "kubernetes", "--to", first["time"],
                   "--data-dir", str(tmp_path / "before"), "--prove", "--json",
                   "--initial-advertise-peer-urls", "http://127.0.0.1:2391")  # fmt: skip
    assert restored.code == 0, restored.err
    report = json.loads(restored.out)
    assert report["snapshot"] == first["snapshot"]
    assert report["checks"]["/registry/pods/"] == "200"  # the pods deleted since are back


def test_a_restore_never_writes_into_a_data_directory_in_use(
    run: Run, tmp_path: Path, etcd_member: Etcd, password: str
) -> None:
    plan = _plan(tmp_path, etcd_member)
    _backup(run, plan)
    result = run("--plan", str(plan), "restore", "etcd", "kubernetes",
                 "--data-dir", str(etcd_member.directory))  # fmt: skip
    assert result.code == 2
    assert "exists and is not empty" in result.err
    assert "Traceback" not in result.err


def test_an_unreachable_member_saves_nothing_and_says_so_in_one_line(
    run: Run, tmp_path: Path, etcd_member: Etcd, password: str
) -> None:
    plan = _plan(tmp_path, etcd_member)
    text = plan.read_text().replace(etcd_member.endpoint, "http://127.0.0.1:9")
    plan.write_text(text)
    result = run("--plan", str(plan), "backup", "kubernetes")
    assert result.code == 1
    line = result.err.strip().splitlines()[0]
    assert "kubernetes" in line, result.err
    assert "127.0.0.1:9" in line, result.err
    assert "Traceback" not in result.err
    assert _snapshots(run, plan) == []


def test_wrong_tls_is_refused_and_the_right_certificates_work(
    run: Run, tmp_path: Path, etcd_tls_member: Etcd, password: str
) -> None:
    assert etcd_tls_member.client is not None
    plan = _plan(tmp_path, etcd_tls_member)
    assert _backup(run, plan)["source"]["keys"] == etcd_tls_member.count()
    # A client certificate the cluster's CA never signed stands for a stolen or stale one.
    wrong = tmp_path / "wrong"
    from testbed.certs import Authority  # noqa: PLC0415

    stranger = Authority(wrong, "another CA").issue("drplan-client", server=False)
    plan.write_text(plan.read_text().replace(str(etcd_tls_member.client.cert), str(stranger.cert))
                    .replace(str(etcd_tls_member.client.key), str(stranger.key)))  # fmt: skip
    result = run("--plan", str(plan), "backup", "kubernetes")
    assert result.code == 1, result.err
    assert "kubernetes" in result.err
    assert "Traceback" not in result.err
    assert "certificate" in result.err.lower() or "tls" in result.err.lower()
    assert len(_snapshots(run, plan)) == 1


def test_a_cluster_with_authentication_is_backed_up_with_the_plans_user_and_password(
    run: Run, tmp_path: Path, etcd_member: Etcd, password: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "etcd-password-SENTINEL"
    etcd_member.enable_auth("root-password", {"drplan": (secret, "root"),
                                              "reader": (secret, "reader")})  # fmt: skip
    plan = _plan(tmp_path, etcd_member, user="drplan", password="${ETCD_PASSWORD}")
    monkeypatch.setenv("ETCD_PASSWORD", secret)
    assert _backup(run, plan)["source"]["keys"] == etcd_member.count()

    monkeypatch.setenv("ETCD_PASSWORD", "not-the-password")
    wrong = run("--plan", str(plan), "backup", "kubernetes")
    assert wrong.code == 1
    assert "authentication failed" in wrong.err
    assert "not-the-password" not in wrong.err + wrong.out
    # A user who may read every key still may not take a snapshot: etcd keeps it for root.
    plan.write_text(plan.read_text().replace("user: drplan", "user: reader"))
    monkeypatch.setenv("ETCD_PASSWORD", secret)
    refused = run("--plan", str(plan), "backup", "kubernetes")
    assert refused.code == 1
    assert "permission denied" in refused.err
    assert "root role" in refused.err
    assert secret not in refused.err + refused.out
    assert len(_snapshots(run, plan)) == 1


@pytest.mark.parametrize("damage", ["trailer", "database"])
def test_a_damaged_snapshot_is_caught_before_it_is_stored(
    run: Run, tmp_path: Path, etcd_member: Etcd, password: str, damage: str
) -> None:
    # etcdctl as a member with a failing disk would leave it: the file it saved, damaged.
    shim = tmp_path / "bin"
    shim.mkdir()
    offset = "-40" if damage == "trailer" else "4096"  # the SHA-256 itself, or the pages
    for name in ("etcd", "etcdctl"):
        (shim / name).write_text(
            "#!/bin/sh\n"
            f'/usr/bin/{name} "$@" || exit $?\n'
            'if [ "$1 $2" = "snapshot save" ] || [ "${2%% *} ${3%% *}" = "snapshot save" ]; then :; fi\n'
            "for last; do :; done\n"
            'case "$*" in *"snapshot save"*) python3 - "$last" <<\'PY\'\n'
            "import sys\n"
            "path = sys.argv[1]\n"
            "with open(path, 'r+b') as f:\n"
            f"    f.seek({offset}, 0 if {offset} >= 0 else 2)\n"
            "    byte = f.read(1)\n"
            f"    f.seek({offset}, 0 if {offset} >= 0 else 2)\n"
            "    f.write(bytes([byte[0] ^ 0xFF]))\n"
            "PY\n;; esac\n"
        )
        (shim / name).chmod(0o755)
    plan = _plan(tmp_path, etcd_member, bin_dir=str(shim))
    result = run("--plan", str(plan), "backup", "kubernetes")
    assert result.code == 1, result.out + result.err
    assert "Traceback" not in result.err
    assert "damaged" in result.err or "snapshot status" in result.err, result.err
    assert _snapshots(run, plan) == []
