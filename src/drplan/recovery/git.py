"""Restoring a git snapshot: each repository rebuilt from its stored packs and refs, then
verified (``git fsck --full``, every ref and HEAD compared with the snapshot) before it
is put in place.

A repository is built in a hidden directory beside its final place and renamed there
only once verified, so a restore that fails leaves nothing that looks restored. git
runs hermetically (no user or system configuration, no hooks): the user's settings
must not weaken the checks, and a restore needs no credentials.

``git fsck`` runs without ``--strict``: strict mode rejects objects that old git
versions wrote and that are ordinary in long-lived repositories (trees with
group-writable file modes, as in git's and Linux's own histories), so it would refuse
faithful restores of them. Missing or corrupt objects and broken links are errors
either way.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from drplan.errors import DrplanError, IntegrityError, UsageError
from drplan.repo.repository import Repository
from drplan.repo.snapshot import Snapshot
from drplan.repo.tree import Node
from drplan.sources.git import KIND, Git, existing, git_env, last_line, list_refs, parse_refs
from drplan.sources.git import read_head as git_head
from drplan.sources.stored import files_of, read_stored

PACK_PREFIX, PACK_SUFFIX = "pack-", ".pack"


@dataclass(frozen=True)
class RestoredRepository:
    """One repository restored and verified."""

    path: Path
    refs: int
    head: str
    fsck: str  # "clean", or git fsck's warnings (its errors stop the restore)


@dataclass(frozen=True)
class GitRestored:
    repositories: dict[str, RestoredRepository]


def restore_git(
    repo: Repository,
    snapshot: Snapshot,
    target: Path,
    *,
    bare: bool = False,
    only: list[str] | None = None,
) -> GitRestored:
    """Restore the repositories of ``snapshot`` (or ``only`` those) into ``target/NAME``
    (``target/NAME.git`` when ``bare``), each verified before it is put in place."""
    if snapshot.source.get("kind") != KIND:
        raise UsageError(
            f"snapshot {snapshot.short_id} is not a git backup",
            hint="choose a snapshot of a git system (`drplan snapshots`)",
        )
    files = dict(files_of(repo, snapshot.tree))
    names = sorted({path.split("/", 1)[0] for path in files})
    unknown = sorted(set(only or []) - set(names))
    if unknown:
        raise UsageError(
            f"snapshot {snapshot.short_id} holds no repository {', '.join(unknown)}",
            hint=f"it holds: {', '.join(names)}",
        )
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise UsageError(
            f"{target} exists and is not empty",
            hint="restore into a new or empty directory; nothing was changed",
        )
    target.mkdir(parents=True, exist_ok=True)
    restored = {}
    for name in names:
        if only is None or name in only:
            mine = {
                p.removeprefix(name + "/"): n for p, n in files.items() if p.startswith(name + "/")
            }
            restored[name] = _restore_one(repo, snapshot, name, mine, target, bare)
    return GitRestored(restored)


def _restore_one(
    repo: Repository,
    snapshot: Snapshot,
    name: str,
    files: dict[str, Node],
    target: Path,
    bare: bool,
) -> RestoredRepository:
    final = target / (f"{name}.git" if bare else name)
    work = target / f".{final.name}.restoring"
    what = f"snapshot {snapshot.short_id}: repository {name}"
    if "refs" not in files or "HEAD" not in files:
        raise IntegrityError(f"{what}: its refs or HEAD file is missing", hint="run `drplan check`")
    try:
        expected = parse_refs(b"".join(read_stored(repo, files["refs"])))
        head = b"".join(read_stored(repo, files["HEAD"])).decode().strip()
    except (ValueError, UnicodeDecodeError) as exc:
        raise IntegrityError(f"{what}: its refs file is malformed ({exc})") from None
    plain = Git(what, hermetic=True, error=DrplanError)
    plain.run("init", "--quiet", "--template=", *(["--bare"] if bare else []), str(work))
    try:
        git = Git(what, git_dir=work if bare else work / ".git", hermetic=True, error=IntegrityError,
                  hint="the snapshot is damaged: run `drplan check --read-data`, or restore an older snapshot")  # fmt: skip
        for file_name in sorted(p for p in files if p.startswith("packs/")):
            _index_pack(repo, git, files[file_name], file_name.removeprefix("packs/"))
        missing = sorted(set(expected.values()) - existing(git, expected.values()))
        if missing:
            refs = [r for r, oid in sorted(expected.items()) if oid in missing]
            raise git.fail(
                "cat-file", f"{len(refs)} refs name objects no pack holds, {refs[0]} first"
            )
        updates = "".join(f"create {ref} {oid}\n" for ref, oid in sorted(expected.items()))
        tool = Git(what, git_dir=git.git_dir, hermetic=True, error=DrplanError)
        tool.run("update-ref", "--stdin", stdin=updates.encode())
        if head.startswith("ref: "):
            tool.run("symbolic-ref", "HEAD", head.removeprefix("ref: "))
        else:
            tool.run("update-ref", "--no-deref", "HEAD", head)
        warnings = _fsck(git)
        actual, actual_head = list_refs(git), git_head(git)
        if actual != expected or actual_head != head:
            differ = sorted(set(actual.items()) ^ set(expected.items()))
            first = differ[0][0] if differ else "HEAD"
            raise git.fail("for-each-ref", f"restored refs differ from the snapshot's ({first})")
        born = not head.startswith("ref: ") or head.removeprefix("ref: ") in actual
        if not bare and born:  # an unborn HEAD (an empty repository) has nothing to check out
            Git(what, hermetic=True, error=DrplanError).run(
                "-C", str(work), "reset", "--quiet", "--hard"
            )
        work.rename(final)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)  # a half-built repository must not look restored
        raise
    fsck = "clean" if not warnings else f"{len(warnings)} warnings: {warnings[0]}"
    return RestoredRepository(final, len(expected), head, fsck)


def _index_pack(repo: Repository, git: Git, node: Node, file_name: str) -> None:
    """Stream a stored pack into ``git index-pack``, checking it is the pack it is named after."""
    digest = hashlib.sha256()
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(
            git.argv("index-pack", "--stdin"), stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
            stderr=err, env=git_env(hermetic=True),
        )  # fmt: skip
        assert proc.stdin is not None
        try:
            with proc.stdin:
                for chunk in read_stored(repo, node):
                    digest.update(chunk)
                    proc.stdin.write(chunk)
        except BrokenPipeError:
            pass  # index-pack gave up on the pack: its message follows
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        if proc.wait() != 0:
            err.seek(0)
            raise git.fail("index-pack", f"{file_name}: {last_line(err.read())}")
    if file_name != f"{PACK_PREFIX}{digest.hexdigest()}{PACK_SUFFIX}":
        raise git.fail("index-pack", f"{file_name} does not hold the pack it is named after")


def _fsck(git: Git) -> list[str]:
    """git fsck's warnings; its errors (missing, corrupt, broken links) raise."""
    done = subprocess.run(
        git.argv("fsck", "--full", "--no-dangling", "--no-progress"), capture_output=True, check=False,
        stdin=subprocess.DEVNULL, env=git_env(hermetic=True),
    )  # fmt: skip
    lines = [
        ln.strip()
        for ln in (done.stdout + done.stderr).decode("utf-8", "replace").splitlines()
        if ln.strip() and not ln.startswith(("Checking", "notice:"))
    ]
    if done.returncode != 0:
        errors = [ln for ln in lines if not ln.startswith("warning")] or lines
        raise git.fail(
            "fsck", f"{len(errors)} problems, first: {errors[0] if errors else done.returncode}"
        )
    return [ln for ln in lines if ln.startswith("warning")]
