"""`drplan copy --rekey`: a repository's snapshots, WAL and incident timelines written into a
new repository under keys that share nothing with the source's (blob-id key included), to
a local directory and to S3 (SeaweedFS); crash-safe and resumable."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from drplan.errors import IntegrityError, WrongPasswordError
from drplan.incidents import replicas as incidents
from drplan.repo.crypto import KeyRing
from drplan.repo.locks import RepositoryLock
from drplan.repo.objects import open_object
from drplan.repo.pack import read_header
from drplan.repo.rekey import RekeyResult, open_target, rekey_snapshots
from drplan.repo.repository import Repository
from drplan.security.repo_audit import list_refs, open_entry
from drplan.sources.postgres.wal_archive import WalArchive
from drplan.storage import Storage
from drplan.storage.local import LocalStorage
from tests.conftest import Result, wait_until
from tests.fixtures.postgres import PgCluster, free_port
from tests.fixtures.seaweedfs import SeaweedFS
from tests.integration.conftest import FAST_KDF, PASSWORD, Compare, init_repo
from tests.integration.test_postgres_full_backup import full_then_incremental
from tests.integration.test_repo_faults import backup
from tests.integration.test_s3_repository import s3_env

Run = Callable[..., Result]
DRPLAN = str(Path(sys.executable).parent / "drplan")
NEW = "the new password after the breach"
KINDS = {"config": "config", "index/": "index", "snapshots/": "snapshot", "keyring/": "keyring",
         "wal/": "wal", "incidents/": "incident", "audit/": "audit"}  # fmt: skip
SEGMENT = 16 * 1024 * 1024


@pytest.fixture(params=["local", "s3"])
def location(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Callable[[str], tuple[str, Storage]]:
    """Empty locations of one kind: the URL the command takes, and a Storage to look in."""
    if request.param == "local":
        return lambda name: (str(tmp_path / name), LocalStorage(tmp_path / name))
    server: SeaweedFS = request.getfixturevalue("seaweedfs")
    s3_env(server, monkeypatch)
    bucket = server.create_bucket()
    return lambda name: (f"s3://{bucket}/{name}", server.storage(bucket, name))


def _names(storage: Storage) -> list[str]:
    return sorted(info.name for info in storage.list(""))


def _use(monkeypatch: pytest.MonkeyPatch, password: str) -> None:
    monkeypatch.setenv("DRPLAN_PASSWORD", password)


def _wal(repo_dir: str) -> dict[str, bytes]:
    """WAL archived as `wal push` stores it: two segments, a history file, and a segment
    being written (its .partial, replaced once: only the newest counts)."""
    repo = Repository.open(LocalStorage(repo_dir), PASSWORD.encode())
    archive = WalArchive(repo, "db")
    files = {
        "000000010000000000000001": os.urandom(1024) * (SEGMENT // 1024),
        "000000010000000000000002": b"second segment " * (SEGMENT // 15),
        "00000002.history": b"1\t0/3000000\tno recovery target specified\n",
    }
    for name, data in files.items():
        assert archive.push(name, data)
    archive.push("000000020000000000000003.partial", b"early" * 1000)
    files["000000020000000000000003"] = b"later, longer" * 2000
    assert archive.push("000000020000000000000003.partial", files["000000020000000000000003"])
    return files


def _filled(run: Run, repo_dir: str, data: Path) -> list[str]:
    """Three snapshots of a varied tree, changing between them; WAL; an incident."""
    ids = [backup(run, repo_dir, data)]
    (data / "added.txt").write_text("after the first backup\n")
    ids.append(backup(run, repo_dir, data))
    (data / "logs.txt").write_text("rewritten\n" * 10_000)
    ids.append(backup(run, repo_dir, data))
    repo = Repository.open(LocalStorage(repo_dir), PASSWORD.encode())
    assert incidents.store(repo, "INC-2026-0007", b'{"events": ["declared"]}\n', 1)
    return ids


def _tokens(storage: Storage, repo: Repository) -> set[str]:
    """Every id the source names objects by (packs, indexes, snapshots, keys, keyrings, WAL
    digests), its blob ids and its repository id."""
    found = {repo.config.id} | {b.hex() for b in repo.index.blobs}
    for name in _names(storage):
        if name.startswith(("config", incidents.PREFIX)):
            continue  # named alike in every repository
        last = name.rsplit("/", 1)[-1]
        found.add(last.rsplit(".", 1)[-1] if name.startswith("wal/") else last)
    return found


def _old_keys_open_nothing(storage: Storage, old: Repository) -> None:
    rings: list[KeyRing] = [old.opened_master().ring(), old.key]
    for name in _names(storage):
        if name.startswith(("keys/", "locks/")):
            continue
        data = storage.read(name)
        kind = next((k for p, k in KINDS.items() if name.startswith(p)), "pack")
        for ring in rings:
            with pytest.raises(IntegrityError):
                _opened(ring, old, kind, data, name)


def _opened(ring: KeyRing, old: Repository, kind: str, data: bytes, name: str) -> object:
    if kind == "pack":
        return read_header(ring, old.cipher, data, name)
    return open_object(ring, old.cipher, kind, data, name)


def rekey(run: Run, source: str, target: str, *args: str) -> dict[str, Any]:
    result = run("copy", "--from", source, "--to", target, "--rekey", "--json", *args)
    assert result.code == 0, result.err
    data: dict[str, Any] = json.loads(result.out)
    return data


def test_rekey_writes_a_new_repository_that_restores_everything_and_shares_no_name(
    run: Run,
    repo_dir: str,
    source: Path,
    tmp_path: Path,
    same_tree: Compare,
    location: Callable[[str], tuple[str, Storage]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    old_ids = _filled(run, repo_dir, source)
    wal = _wal(repo_dir)
    old = Repository.open(LocalStorage(repo_dir), PASSWORD.encode())
    old.load_index()
    url, storage = location("rekeyed")
    monkeypatch.setenv("DRPLAN_NEW_PASSWORD", NEW)
    trail = list_refs(LocalStorage(repo_dir))[0]
    head = max(trail).name  # the source's trail as the re-key finds it

    result = rekey(run, repo_dir, url)

    assert result["created"] is True
    assert sorted(result["copied"]) == sorted(old_ids)
    assert result["damaged"] == {}
    assert result["wal"]["copied"] == 4  # the newest .partial only
    assert result["incidents"]["copied"] == 1
    new_ids = [result["copied"][i] for i in old_ids]
    # No name there is one of the source's: ids, packs, indexes, snapshots, WAL digests.
    names = _names(storage)
    shared = {t for t in _tokens(LocalStorage(repo_dir), old) if any(t in n for n in names)}
    assert shared == set()
    assert {n.split("/")[0] for n in names} >= {"config", "keys", "keyring", "data", "index",
                                                 "snapshots", "wal", "incidents", "audit"}  # fmt: skip
    new = Repository.open(storage, NEW.encode())
    new.load_index()
    assert new.config.id == result["repository"] != old.config.id
    assert new.config.chunker == old.config.chunker
    assert not set(new.index.blobs) & set(old.index.blobs)
    with pytest.raises(WrongPasswordError):
        Repository.open(storage, PASSWORD.encode())
    _old_keys_open_nothing(storage, old)

    # The new trail starts with this copy, naming the source and its trail's head.
    refs, _ = list_refs(storage)
    assert [r.seq for r in refs] == [1]
    entry = open_entry(new, refs[0], storage.read(f"audit/{refs[0].name}"))
    assert entry.fields["details"]["rekey"]["repository"] == old.config.id
    assert entry.fields["outcome"] == "ok"
    assert entry.fields["details"]["rekey"]["audit_head"] == [head]

    # Every snapshot restores bit-exact, with what it was, from the new repository alone.
    _use(monkeypatch, NEW)
    checked = run("check", "--read-data", "--repo", url)
    assert checked.code == 0, checked.err + checked.out
    for before, after in zip(old_ids, new_ids, strict=True):
        snap = new.find_snapshot(after)
        assert snap.previous_ids == [before]
        theirs = tmp_path / f"old-{before[:8]}"
        ours = tmp_path / f"new-{after[:8]}"
        _use(monkeypatch, PASSWORD)
        assert run("restore", before, "--target", str(theirs), "--repo", repo_dir,
                   "--special-files").code == 0  # fmt: skip
        _use(monkeypatch, NEW)
        restored = run("restore", after, "--target", str(ours), "--repo", url, "--special-files")
        assert restored.code == 0, restored.err
        same_tree(theirs, ours)
    assert new.find_snapshot(new_ids[2]).parent == new_ids[1]  # parents follow
    same_tree(source, ours / source.relative_to("/"))

    archive = WalArchive(new, "db")
    for name, data in wal.items():
        assert archive.fetch(name) == data, name  # the .partial stands for its segment
    assert incidents.newest(new, "INC-2026-0007") == b'{"events": ["declared"]}\n'
    # A rerun has nothing left to do; the source's key still opens only the source.
    _use(monkeypatch, PASSWORD)
    again = rekey(run, repo_dir, url)
    assert again["created"] is False
    assert again["copied"] == {}
    assert again["already_present"] == result["copied"]
    assert again["blobs_stored"] == 0
    assert again["wal"]["copied"] == 0


def test_a_target_that_is_not_empty_is_refused_and_untouched(
    run: Run, repo_dir: str, source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    backup(run, repo_dir, source)
    monkeypatch.setenv("DRPLAN_NEW_PASSWORD", NEW)
    other = tmp_path / "other"
    init_repo(LocalStorage(other))
    foreign = tmp_path / "foreign"
    (foreign / "snapshots").mkdir(parents=True)
    (foreign / "snapshots" / "abcd").write_bytes(b"not ours")
    for target in (other, foreign, Path(repo_dir)):
        before = [n for n in _names(LocalStorage(target)) if not n.startswith("audit/")]
        refused = run("copy", "--from", repo_dir, "--to", str(target), "--rekey")
        assert refused.code == 15, refused.err
        assert "is not empty" in refused.err
        assert refused.err.count("\n") == 1
        after = _names(LocalStorage(target))  # the source records the failed copy, no more
        assert [n for n in after if not n.startswith("audit/")] == before
    # A re-key made with one new password is not resumed with another.
    made = tmp_path / "made"
    rekey(run, repo_dir, str(made))
    monkeypatch.setenv("DRPLAN_NEW_PASSWORD", "another new password")
    assert run("copy", "--from", repo_dir, "--to", str(made), "--rekey").code == 15
    wrong = run("copy", "--from", repo_dir, "--to", str(tmp_path / "x"), "--new-password-file", "f")
    assert wrong.code == 2


class Crashing:
    """A storage whose process dies (a BaseException no handler catches) at its Nth write."""

    def __init__(self, inner: Storage, crash_at: int) -> None:
        self.inner = inner
        self.writes = 0
        self.crash_at = crash_at
        self._lock = threading.Lock()  # packs are written from several threads

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    def write(self, name: str, data: bytes, **kw: Any) -> None:
        with self._lock:
            self.writes += 1
            dead = self.writes >= self.crash_at > 0
        if dead:  # the process is gone: nothing after is written
            raise Killed
        self.inner.write(name, data, **kw)


class Killed(BaseException):
    pass


def _rekey_in_process(repo_dir: str, target: Storage | Crashing) -> RekeyResult:
    source = Repository.open(LocalStorage(repo_dir), PASSWORD.encode())
    source.load_index()
    with RepositoryLock(source, exclusive=False, operation="copy"):
        made, created = open_target(source, target, NEW.encode(), FAST_KDF)  # type: ignore[arg-type]
        result = rekey_snapshots(source, made, source.readable_snapshots()[0])
    result.created = created
    return result


def _whole_or_absent(run: Run, path: Path, old_ids: list[str]) -> list[str]:
    """What a reader sees in the target after a crash: no repository, or one whose every
    snapshot is one of the source's, once, with all it needs (check --read-data clean)."""
    if not (path / "config").exists():
        return []
    target = Repository.open(LocalStorage(path), NEW.encode())
    seen = [p for s in target.snapshots() for p in s.previous_ids]
    assert len(seen) == len(set(seen))
    assert set(seen) <= set(old_ids)
    checked = run("check", "--read-data", "--repo", str(path))
    assert checked.code == 0, checked.err + checked.out
    return seen


def test_a_rekey_cut_at_any_write_shows_no_partial_snapshot_and_a_rerun_completes(
    run: Run, repo_dir: str, source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old_ids = _filled(run, repo_dir, source)
    _wal(repo_dir)
    _use(monkeypatch, NEW)
    total = _rekey_in_process(repo_dir, LocalStorage(tmp_path / "whole"))
    # Cut at write 1, 2, ... until a run ends whole: how many writes a run makes varies a
    # little (blobs reach packs from several threads), so it is not counted beforehand.
    step = 0
    while True:
        step += 1
        path = tmp_path / f"cut{step}"
        try:
            _rekey_in_process(repo_dir, Crashing(LocalStorage(path), step))
            break
        except Killed:
            pass
        _whole_or_absent(run, path, old_ids)
        finished = _rekey_in_process(repo_dir, LocalStorage(path))
        assert sorted(finished.copied | finished.already) == sorted(old_ids), step
        assert _whole_or_absent(run, path, old_ids) != []
        assert len(Repository.open(LocalStorage(path), NEW.encode()).snapshots()) == 3
    assert step > 10
    assert sorted(total.copied) == sorted(old_ids)


@pytest.fixture
def big(tmp_path: Path, repo_dir: str, run: Run) -> list[str]:
    """A source whose re-key takes long enough to be killed at chosen moments."""
    data = tmp_path / "data"
    data.mkdir()
    ids = []
    for i in range(3):
        for j in range(3):
            (data / f"blob{i}{j}").write_bytes(os.urandom(8 * 1024 * 1024))
        ids.append(backup(run, repo_dir, data))
    return ids


def _reached(
    proc: subprocess.Popen[bytes], target: Path, pattern: str, count: int
) -> Callable[[], bool]:
    """The moment to kill at: ``count`` objects matching ``pattern``, or the run ended."""
    return lambda: len(list(target.glob(pattern))) >= count or proc.poll() is not None


def test_a_rekey_killed_at_chosen_moments_resumes_and_completes(
    run: Run, repo_dir: str, big: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "target"
    env = {**os.environ, "DRPLAN_PASSWORD": PASSWORD, "DRPLAN_NEW_PASSWORD": NEW}
    moments = [  # (what to wait for, how many objects under which prefix)
        ("its config to be written", "config", 1),
        ("a pack to be written", "data/*/*", 1),
        ("a snapshot to be written", "snapshots/*", 1),
        ("more packs to be written", "data/*/*", 6),
    ]
    _use(monkeypatch, NEW)
    for what, pattern, count in moments:
        proc = subprocess.Popen(
            [DRPLAN, "copy", "--from", repo_dir, "--to", str(target), "--rekey"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
        )  # fmt: skip
        try:
            wait_until(_reached(proc, target, pattern, count), what)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        _whole_or_absent(run, target, big)
    _use(monkeypatch, PASSWORD)
    monkeypatch.setenv("DRPLAN_NEW_PASSWORD", NEW)
    done = rekey(run, repo_dir, str(target))
    assert sorted(done["copied"] | done["already_present"]) == sorted(big)
    _use(monkeypatch, NEW)
    assert sorted(_whole_or_absent(run, target, big)) == sorted(big)


def test_base_backups_keep_their_chain_and_restore_from_the_new_repository(
    run: Run,
    repo_dir: str,
    pg_cluster: Callable[..., PgCluster],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    pg_scratch: Path,
) -> None:
    cluster = pg_cluster()
    plan, full, incr = full_then_incremental(run, cluster, repo_dir, tmp_path, monkeypatch)

    rekeyed = tmp_path / "rekeyed"
    monkeypatch.setenv("DRPLAN_NEW_PASSWORD", NEW)
    result = rekey(run, repo_dir, str(rekeyed), incr[:12])  # its full comes along
    assert sorted(result["copied"]) == sorted([full, incr])
    new = Repository.open(LocalStorage(rekeyed), NEW.encode())
    moved = new.find_snapshot(result["copied"][incr])
    assert moved.source["chain"] == [result["copied"][full]]
    assert moved.parent == result["copied"][full]

    _use(monkeypatch, NEW)
    target = pg_scratch / "data"
    port = free_port()
    restored = run(
        "--plan", plan, "restore", "postgres", "db", "--target-dir", str(target),
        "--start", "--port", str(port), "--json", "--repo", str(rekeyed),
    )  # fmt: skip
    assert restored.code == 0, restored.err
    assert len(json.loads(restored.out)["chain"]) == 2
    revived = PgCluster(target, port, cluster.password, cluster.bin_dir, cluster.run_as)
    try:
        assert revived.sql("select count(*) from readings") == [(1234,)]
    finally:
        revived.stop()
