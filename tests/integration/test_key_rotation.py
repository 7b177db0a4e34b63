"""`drplan key rotate`: a new master key without uploading the history again, on a local
directory and on S3 (SeaweedFS); crash-safe at every write; across locations."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import pytest

from drplan.errors import DrplanError, IntegrityError
from drplan.repo.check import check_repository
from drplan.repo.crypto import CipherName, MasterKey
from drplan.repo.key_rotation import Target, rotate_locations, unfinished
from drplan.repo.objects import open_object
from drplan.repo.pack import read_header
from drplan.repo.repository import Repository
from drplan.sources.files.archiver import BackupOptions, backup_files
from drplan.storage import Storage
from drplan.storage.local import LocalStorage
from tests.conftest import Result
from tests.integration.conftest import FAST_KDF, PASSWORD, Compare, init_repo
from tests.integration.test_s3_repository import s3_env

Run = Callable[..., Result]
DRPLAN = str(Path(sys.executable).parent / "drplan")
NEW = b"the new password after the breach"
KINDS = {"config": "config", "index/": "index", "snapshots/": "snapshot", "keyring/": "keyring"}


class Counting:
    """A storage that counts the bytes written through it, and can crash (raise a
    BaseException no handler catches, as a kill would end the process) after N changes."""

    def __init__(self, inner: Storage, crash_after: int | None = None) -> None:
        self.inner = inner
        self.written = 0
        self.changes = 0
        self.crash_after = crash_after
        self._lock = threading.Lock()  # packs are written from several threads

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    def _change(self, size: int = 0) -> None:
        with self._lock:
            if self.crash_after is not None and self.changes >= self.crash_after:
                raise Killed
            self.changes += 1
            self.written += size

    def write(self, name: str, data: bytes, **kw: object) -> None:
        self._change(len(data))
        self.inner.write(name, data, **kw)  # type: ignore[arg-type]

    def delete(self, name: str) -> None:
        self._change()
        self.inner.delete(name)


class Killed(BaseException):
    pass


def _filled(storage: Storage, source: Path, rounds: int = 3) -> list[str]:
    repo = init_repo(storage)
    for i in range(rounds):
        (source / f"f{i}").write_bytes(os.urandom(300_000 + i))
        _backup(repo, source)
    return sorted(s.id for s in repo.snapshots())


def _backup(repo: Repository, source: Path) -> None:
    repo.load_index()
    backup_files(repo, BackupOptions([str(source)], workers=2))


def _rotate(storage: Storage | Counting, password: bytes, new: bytes | None = NEW) -> list[object]:
    return rotate_locations(  # type: ignore[return-value]
        [Target("here", cast(Storage, storage))], password, new, FAST_KDF, "test"
    )


def _objects(storage: Storage) -> dict[str, int]:
    return {
        info.name: info.size
        for prefix in ("config", "keys/", "keyring/", "index/", "snapshots/", "data/", "revoked/")
        for info in storage.list(prefix)
    }


def _old_key_opens_nothing(storage: Storage, old: MasterKey, cipher: CipherName) -> None:
    """Every object still stored refuses the old master key (and the data keys only it
    wrapped directly): none of config, keyring, index, snapshot or pack opens."""
    ring = old.ring()
    for name in _objects(storage):
        data = storage.read(name)
        kind = next((k for p, k in KINDS.items() if name.startswith(p)), None)
        if name.startswith("data/"):
            with pytest.raises(IntegrityError):
                read_header(ring, cipher, data, name)
        elif kind is not None:
            with pytest.raises(IntegrityError):
                open_object(ring, cipher, kind, data, name)


@pytest.fixture
def storage(fresh: Callable[[], Storage]) -> Storage:
    return fresh()


def _use(monkeypatch: pytest.MonkeyPatch, password: str | bytes) -> None:
    monkeypatch.setenv(
        "DRPLAN_PASSWORD", password.decode() if isinstance(password, bytes) else password
    )


def test_rotation_rewrites_no_data_and_the_old_key_opens_nothing(
    storage: Storage,
    tmp_path: Path,
    run: Run,
    same_tree: Compare,
    password: str,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> None:
    source = tmp_path / "src"
    source.mkdir()
    snapshots = _filled(storage, source)
    old = Repository.open(storage, PASSWORD.encode())
    before = _objects(storage)
    counting = Counting(storage)

    _rotate(counting, PASSWORD.encode())

    after = _objects(storage)
    # Nothing stored before changed or was written again: packs, indexes, snapshots, config.
    data = {n: s for n, s in before.items() if not n.startswith(("keys/", "keyring/", "revoked/"))}
    assert {n: after[n] for n in data} == data
    assert counting.written < 4096, counting.written  # a keyring, a key file, a tombstone
    assert sum(data.values()) > 900_000
    with pytest.raises(DrplanError) as wrong:
        Repository.open(storage, PASSWORD.encode())
    assert wrong.value.exit_code == 12
    _old_key_opens_nothing(storage, old.opened_master(), old.cipher)

    repo = Repository.open(storage, NEW)
    repo.load_index()
    assert sorted(s.id for s in repo.snapshots()) == snapshots
    (source / "after").write_bytes(os.urandom(50_000))
    _backup(repo, source)  # new data under the new generation
    _old_key_opens_nothing(storage, old.opened_master(), old.cipher)
    # Every snapshot restores, through the command line, with the new password.
    where = _cli_ref(storage, request, monkeypatch)
    _use(monkeypatch, NEW)
    assert run("check", "--read-data", "--repo", where).code == 0
    for snapshot in snapshots:
        out = tmp_path / f"out-{snapshot[:8]}"
        done = run("restore", snapshot, "--target", str(out), "--repo", where)
        assert done.code == 0, done.err
    latest = tmp_path / "latest"
    assert run("restore", "latest", "--target", str(latest), "--repo", where).code == 0
    same_tree(source, latest / source.relative_to("/"))


def _cli_ref(
    storage: Storage, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> str:
    """What `--repo` names ``storage`` by (for S3, with the server's address and keys set)."""
    if isinstance(storage, LocalStorage):
        return str(storage.root)
    s3_env(request.getfixturevalue("seaweedfs"), monkeypatch)
    return storage.url


def test_a_crash_at_every_write_leaves_an_openable_repository_and_a_rerun_finishes(
    fresh: Callable[[], Storage], tmp_path: Path
) -> None:
    """The rotation is cut at its first write, then its second, ... until one runs whole:
    after each cut some password opens the repository, every snapshot is there and check
    finds no error; where the new password opens it, rerunning with it finishes."""
    source = tmp_path / "src"
    source.mkdir()
    step = 0
    while True:
        storage = fresh()
        snapshots = _filled(storage, source, rounds=1)
        try:
            _rotate(Counting(storage, crash_after=step), PASSWORD.encode())
            break
        except Killed:
            # A killed process's lock is stale at once on its host (its pid is gone); this
            # one ran in the test's own process, so its lock is taken away by hand.
            for info in list(storage.list("locks/")):
                storage.delete(info.name)
        opens = []
        for password in (PASSWORD.encode(), NEW):
            try:
                repo = Repository.open(storage, password)
            except DrplanError:
                continue
            opens.append(password)
            repo.load_index()
            assert sorted(s.id for s in repo.snapshots()) == snapshots, step
            assert not _errors(repo), (step, password)
        assert opens, f"no password opens the repository after a crash at write {step}"
        if NEW in opens:
            if unfinished(Repository.open(storage, NEW)):  # else cut after its last step
                _rotate(storage, NEW, None)
            with pytest.raises(DrplanError):
                Repository.open(storage, PASSWORD.encode())
            repo = Repository.open(storage, NEW)
            repo.load_index()
            assert not _errors(repo, read_data=True), step
        step += 1
    assert step >= 4  # keyring, key file, tombstone, key file deleted: each a crash point


def _errors(repo: Repository, read_data: bool = False) -> list[str]:
    report = check_repository(repo, read_data=read_data)
    return [f.message for f in report.findings if f.severity == "error"]


def test_old_and_wrong_passwords_after_rotation(
    run: Run, repo_dir: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    new_file = Path(repo_dir).parent / "new-password"
    new_file.write_text(NEW.decode())
    done = run("key", "rotate", "--repo", repo_dir, "--new-password-file", str(new_file))
    assert done.code == 0, done.err
    assert "1 old key file(s) revoked" in done.out
    for wrong in (PASSWORD, "not even close"):
        _use(monkeypatch, wrong)
        refused = run("snapshots", "--repo", repo_dir)
        assert refused.code == 12, refused.err
        assert refused.err.count("\n") == 1
        assert "wrong password" in refused.err
    # Rotating again needs the new password, and a new one of its own.
    _use(monkeypatch, NEW)
    again = run("key", "rotate", "--repo", repo_dir)
    assert again.code == 2
    assert "needs the new password" in again.err


def test_all_locations_one_unreachable_then_a_rerun_brings_it_along(
    run: Run,
    tmp_path: Path,
    password: str,
    write_plan: Callable[[object], Path],
    plan_data: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    init_repo(LocalStorage(first))
    source = tmp_path / "src"
    source.mkdir()
    (source / "a").write_bytes(os.urandom(100_000))
    assert run("backup", "files", str(source), "--repo", str(first)).code == 0
    assert run("copy", "--from", str(first), "--to", str(second)).code == 0
    plan_data["locations"] = {
        "local": {"role": "primary", "kind": "local", "path": str(first)},
        "cloud": {"role": "cloud", "kind": "local", "path": str(second)},
    }
    plan = write_plan(plan_data)
    parked = tmp_path / "parked"
    second.rename(parked)
    second.write_text("the disk is not mounted")  # unreachable: not a directory
    monkeypatch.setenv("DRPLAN_NEW_PASSWORD", NEW.decode())
    done = run("--plan", str(plan), "key", "rotate", "--all-locations")
    assert done.code == 23, done.out + done.err
    assert "local: master key rotated" in done.out
    assert "cloud: not rotated" in done.out
    assert "rerun `drplan key rotate` with the new password" in done.err

    second.unlink()
    parked.rename(second)
    assert run("snapshots", "--repo", str(second)).code == 0  # still the old password there
    monkeypatch.delenv("DRPLAN_NEW_PASSWORD")
    _use(monkeypatch, NEW)
    rerun = run("--plan", str(plan), "key", "rotate", "--all-locations")
    assert rerun.code == 0, rerun.out + rerun.err
    for where in (first, second):
        check = run("check", "--read-data", "--repo", str(where))
        assert check.code == 0, check.err
    _use(monkeypatch, PASSWORD)
    for where in (first, second):
        assert run("snapshots", "--repo", str(where)).code == 12
    assert sorted(p.name for p in (first / "keyring").iterdir()) == sorted(
        p.name for p in (second / "keyring").iterdir()
    )
    # The old password, where the new one rotated everything, opens nothing to rotate.
    monkeypatch.setenv("DRPLAN_NEW_PASSWORD", "yet another")
    assert run("--plan", str(plan), "key", "rotate", "--all-locations").code == 12


def test_kill_minus_nine_during_a_rotation(
    run: Run,
    storage: Storage,
    password: str,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> None:
    """A real SIGKILL at moments spread over the command's run, on a directory and on S3:
    the repository opens with one of the two passwords, checks clean, and the rerun with
    the new one finishes."""
    init_repo(storage)
    repo_dir = _cli_ref(storage, request, monkeypatch)
    env = {**os.environ, "DRPLAN_NEW_PASSWORD": NEW.decode()}
    started = time.monotonic()
    assert run("key", "list", "--repo", repo_dir).code == 0
    duration = time.monotonic() - started
    for delay in (0.1 * duration, 0.5 * duration, 0.8 * duration, 1.0 * duration, 1.3 * duration):
        proc = subprocess.Popen(
            [DRPLAN, "key", "rotate", "--repo", repo_dir],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(delay)  # a moment to kill at, not a wait for a condition
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        opened = []
        for pw in (PASSWORD, NEW.decode()):
            _use(monkeypatch, pw)
            if run("snapshots", "--repo", repo_dir).code == 0:
                opened.append(pw)
        assert opened, delay
        _use(monkeypatch, opened[-1])
        check = run("check", "--read-data", "--repo", repo_dir)
        assert check.code == 0, check.err
        if NEW.decode() in opened:
            fin = run("key", "rotate", "--repo", repo_dir)
            assert fin.code in (0, 2), fin.err  # finished, or nothing left to finish
            # Back to the old password for the next kill.
            monkeypatch.setenv("DRPLAN_NEW_PASSWORD", PASSWORD)
            back = run("key", "rotate", "--repo", repo_dir)
            monkeypatch.delenv("DRPLAN_NEW_PASSWORD")
            assert back.code == 0, back.err
        _use(monkeypatch, PASSWORD)
