"""The evidence manifest and the copy behind it, on a local repository: canonical bytes,
paths that are not UTF-8, links never followed, access times left alone, nested paths
taken once, and a stored tree held against its manifest."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from drplan.errors import DrplanError
from drplan.repo.blob_pool import BlobPool
from drplan.repo.keys import KdfParams
from drplan.repo.pack import DATA
from drplan.repo.repository import Repository
from drplan.security.evidence_copy import copy_paths, roots
from drplan.security.evidence_manifest import Manifest, compare, path_of, sha256
from drplan.storage.local import LocalStorage

FAST_KDF = KdfParams(time_cost=1, memory_kib=1024, parallelism=1)


@pytest.fixture
def repo(tmp_path: Path) -> Repository:
    return Repository.init(LocalStorage(tmp_path / "repo"), b"pw", kdf=FAST_KDF)


def captured(repo: Repository, *paths: Path) -> tuple[Manifest, bytes]:
    manifest = Manifest({"incident": "INC-TEST", "paths": [str(p) for p in paths]})
    with BlobPool(repo, DATA) as pool:
        copied = copy_paths(repo, pool, roots([str(p) for p in paths]), manifest)
    repo.flush()
    return manifest, copied.tree


def test_nested_and_repeated_paths_are_taken_once() -> None:
    assert roots(["/srv/a/b", "/srv/a", "/srv/ab", "/srv/a/", "/srv/./a"]) == [
        b"/srv/a",
        b"/srv/ab",
    ]
    assert roots(["/", "/etc"]) == [b"/"]


def test_the_encoding_is_canonical_and_decodes_back() -> None:
    manifest = Manifest({"b": 1, "a": "é"}, [{"path": "/x", "type": "file", "sha256": "0" * 64}])
    body = manifest.encode()
    assert body.startswith(b'{"a":"\\u00e9","b":1,"entries":[')
    assert Manifest({"a": "é", "b": 1}, manifest.entries).encode() == body
    back = Manifest.decode(body)
    assert (back.header, back.entries) == ({"a": "é", "b": 1}, manifest.entries)
    with pytest.raises(DrplanError, match="lacks 'entries'"):
        Manifest.decode(b'{"version": 1}')
    with pytest.raises(DrplanError, match="not one"):
        Manifest.decode(b"[]")


def test_every_entry_is_recorded_and_no_link_is_followed(repo: Repository, tmp_path: Path) -> None:
    root = tmp_path / "srv"
    (root / "d").mkdir(parents=True)
    (root / "d" / "a.txt").write_bytes(b"alpha")
    odd = os.fsencode(root) + b"/raw-\xff"
    with open(odd, "wb") as f:
        f.write(b"odd name")
    outside = tmp_path / "secret"
    outside.write_bytes(b"not part of the system")
    (root / "escape").symlink_to(outside)
    os.mkfifo(root / "fifo")
    old = 1_500_000_000_000_000_000
    os.utime(root / "d" / "a.txt", ns=(old, old))

    manifest, tree = captured(repo, root)
    entries = {path_of(e): e for e in manifest.entries}
    assert entries[os.fsencode(root / "d" / "a.txt")]["sha256"] == sha256(b"alpha")
    assert entries[odd]["path_b64"]
    assert entries[odd]["sha256"] == sha256(b"odd name")
    assert entries[os.fsencode(root / "escape")]["target"] == str(outside)
    assert "sha256" not in entries[os.fsencode(root / "escape")]
    assert entries[os.fsencode(root / "fifo")]["type"] == "fifo"
    assert os.fsencode(outside) not in entries
    assert (root / "d" / "a.txt").stat().st_atime_ns == old  # read without touching atime
    walk = [path_of(e) for e in manifest.entries]  # a directory before what it holds
    at = [walk.index(os.fsencode(p)) for p in (root, root / "d", root / "d" / "a.txt")]
    assert walk[0] == os.fsencode(tmp_path.parents[-2])
    assert at == sorted(at)
    assert compare(repo, manifest, tree) == ([], 2, len(b"alpha") + len(b"odd name"))


def test_a_tree_that_differs_from_its_manifest_is_named(repo: Repository, tmp_path: Path) -> None:
    root = tmp_path / "srv"
    root.mkdir()
    (root / "a").write_bytes(b"alpha")
    (root / "b").write_bytes(b"beta")
    manifest, tree = captured(repo, root)
    a, b = (os.fsencode(root / n) for n in "ab")
    for entry in manifest.entries:
        if path_of(entry) == a:
            entry["sha256"] = sha256(b"other")
        if path_of(entry) == b:
            entry["mode"] = 0o777
    manifest.entries.append({"path": "/srv/ghost", "type": "file"})
    problems, files, _ = compare(repo, manifest, tree)
    assert problems == [
        f"{root / 'a'}: its content does not match its SHA-256 in the manifest",
        f"{root / 'b'}: mode differ from the manifest",
        "/srv/ghost: in the manifest, but not stored",
    ]
    assert files == 2
