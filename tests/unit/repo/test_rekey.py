"""`copy --rekey`'s pieces on local directories: the new repository's identity, the order
snapshots are written in, and blobs and trees re-identified under another blob-id key."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from drplan.errors import ReplicaMismatchError
from drplan.repo.crypto import MasterKey
from drplan.repo.pack import DATA, TREE
from drplan.repo.rekey import _in_order, open_target, rekey_id
from drplan.repo.rekey_blobs import Rekeyer, rekeyed_snapshot
from drplan.repo.rekey_objects import _newest_partials
from drplan.repo.replication import SourceDamage
from drplan.repo.repository import Repository
from drplan.repo.snapshot import Snapshot
from drplan.repo.tree import Node, decode_tree, encode_tree
from drplan.storage import ObjectInfo, Storage
from drplan.storage.local import LocalStorage
from tests.integration.conftest import FAST_KDF, PASSWORD

NEW = b"the new password"
T0 = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def _repo(path: Path) -> Repository:
    return Repository.init(LocalStorage(path), PASSWORD.encode(), kdf=FAST_KDF)


def _snap(
    sid: str, minutes: int, *, parent: str | None = None, chain: list[str] | None = None
) -> Snapshot:
    source = {"kind": "postgres", "chain": chain} if chain is not None else {"kind": "files"}
    return Snapshot(T0 + timedelta(minutes=minutes), b"\0" * 32, ["/x"], "h", "u",
                    parent=parent, source=source, id=sid * 64)  # fmt: skip


def test_the_new_repository_id_proves_its_source_only_to_its_own_key() -> None:
    key, other = MasterKey.generate(), MasterKey.generate()
    made = rekey_id(key, "a" * 32)
    assert made == rekey_id(key, "a" * 32)
    assert len(made) == 32
    assert int(made, 16) >= 0
    assert made != rekey_id(other, "a" * 32)
    assert made != rekey_id(key, "b" * 32)


def test_snapshots_come_after_those_they_name_whatever_their_clocks_say() -> None:
    full = _snap("a", 10, chain=[])
    incr = _snap("b", 5, parent="a" * 64, chain=["a" * 64])  # a clock behind the full's
    files_parent = _snap("c", 30)
    files_child = _snap("d", 20, parent="c" * 64)
    lone = _snap("e", 1, parent="f" * 64)  # its parent is not re-keyed
    order = [s.id[0] for s in _in_order([files_child, incr, lone, full, files_parent])]
    assert sorted(order) == ["a", "b", "c", "d", "e"]
    assert order.index("a") < order.index("b")
    assert order.index("c") < order.index("d")
    assert order[0] == "e"  # otherwise oldest first


def test_a_rekeyed_snapshot_names_new_ids_and_remembers_its_old_one() -> None:
    full, incr = "a" * 64, "b" * 64
    old = _snap("c", 0, parent=incr, chain=[full, incr])
    ids = {full: "1" * 64, incr: "2" * 64}
    new = rekeyed_snapshot(old, b"\x07" * 32, ids)
    assert new.tree == b"\x07" * 32
    assert new.parent == "2" * 64
    assert new.source["chain"] == ["1" * 64, "2" * 64]
    assert old.source["chain"] == [full, incr]  # the source's snapshot is left as it was
    assert new.previous_ids == ["c" * 64]
    assert new.id == ""
    assert (new.time, new.host, new.paths) == (old.time, old.host, old.paths)
    dropped = rekeyed_snapshot(replace(old, parent="9" * 64, source={"kind": "files"}), b"", ids)
    assert dropped.parent is None  # a parent not re-keyed only told a backup what to compare


def _file(name: bytes, blobs: list[bytes]) -> Node:
    return Node(name, "file", 0o644, 0, 0, 1, size=0, content=blobs)


def _dir(name: bytes, subtree: bytes) -> Node:
    return Node(name, "dir", 0o755, 0, 0, 1, subtree=subtree)


def _source_tree(repo: Repository) -> tuple[bytes, dict[bytes, bytes]]:
    """A root with two directories holding the same subtree, a file of three chunks (one
    of them twice), a name that is not UTF-8, and a key this drplan does not know."""
    chunks = [bytes([i]) * (1000 + i) for i in range(3)]
    ids = [repo.save_blob(DATA, c)[0] for c in chunks]
    leaf = repo.save_tree([_file(b"data", [ids[0], ids[1], ids[2], ids[0]]),
                           _file(b"raw-\xff", [ids[1]])])  # fmt: skip
    doc = json.loads(encode_tree([_dir(b"one", leaf), _dir(b"two", leaf)]))
    doc["nodes"][0]["future_key"] = {"kept": True}
    root, _ = repo.save_blob(TREE, json.dumps(doc, sort_keys=True, separators=(",", ":")).encode())
    repo.flush()
    return root, dict(zip(ids, chunks, strict=True))


def _contents(repo: Repository, tree_id: bytes) -> dict[bytes, bytes]:
    out: dict[bytes, bytes] = {}
    for node in decode_tree(repo.read_blob(tree_id), "t"):
        if node.subtree is not None:
            out |= {node.name + b"/" + k: v for k, v in _contents(repo, node.subtree).items()}
        else:
            out[node.name] = b"".join(repo.read_blob(c) for c in node.content)
    return out


def test_blobs_and_trees_get_new_ids_and_the_same_contents(tmp_path: Path) -> None:
    source = _repo(tmp_path / "source")
    root, _ = _source_tree(source)
    target = _repo(tmp_path / "target")
    rekeyer = Rekeyer(source, target)
    new_root = rekeyer.root(root)
    target.flush()

    assert _contents(target, new_root) == _contents(source, root)
    assert not set(source.index.blobs) & set(target.index.blobs)  # no id of the source
    assert len(target.index.blobs) == 3 + 2  # 3 chunks, the shared leaf once, the root
    raw_root = json.loads(target.read_blob(new_root))
    assert raw_root["nodes"][0]["future_key"] == {"kept": True}
    for blob_id in target.index.blobs:  # each id is the new key's hash of its plaintext
        assert target.key.blob_id(target.read_blob(blob_id)) == blob_id

    again = Repository.open(LocalStorage(tmp_path / "target"), PASSWORD.encode())
    again.load_index()
    assert Rekeyer(source, again).root(root) == new_root  # a rerun derives the same ids
    again.flush()
    assert again.stats.blobs_added == 0  # and stores nothing again


def test_a_blob_the_source_cannot_give_is_source_damage(tmp_path: Path) -> None:
    source = _repo(tmp_path / "source")
    lost = source.save_tree([_file(b"gone", [b"\x05" * 32])])  # a chunk never stored
    source.flush()
    with pytest.raises(SourceDamage, match="not in the index"):
        Rekeyer(source, _repo(tmp_path / "target")).root(lost)


def test_of_several_partials_of_a_segment_the_newest_is_carried() -> None:
    stem = "wal/db/00000001/00000000/000000010000000000000003"
    listing = [
        ObjectInfo(f"{stem}.partial.{'a' * 32}", 10, 5.0),
        ObjectInfo(f"{stem}.partial.{'b' * 32}", 10, 9.0),
        ObjectInfo(f"{stem}.partial.{'c' * 32}", 10, 7.0),
        ObjectInfo(f"{stem}.{'d' * 32}", 10, 1.0),
        ObjectInfo(f"{stem}.00000028.backup.{'e' * 32}", 10, 1.0),
    ]
    kept = {i.name.rsplit(".", 1)[1][0] for i in _newest_partials(listing)}
    assert kept == {"b", "d", "e"}


def test_the_target_is_new_or_the_same_rekey_resumed_and_anything_else_is_refused(
    tmp_path: Path,
) -> None:
    source = _repo(tmp_path / "source")
    storage = LocalStorage(tmp_path / "target")
    made, created = open_target(source, storage, NEW, FAST_KDF)
    assert created
    assert made.config.id == rekey_id(made.opened_master(), source.config.id)
    assert made.config.id != source.config.id
    assert (made.config.chunker, made.cipher) == (source.config.chunker, source.cipher)
    assert made.key.id_key != source.key.id_key

    again, created = open_target(source, storage, NEW, FAST_KDF)
    assert not created
    assert again.config.id == made.config.id

    other = _repo(tmp_path / "other")
    refused: list[tuple[Repository, Storage, bytes]] = [
        (other, storage, NEW),  # made for another source
        (source, storage, b"not the new one"),
        (source, LocalStorage(tmp_path / "source"), PASSWORD.encode()),  # the source itself
    ]
    for origin, where, password in refused:
        with pytest.raises(ReplicaMismatchError) as exc:
            open_target(origin, where, password, FAST_KDF)
        assert exc.value.exit_code == 15
        assert "is not empty" in exc.value.message

    foreign = tmp_path / "foreign"
    (foreign / "data" / "ab").mkdir(parents=True)
    (foreign / "data" / "ab" / "ab12").write_bytes(b"x")
    with pytest.raises(ReplicaMismatchError):
        open_target(source, LocalStorage(foreign), NEW, FAST_KDF)


def test_a_creation_cut_before_its_config_is_finished_with_the_new_password(
    tmp_path: Path,
) -> None:
    source = _repo(tmp_path / "source")
    storage = LocalStorage(tmp_path / "target")
    open_target(source, storage, NEW, FAST_KDF)
    (tmp_path / "target" / "config").unlink()  # killed before `repo init` wrote it
    made, created = open_target(source, storage, NEW, FAST_KDF)
    assert created
    assert made.config.id == rekey_id(made.opened_master(), source.config.id)
    (tmp_path / "target" / "config").unlink()
    with pytest.raises(ReplicaMismatchError):  # key files of another password: not ours
        open_target(source, storage, b"someone else", FAST_KDF)


def test_a_few_blobs_of_a_large_pack_are_read_alone(tmp_path: Path) -> None:
    source = _repo(tmp_path / "source")
    big = [source.save_blob(DATA, bytes([i]) * 100_000)[0] for i in range(3)]
    small = source.save_blob(DATA, b"small")[0]
    source.flush()
    tree = source.save_tree([_file(b"one", [small])])
    source.flush()
    assert source.index.lookup(small).pack.id == source.index.lookup(big[0]).pack.id  # type: ignore[union-attr]
    target = _repo(tmp_path / "target")
    new_root = Rekeyer(source, target).root(tree)
    target.flush()
    assert _contents(target, new_root) == {b"one": b"small"}
    assert len(target.index.blobs) == 2  # the small blob and the tree, not the large ones
