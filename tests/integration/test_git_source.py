"""Git backups against a real git daemon on loopback: every ref kept, only what changed
stored, restores verified by fsck and ref comparison (from S3 too), history rewritten by
a force-push and gc on the server, failures that save nothing, damage that restore reports."""

from __future__ import annotations

import io
import subprocess
import uuid
from pathlib import Path

import pytest

from drplan.errors import IntegrityError
from drplan.plan.model.systems import GitSystem
from drplan.recovery.git import restore_git
from drplan.repo.blob_pool import BlobPool
from drplan.repo.pack import DATA
from drplan.repo.repository import Repository
from drplan.repo.snapshot import Snapshot
from drplan.repo.tree import Node
from drplan.sources.git import GitSourceError, git_backup, repository_names
from drplan.sources.stored import Run, Stored, TreeBuilder, files_of, read_stored, store_stream
from drplan.storage import Storage
from drplan.storage.local import LocalStorage
from drplan.storage.s3 import S3Storage
from testbed.gitserver import GitServer, fast_import, hermetic_env
from tests.integration.conftest import PASSWORD, init_repo

SYSTEM = "gitops"


def git(*args: str, cwd: Path | None = None, stdin: bytes | None = None) -> str:
    done = subprocess.run(
        ["git", *args], cwd=cwd, input=stdin, capture_output=True, check=True, env=hermetic_env()
    )
    return done.stdout.decode()


def spec(*repositories: str) -> GitSystem:
    return GitSystem(
        kind="git", tier="critical", data_classes=["configuration"], repositories=list(repositories)
    )


def reopened(storage: Storage) -> Repository:
    """The repository as a new process sees it: what was saved, nothing held in memory."""
    repo = Repository.open(storage, PASSWORD.encode())
    repo.load_index()
    return repo


def backup(storage: Storage, system: GitSystem, tmp_path: Path) -> Snapshot:
    return git_backup(
        reopened(storage), system=SYSTEM, spec=system, job=None, tags=[],
        cache_dir=tmp_path / "cache",
    )  # fmt: skip


def seeded(server: GitServer, tmp_path: Path, commits: int = 150) -> tuple[str, Path, Path]:
    """A repository on the server with history, a tag and a second branch, and a clone of
    it to work in: its URL, its path on the server, the clone."""
    name = f"manifests-{uuid.uuid4().hex[:8]}"
    bare = server.create(name)
    fast_import(bare, commits=commits, seed=len(name))
    git("--git-dir", str(bare), "branch", "release", f"main~{commits // 2}")
    git("--git-dir", str(bare), "tag", "-a", "v1", "-m", "first release", f"main~{commits // 3}")
    work = tmp_path / "work"
    git("clone", "--quiet", server.url(name), str(work))
    return server.url(name), bare, work


def change(work: Path) -> int:
    """A commit of a few files, a tag and a note, pushed; the size of the files written."""
    written = 0
    for n in range(3):
        body = uuid.uuid4().hex * 64  # 2 KiB of text no earlier object holds
        (work / f"new-{n}.yaml").write_text(body)
        written += len(body)
    git("add", ".", cwd=work)
    git("commit", "--quiet", "-m", "scale the api to 5 replicas", cwd=work)
    git("tag", "-a", "v2", "-m", "second release", cwd=work)
    git("notes", "add", "-m", "deployed by the on-call", "HEAD", cwd=work)
    git("push", "--quiet", "origin", "main", "v2", "refs/notes/commits", cwd=work)
    return written


def has_object(git_dir: Path, oid: str) -> bool:
    probe = ["git", "--git-dir", str(git_dir), "cat-file", "-e", oid]
    return (
        subprocess.run(probe, capture_output=True, check=False, env=hermetic_env()).returncode == 0
    )


def refs_of(git_dir: Path) -> str:
    return git("--git-dir", str(git_dir), "for-each-ref", "--format=%(objectname) %(refname)")


def head_of(git_dir: Path) -> str:
    return git("--git-dir", str(git_dir), "symbolic-ref", "HEAD").strip()


def test_a_second_backup_stores_only_the_change_and_restores_verified_from_s3(
    git_server: GitServer, s3_bucket: S3Storage, tmp_path: Path
) -> None:
    url, bare, work = seeded(git_server, tmp_path)
    init_repo(s3_bucket)
    system = spec(url)
    first = backup(s3_bucket, system, tmp_path)
    name = next(iter(first.source["repositories"]))
    assert first.source["repositories"][name]["full"] is True
    changed = change(work)
    second = backup(s3_bucket, system, tmp_path)

    assert second.parent == first.id
    seen = second.source["repositories"][name]
    assert (seen["packs"], seen["full"], seen["address"]) == (2, False, url)
    # 3 files, their tree and commit, the tag; the note, its tree and commit
    assert seen["new_objects"] == 3 + 1 + 1 + 1 + 3
    # Everything again would be the first backup's size; the change is about 6 KiB.
    assert first.summary.bytes_added > 200_000
    assert second.summary.bytes_added < 2 * changed + 4096, second.summary

    target = tmp_path / "restored"
    restored = restore_git(reopened(s3_bucket), second, target).repositories[name]
    assert restored.path == target / name
    assert restored.fsck == "clean"
    git_dir = restored.path / ".git"
    git("--git-dir", str(git_dir), "fsck", "--full", "--no-dangling")
    assert refs_of(git_dir) == refs_of(bare)
    assert restored.refs == len(refs_of(bare).splitlines())
    assert head_of(git_dir) == head_of(bare) == "refs/heads/main"
    note = git("--git-dir", str(git_dir), "notes", "show", "main")
    assert note == "deployed by the on-call\n"
    for n in range(3):  # the working tree is checked out at HEAD
        assert (restored.path / f"new-{n}.yaml").read_text() == (work / f"new-{n}.yaml").read_text()
    assert git("status", "--porcelain", cwd=restored.path) == ""

    unchanged = backup(s3_bucket, system, tmp_path)  # nothing new: no pack, refs recorded
    assert unchanged.source["repositories"][name]["packs"] == 2
    assert unchanged.source["repositories"][name]["new_objects"] == 0


@pytest.mark.parametrize("read", ["mirrored from its URL", "read in place"])
def test_history_rewritten_on_the_server_backs_up_and_the_older_snapshot_still_restores(
    read: str, git_server: GitServer, tmp_path: Path
) -> None:
    url, bare, work = seeded(git_server, tmp_path, commits=30)
    storage = LocalStorage(tmp_path / "repo")
    init_repo(storage)
    # In place, the previous snapshot's tips are gone from the source; our mirror keeps them.
    system = spec(url if read.startswith("mirrored") else str(bare))
    before = backup(storage, system, tmp_path)
    old_tip = git("rev-parse", "main", cwd=work).strip()
    dropped = git("rev-list", "main~5..main", cwd=work).split()

    git("reset", "--quiet", "--hard", "main~5", cwd=work)
    git("push", "--quiet", "--force", "origin", "main", cwd=work)
    git("--git-dir", str(bare), "reflog", "expire", "--expire=now", "--all")
    git("--git-dir", str(bare), "gc", "--quiet", "--prune=now")
    assert not has_object(bare, old_tip)

    fast_import(bare, commits=2, seed=99, start=1000)  # new work on the rewritten branch
    after = backup(storage, system, tmp_path)
    name = next(iter(after.source["repositories"]))
    refs = {line.split()[1]: line.split()[0] for line in refs_of(bare).splitlines()}
    stored = dict(files_of(reopened(storage), after.tree))
    stored_refs = b"".join(read_stored(reopened(storage), stored[f"{name}/refs"])).decode()
    assert f"{refs['refs/heads/main']} refs/heads/main\n" in stored_refs
    assert old_tip not in stored_refs
    assert after.source["repositories"][name]["new_objects"] > 0

    old = restore_git(reopened(storage), before, tmp_path / "old", bare=True).repositories[name]
    assert old.path == tmp_path / "old" / f"{name}.git"
    assert old.fsck == "clean"
    assert git("--git-dir", str(old.path), "rev-parse", "main").strip() == old_tip
    assert all(has_object(old.path, commit) for commit in dropped)  # gone from the server
    new = restore_git(reopened(storage), after, tmp_path / "new", bare=True).repositories[name]
    assert refs_of(new.path) == refs_of(bare)


@pytest.mark.parametrize("broken", ["unreachable URL", "not a repository"])
def test_a_repository_git_cannot_read_fails_in_one_line_and_saves_nothing(
    broken: str, git_server: GitServer, tmp_path: Path
) -> None:
    url, _, work = seeded(git_server, tmp_path, commits=4)
    storage = LocalStorage(tmp_path / "repo")
    init_repo(storage)
    backup(storage, spec(url), tmp_path)
    plain = work / "plain"  # inside a working tree: git must not take that repository for it
    plain.mkdir()
    # A token given as the user name must not be shown either.
    bad = "http://Sentinel-Token-7@127.0.0.1:9/infra.git" if broken.startswith("un") else str(plain)

    with pytest.raises(GitSourceError) as raised:
        backup(storage, spec(url, bad), tmp_path)
    message = str(raised.value)
    assert "\n" not in message
    name = "infra" if broken.startswith("un") else "plain"
    assert message.startswith(f"system {SYSTEM}: repository {name} (")
    assert "Sentinel-Token-7" not in message + str(raised.value.hint)
    assert (
        ("127.0.0.1" in message) if broken.startswith("un") else ("not a git repository" in message)
    )
    assert len(reopened(storage).snapshots()) == 1


def forged(repo: Repository, snapshot: Snapshot, damage: str) -> Snapshot:
    """``snapshot`` saved again, damaged: a ref naming an object no pack holds, its full
    pack left out, or that pack left out and only refs/heads/main kept (whose newest
    commit is there, its history not: only fsck sees that)."""
    files: dict[str, Node | Stored] = dict(files_of(repo, snapshot.tree))
    packs = sorted((n.size, p) for p, n in files.items() if "/packs/" in p)
    if damage != "ref to a missing object":
        del files[packs[-1][1]]  # the full pack, the larger
    (refs_path,) = [p for p in files if p.endswith("/refs")]
    (refs_node,) = [n for p, n in files.items() if p == refs_path and isinstance(n, Node)]
    lines = b"".join(read_stored(repo, refs_node)).splitlines(keepends=True)
    if damage == "ref to a missing object":
        lines.append(b"1" * 40 + b" refs/heads/zz-lost\n")
    elif damage == "history cut off":
        lines = [ln for ln in lines if ln.endswith(b" refs/heads/main\n")]
    tree = TreeBuilder()
    with BlobPool(repo, DATA) as pool:
        files[refs_path] = store_stream(repo, pool, io.BytesIO(b"".join(lines)))
    for path, node in files.items():
        tree.add(path, node)
    return Run(repo).save(
        tree, system=SYSTEM, job=None, tags=["forged"], source=snapshot.source, bytes_read=0,
        files_new=0,
    )  # fmt: skip


@pytest.mark.parametrize("damage", ["ref to a missing object", "pack left out", "history cut off"])
def test_a_snapshot_missing_objects_fails_to_restore_and_leaves_nothing_restored(
    damage: str, git_server: GitServer, tmp_path: Path
) -> None:
    _, _, work = seeded(git_server, tmp_path, commits=10)
    storage = LocalStorage(tmp_path / "repo")
    init_repo(storage)
    system = spec(str(work))  # a non-bare repository, read in place
    backup(storage, system, tmp_path)
    change(work)
    good = backup(storage, system, tmp_path)
    assert good.source["repositories"]["work"]["packs"] == 2
    bad = forged(reopened(storage), good, damage)

    target = tmp_path / "restored"
    with pytest.raises(IntegrityError) as raised:
        restore_git(reopened(storage), bad, target)
    assert "\n" not in str(raised.value)
    failed = "fsck" if damage == "history cut off" else "cat-file"
    assert str(raised.value).startswith(f"snapshot {bad.short_id}: repository work: git {failed}")
    assert list(target.iterdir()) == []  # nothing that looks restored


def test_repository_names_follow_the_address_and_stay_distinct() -> None:
    names = repository_names(
        spec("/srv/gitops/manifests", "https://git.example.com/org/manifests.git",
             "git@example.com:org/infra.git", "/srv/gitops/manifests/", "/srv/app/.git")
    )  # fmt: skip
    assert list(names) == ["manifests", "manifests-2", "infra", "manifests-3", "app"]
