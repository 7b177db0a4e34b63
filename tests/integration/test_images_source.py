"""Images backups and restores against real registries on loopback (docker-registry):
only what is new is downloaded, an index is kept whole, a restore into an empty registry
serves the same digests, and one bad image (missing, altered) spoils only itself."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from drplan.plan.model.systems import ImagesSystem
from drplan.recovery.files import RestoreOptions, restore_files
from drplan.recovery.images import restore_images
from drplan.repo.repository import Repository
from drplan.sources.images.backup import ImagesBackupError, images_backup
from drplan.sources.stored import files_of
from drplan.storage.local import LocalStorage
from drplan.storage.s3 import S3Storage
from testbed.faultproxy import Fault, FaultPlan, Rule, running_faultproxy
from testbed.registry import Registry, push_image, push_index, random_layer
from tests.fixtures.registry import NewRegistry
from tests.integration.conftest import PASSWORD, init_repo

MIB = 1 << 20


def system(registry: Registry | str, images: list[str], **extra: Any) -> ImagesSystem:
    url = registry if isinstance(registry, str) else registry.url
    return ImagesSystem.model_validate({
        "kind": "images", "tier": "critical", "data_classes": ["configuration"],
        "registry": url, "images": images, **extra,
    })  # fmt: skip


@pytest.fixture
def repo(tmp_path: Path) -> Repository:
    return init_repo(LocalStorage(tmp_path / "repo"))


def blob_gets(registry: Registry, since: int) -> list[str]:
    return [p for m, p, _ in registry.requests()[since:] if m == "GET" and "/blobs/" in p]


def stored_blobs(repo: Repository, tree: bytes) -> set[str]:
    return {"sha256:" + p.split("/")[-1] for p, _ in files_of(repo, tree) if p.startswith("blobs/")}


def test_a_second_deployment_downloads_only_its_new_layer(
    registry: Registry, repo: Repository, tmp_path: Path
) -> None:
    client = registry.client()
    shared = [random_layer(MIB, 101), random_layer(MIB, 102)]
    v1 = push_image(client, "deploy/api", "v1", [*shared, random_layer(MIB, 103)])
    spec = system(registry, ["deploy/api"])
    first = images_backup(repo, system="api", spec=spec, job=None, tags=[])
    assert first.warnings == []
    assert first.snapshot.source["blobs_downloaded"] == 5  # manifest, config, 3 layers
    assert first.snapshot.source["images"] == {
        "deploy/api:v1": {"digest": v1.manifest.digest, "mediaType": v1.manifest.media_type,
                          "platforms": 1},
    }  # fmt: skip

    new_layer = random_layer(MIB, 104)
    v2 = push_image(client, "deploy/api", "v2", [*shared, new_layer])
    mark = len(registry.requests())
    second = images_backup(repo, system="api", spec=spec, job=None, tags=[])
    source = second.snapshot.source
    assert (source["blobs_downloaded"], source["blobs_reused"]) == (3, 5)
    # v1 is not downloaded again, nor are the layers v2 shares with it: one request
    # each for v2's config and its new layer, and none for anything else.
    assert sorted(blob_gets(registry, mark)) == sorted(
        f"/v2/deploy/api/blobs/{d}" for d in (v2.config, v2.layers[2])
    )
    manifest_gets = [
        p for m, p, _ in registry.requests()[mark:] if m == "GET" and "/manifests/" in p
    ]
    assert manifest_gets == [f"/v2/deploy/api/manifests/{v2.manifest.digest}"]  # as HEAD named it
    summary = second.snapshot.summary
    assert len(new_layer) <= summary.bytes_added < len(new_layer) + 64 * 1024
    assert summary.bytes_read < len(new_layer) + 4096  # the layer, its config, its manifest
    assert stored_blobs(repo, second.snapshot.tree) == {
        v1.manifest.digest, v1.config, *v1.layers, v2.manifest.digest, v2.config, *v2.layers
    }  # fmt: skip

    # Restored as plain files, the snapshot is an OCI layout skopeo reads.
    target = tmp_path / "layout"
    restore_files(repo, second.snapshot, RestoreOptions(target=str(target)))
    copied = tmp_path / "copied"
    done = subprocess.run(
        ["skopeo", "copy", f"oci:{target}:deploy/api:v2", f"dir:{copied}"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (copied / "manifest.json").read_bytes() == v2.manifest.raw
    assert (copied / v2.layers[2].removeprefix("sha256:")).read_bytes() == new_layer


def test_an_index_restored_from_s3_into_an_empty_registry_serves_the_same_digests(
    registry: Registry, new_registry: NewRegistry, s3_bucket: S3Storage
) -> None:
    client = registry.client()
    web = push_image(
        client, "shop/web", "1.0", [random_layer(300_000, 201), random_layer(5000, 202)]
    )
    index, children = push_index(client, "shop/multi", "latest", seed=210)
    images = ["shop/web:1.0", "shop/multi", f"shop/web@{web.manifest.digest}"]
    backup_repo = init_repo(s3_bucket)
    backup = images_backup(backup_repo, system="shop", spec=system(registry, images), job=None,
                           tags=["deploy"])  # fmt: skip
    assert backup.warnings == []
    assert backup.snapshot.source["images"]["shop/multi:latest"] == {
        "digest": index.digest, "mediaType": index.media_type, "platforms": 2,
    }  # fmt: skip
    every_platform = {c.manifest.digest for c in children} | {
        d for c in children for d in (c.config, *c.layers)
    }
    assert every_platform <= stored_blobs(backup_repo, backup.snapshot.tree)

    # The recovery site: another registry, empty; the repository opened anew from S3.
    site = new_registry()
    repo = Repository.open(s3_bucket, PASSWORD.encode())
    repo.load_index()
    snapshot = repo.find_snapshot("latest")
    restored = restore_images(repo, snapshot, registry=site.url)
    assert {(i.reference, i.digest, i.verified) for i in restored.images} == {
        ("shop/web:1.0", web.manifest.digest, True),
        (f"shop/web@{web.manifest.digest}", web.manifest.digest, True),
        ("shop/multi:latest", index.digest, True),
    }
    assert restored.bytes_sent >= 300_000
    target = site.client()
    for child in children:  # the index came back whole: every platform's image
        assert target.manifest("shop/multi", child.manifest.digest).raw == child.manifest.raw
        assert target.blob_size("shop/multi", child.layers[0]) is not None
    for ref, digest in (("shop/web:1.0", web.manifest.digest), ("shop/multi:latest", index.digest)):
        inspected = subprocess.run(
            ["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{site.host}/{ref}"],
            capture_output=True, timeout=60, check=False,
        )  # fmt: skip
        assert inspected.returncode == 0, inspected.stderr
        assert "sha256:" + hashlib.sha256(inspected.stdout).hexdigest() == digest
    summary = subprocess.run(
        ["skopeo", "inspect", "--tls-verify=false", f"docker://{site.host}/shop/web:1.0"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert json.loads(summary.stdout)["Digest"] == web.manifest.digest

    again = restore_images(repo, snapshot, registry=site.url)  # the target has it all
    assert again.bytes_sent == 0
    assert all(i.verified for i in again.images)


def test_a_wrong_password_is_one_line_and_never_shown(
    new_registry: NewRegistry, repo: Repository, monkeypatch: pytest.MonkeyPatch
) -> None:
    password = "right-SENTINEL-pw"
    site = new_registry(htpasswd=("drplan", password))
    push_image(site.client(), "private/app", "v1", [random_layer(2000, 301)])
    monkeypatch.setenv("REG_PASSWORD", "wrong-SENTINEL-pw")
    spec = system(site, ["private/app"], username="drplan", password="${REG_PASSWORD}")
    with pytest.raises(ImagesBackupError) as failed:
        images_backup(repo, system="app", spec=spec, job=None, tags=[])
    message = f"{failed.value} {failed.value.hint}"
    assert "\n" not in message
    assert "authentication failed (401)" in str(failed.value)
    assert site.url in str(failed.value)
    assert "SENTINEL" not in message
    assert repo.snapshots() == []

    monkeypatch.setenv("REG_PASSWORD", password)
    done = images_backup(repo, system="app", spec=spec, job=None, tags=[])
    assert list(done.snapshot.source["images"]) == ["private/app:v1"]
    assert "SENTINEL" not in done.snapshot.to_json().decode()


def test_a_missing_tag_leaves_a_partial_snapshot_of_the_others(
    registry: Registry, repo: Repository
) -> None:
    present = push_image(registry.client(), "part/app", "v1", [random_layer(3000, 401)])
    spec = system(registry, ["part/app:v1", "part/app:v9"])
    done = images_backup(repo, system="app", spec=spec, job=None, tags=[])
    assert len(done.warnings) == 1
    assert done.warnings[0].startswith("part/app:v9: ")
    assert "not found (404)" in done.warnings[0]
    assert done.snapshot.source["partial"] is True
    assert done.snapshot.summary.errors == done.warnings
    assert list(done.snapshot.source["images"]) == ["part/app:v1"]
    assert present.layers[0] in stored_blobs(repo, done.snapshot.tree)


def test_a_repository_refused_to_us_leaves_a_partial_snapshot_of_the_others(
    registry: Registry, repo: Repository
) -> None:
    # A registry whose policy lets the backup user read one repository and not the other
    # answers 401 for the second's manifests: the proxy in front of it does just that.
    client = registry.client()
    allowed = push_image(client, "scoped/open", "v1", [random_layer(3000, 501)])
    push_image(client, "scoped/secret", "v1", [random_layer(3000, 502)])
    refused = Rule(Fault.error(401, "UNAUTHORIZED"), path="/v2/scoped/secret/manifests/")
    with running_faultproxy(registry.url, FaultPlan(refused)) as proxy:
        spec = system(proxy.endpoint_url, ["scoped/open:v1", "scoped/secret:v1"])
        done = images_backup(repo, system="app", spec=spec, job=None, tags=[])
    assert len(done.warnings) == 1, done.warnings
    assert done.warnings[0].startswith("scoped/secret:v1: ")
    assert "401" in done.warnings[0]
    assert done.snapshot.source["partial"] is True
    assert list(done.snapshot.source["images"]) == ["scoped/open:v1"]
    assert allowed.layers[0] in stored_blobs(repo, done.snapshot.tree)


def test_a_layer_altered_in_the_registry_is_refused_and_never_stored(
    new_registry: NewRegistry, repo: Repository
) -> None:
    site = new_registry()
    client = site.client()
    good = push_image(client, "good/app", "v1", [random_layer(50_000, 501)])
    bad = push_image(
        client, "bad/app", "v1", [random_layer(50_000, 502), random_layer(60_000, 503)]
    )
    data = site.blob_file(bad.layers[1])
    damaged = bytearray(data.read_bytes())
    damaged[len(damaged) // 2] ^= 0xFF  # same size: only the digest can tell
    data.write_bytes(bytes(damaged))

    done = images_backup(repo, system="app", spec=system(site, ["good/app", "bad/app"]), job=None,
                         tags=[])  # fmt: skip
    assert len(done.warnings) == 1
    assert done.warnings[0].startswith("bad/app:v1: ")
    assert f"not {bad.layers[1]} (refused)" in done.warnings[0]
    assert list(done.snapshot.source["images"]) == ["good/app:v1"]
    held = stored_blobs(repo, done.snapshot.tree)
    assert bad.layers[1] not in held
    assert bad.manifest.digest not in held
    assert good.layers[0] in held

    # Alone, the altered image saves nothing: it is not taken for a backup either.
    before = len(repo.snapshots())
    with pytest.raises(ImagesBackupError, match="no image could be backed up: bad/app:v1: "):
        images_backup(repo, system="app", spec=system(site, ["bad/app"]), job=None, tags=[])
    assert len(repo.snapshots()) == before


def test_an_unreachable_registry_saves_nothing(repo: Repository) -> None:
    with pytest.raises(ImagesBackupError) as failed:
        images_backup(repo, system="app", spec=system("http://127.0.0.1:9", ["a/b"]), job=None,
                      tags=[])  # fmt: skip
    assert "cannot be reached" in str(failed.value)
    assert "\n" not in str(failed.value)
    assert repo.snapshots() == []
