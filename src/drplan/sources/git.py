"""Git backups: every ref of each repository of a ``git`` system, and its objects as git
packs, one new pack per backup holding only what the system's previous snapshot lacks.

A snapshot holds, per repository NAME (the address's last component, without ``.git``)::

    NAME/refs                     "OID REFNAME" a line, sorted by name: every ref under refs/
    NAME/HEAD                     "ref: refs/heads/main", or an OID when HEAD is detached
    NAME/packs/pack-SHA256.pack   every pack the refs need

The packs of a snapshot are its parent's (the same stored files, named again at no cost)
plus the new one, made by ``git pack-objects --revs`` from the current tips minus the
parent's tips that still exist in the source. Each pack is self-contained (not thin), so
every snapshot restores alone and forgetting older snapshots never breaks a newer one.
A full pack is taken instead when the parent cannot be used or its chain would pass
``MAX_PACKS``.

An absolute path is read in place with read-only commands. A URL is mirrored into
``cache_dir/NAME.git`` (drplan's working copy, never the user's) and read there. git
runs with a predictable environment and never prompts; a failure of any repository
raises :class:`GitSourceError` and nothing is saved.
"""

from __future__ import annotations

import dataclasses
import io
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any, BinaryIO, cast

from drplan.errors import DrplanError, SourceError
from drplan.plan.model.systems import GitSystem
from drplan.repo.blob_pool import BlobPool
from drplan.repo.pack import DATA
from drplan.repo.repository import Repository
from drplan.repo.snapshot import Snapshot
from drplan.repo.tree import Node
from drplan.sources.stored import Run, Stored, TreeBuilder, files_of, newest_of, store_stream

KIND = "git"
MAX_PACKS = 50  # a longer chain is replaced by one full pack: restores stay quick
PACK_HEADER = 12  # "PACK", version, object count (big-endian)
# Kept from the caller's environment: how the user reaches their servers over SSH.
KEPT_GIT_VARIABLES = ("GIT_SSH", "GIT_SSH_COMMAND", "GIT_SSH_VARIANT")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
_USERINFO = re.compile(r"^([a-z][a-z0-9+.-]*://)([^/@]*)@", re.IGNORECASE)


class GitSourceError(SourceError):
    """git failed on a repository (unreachable, not a repository, refused); nothing was saved."""


# -- names and addresses ----------------------------------------------------------------


def repository_names(spec: GitSystem) -> dict[str, str]:
    """Each repository's name in snapshots, in configuration order: name -> address."""
    names: dict[str, str] = {}
    for address in spec.repositories:
        base = _base_name(address)
        name, n = base, 1
        while name in names:
            n += 1
            name = f"{base}-{n}"
        names[name] = address
    return names


def _base_name(address: str) -> str:
    path = address.rstrip("/").removesuffix("/.git").rstrip("/")
    last = re.split(r"[/:]", path)[-1].removesuffix(".git")
    safe = _UNSAFE.sub("_", last).lstrip(".")
    return safe or "repository"


def public_address(address: str) -> str:
    """``address`` safe to show and store: no password, and for http(s) no user either
    (tokens are often given as the user name)."""
    match = _USERINFO.match(address)
    if not match:
        return address
    scheme, userinfo = match.groups()
    if scheme.lower().startswith("http"):
        return scheme + address[match.end() :]
    return scheme + userinfo.split(":", 1)[0] + "@" + address[match.end() :]


def is_path(address: str) -> bool:
    return address.startswith("/")


# -- running git --------------------------------------------------------------------------


def git_env(*, hermetic: bool = False) -> dict[str, str]:
    """The environment git runs in: no prompts, no system configuration, English messages.
    HOME stays so the user's credential helpers and SSH keys work; ``hermetic`` also drops
    the user's configuration (a restore needs no credentials, and must not inherit, say,
    fsck settings that ignore errors)."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("GIT_") or k in KEPT_GIT_VARIABLES
    }
    env.update(GIT_TERMINAL_PROMPT="0", GIT_CONFIG_NOSYSTEM="1", LC_ALL="C")
    env.pop("LANGUAGE", None)
    if hermetic:
        env["GIT_CONFIG_GLOBAL"] = os.devnull
    return env


def last_line(stderr: bytes, fallback: str = "no message") -> str:
    """git's most telling stderr line: its last fatal/error line, else its last line."""
    lines = [ln.strip() for ln in stderr.decode("utf-8", "replace").splitlines() if ln.strip()]
    failures = [ln for ln in lines if ln.startswith(("fatal:", "error:"))]
    return (failures or lines or [fallback])[-1]


@dataclasses.dataclass(frozen=True)
class Git:
    """git run against one repository; a failure raises ``error`` naming ``what``."""

    what: str  # "system S: repository N (ADDRESS)", the start of every message
    git_dir: Path | None = None
    hermetic: bool = False
    error: type[DrplanError] = GitSourceError
    hint: str | None = None
    redact: tuple[str, str] | None = None  # (address, shown): git may echo the address

    def argv(self, *args: str) -> list[str]:
        where = ["--git-dir", str(self.git_dir)] if self.git_dir is not None else []
        return ["git", "-c", "core.hooksPath=" + os.devnull, *where, *args]

    def run(self, *args: str, stdin: bytes | None = None, env: dict[str, str] | None = None) -> str:
        command = args[2] if args[0] == "-C" else args[0]
        try:
            done = subprocess.run(
                self.argv(*args), input=stdin, capture_output=True, check=False,
                env=env or git_env(hermetic=self.hermetic),
                stdin=None if stdin is not None else subprocess.DEVNULL,
            )  # fmt: skip
        except OSError as exc:
            raise self.fail(command, f"cannot run git: {exc.strerror}") from None
        if done.returncode != 0:
            raise self.fail(command, last_line(done.stderr, f"exit code {done.returncode}"))
        return done.stdout.decode("utf-8", "surrogateescape")

    def fail(self, command: str, message: str) -> DrplanError:
        if self.redact is not None:
            message = message.replace(*self.redact)
        message = message.replace("\n", " ")
        return self.error(f"{self.what}: git {command} failed: {message}", hint=self.hint)


# -- refs -------------------------------------------------------------------------------


def list_refs(git: Git) -> dict[str, str]:
    """Every ref under refs/ (branches, tags, notes, ...): name -> OID."""
    out = git.run("for-each-ref", "--format=%(objectname) %(refname)")
    refs = {}
    for line in out.splitlines():
        oid, _, name = line.partition(" ")
        refs[name] = oid
    return refs


def read_head(git: Git) -> str:
    """``ref: refs/heads/main`` (born or not), or the OID of a detached HEAD."""
    try:
        return "ref: " + git.run("symbolic-ref", "-q", "HEAD").strip()
    except DrplanError:
        return git.run("rev-parse", "--verify", "HEAD").strip()


def format_refs(refs: dict[str, str]) -> bytes:
    return "".join(f"{refs[name]} {name}\n" for name in sorted(refs)).encode()


def parse_refs(text: bytes) -> dict[str, str]:
    refs = {}
    for line in text.decode("utf-8", "surrogateescape").splitlines():
        oid, _, name = line.partition(" ")
        if not name or not re.fullmatch(r"[0-9a-f]{40}([0-9a-f]{24})?", oid):
            raise ValueError(f"not a ref line: {line[:80]!r}")
        refs[name] = oid
    return refs


def existing(git: Git, oids: Iterable[str]) -> set[str]:
    """The OIDs the repository holds (a force-push and gc may have removed some)."""
    wanted = sorted(set(oids))
    if not wanted:
        return set()
    out = git.run(
        "cat-file", "--batch-check=%(objectname)", stdin="".join(o + "\n" for o in wanted).encode()
    )
    return {ln.strip() for ln in out.splitlines() if not ln.endswith(" missing")} & set(wanted)


# -- the source repository ----------------------------------------------------------------


def open_source(address: str, name: str, what: str, cache_dir: Path) -> Git:
    """A Git on the repository to read: the path itself, or our mirror of the URL, updated."""
    shown = public_address(address)
    hint = (
        "check the address and git's access to it (`git ls-remote` as this user); nothing was saved"
    )
    if is_path(address):
        path = Path(address)
        # The ceiling stops git from taking a directory inside some other repository for it.
        env = {**git_env(), "GIT_CEILING_DIRECTORIES": str(path.parent)}
        probe = Git(what, hint="the path must be a git repository (bare or not); nothing was saved")
        git_dir, shallow = probe.run(
            "-C", address, "rev-parse", "--absolute-git-dir", "--is-shallow-repository", env=env
        ).splitlines()  # a path may hold spaces
        if shallow == "true":  # its packs would lack the history beyond the cut
            raise GitSourceError(
                f"{what}: the repository is shallow: it does not hold its whole history",
                hint="back up the repository it was cloned from (its URL), or unshallow it",
            )
        return dataclasses.replace(probe, git_dir=Path(git_dir))
    mirror = cache_dir / f"{name}.git"
    remote = Git(what, hint=hint, redact=(address, shown))
    if (mirror / "HEAD").is_file():
        git = dataclasses.replace(remote, git_dir=mirror)
        git.run("remote", "set-url", "origin", address)  # the plan may point elsewhere now
        git.run("fetch", "--quiet", "--prune", "--prune-tags", "origin", "+refs/*:refs/*")
        return git
    cache_dir.mkdir(parents=True, exist_ok=True)
    # Cloned aside and renamed: an interrupted clone never looks like a mirror.
    partial = cache_dir / f"{name}.git.partial"
    shutil.rmtree(partial, ignore_errors=True)
    remote.run("clone", "--quiet", "--mirror", "--", address, str(partial))
    partial.rename(mirror)
    return dataclasses.replace(remote, git_dir=mirror)


# -- packs --------------------------------------------------------------------------------


class _Prefixed(io.RawIOBase):
    """``head`` (already read from ``rest``) followed by the rest of ``rest``."""

    def __init__(self, head: bytes, rest: IO[bytes]) -> None:
        self._head, self._rest = head, rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._head:
            n = min(len(buffer), len(self._head))
            buffer[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        return self._rest.readinto(buffer)  # type: ignore[attr-defined, no-any-return]


def make_pack(
    git: Git, repo: Repository, pool: BlobPool, tips: set[str], exclude: set[str]
) -> tuple[Stored, int] | None:
    """A pack of what ``tips`` reach and ``exclude`` do not, stored as pack-objects writes
    it, and its object count; None when it would hold no object."""
    if not tips:
        return None
    revs = "".join(f"{o}\n" for o in sorted(tips)) + "".join(f"^{o}\n" for o in sorted(exclude))
    stored: Stored | None = None
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(
            git.argv("pack-objects", "--revs", "--stdout", "-q"), stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=err, env=git_env(),
        )  # fmt: skip
        assert proc.stdin is not None
        assert proc.stdout is not None
        try:
            # pack-objects reads every rev before it writes a byte: no deadlock.
            with proc.stdin:
                proc.stdin.write(revs.encode())
            with proc.stdout:
                header = proc.stdout.read(PACK_HEADER)
                count = int.from_bytes(header[8:], "big") if header[:4] == b"PACK" else 0
                if count:
                    stream = cast(BinaryIO, _Prefixed(header, proc.stdout))
                    stored = store_stream(repo, pool, stream)
                else:
                    proc.stdout.read()
        except BaseException:
            proc.kill()  # the backup cannot finish (the repository failed, Ctrl-C)
            proc.wait()
            raise
        if proc.wait() != 0:
            err.seek(0)
            raise git.fail("pack-objects", last_line(err.read(), f"exit code {proc.returncode}"))
        if len(header) != PACK_HEADER or header[:4] != b"PACK":
            raise git.fail("pack-objects", "its output is not a pack")
    return None if stored is None else (stored, count)


# -- the parent snapshot -------------------------------------------------------------------


@dataclasses.dataclass
class Parent:
    """What the previous snapshot holds of one repository."""

    refs: dict[str, str]
    head: str
    packs: dict[str, Node]  # file name -> its node, reused as is


def parent_files(repo: Repository, parent: Snapshot | None) -> dict[str, Node] | None:
    if parent is None:
        return None
    try:
        return dict(files_of(repo, parent.tree))
    except DrplanError:
        return None


def parent_state(
    repo: Repository, files: dict[str, Node], parent: Snapshot, name: str, address: str
) -> tuple[Parent | None, str]:
    """The parent's state of ``name``, or None and why it cannot be built on."""
    recorded = parent.source.get("repositories", {}).get(name, {})
    if recorded.get("address") != public_address(address):
        return None, "first backup of this repository"
    refs_node, head_node = files.get(f"{name}/refs"), files.get(f"{name}/HEAD")
    prefix = f"{name}/packs/"
    packs = {p.removeprefix(prefix): n for p, n in files.items() if p.startswith(prefix)}
    if refs_node is None or head_node is None:
        return None, "previous snapshot unreadable"
    if not all(repo.has_all(n.content) for n in packs.values()):
        return None, "previous snapshot's packs missing"
    try:
        refs = parse_refs(b"".join(repo.read_blob(b) for b in refs_node.content))
        head = b"".join(repo.read_blob(b) for b in head_node.content).decode().strip()
    except (DrplanError, ValueError, UnicodeDecodeError):
        return None, "previous snapshot unreadable"
    if len(packs) >= MAX_PACKS:
        return None, f"chain of {len(packs)} packs"
    return Parent(refs, head, packs), ""


# -- the backup ------------------------------------------------------------------------------


@dataclasses.dataclass
class _Backup:
    """One backup under way: the tree being built and what it read and stored."""

    repo: Repository
    pool: BlobPool
    parent: Snapshot | None
    parent_files: dict[str, Node] | None
    tree: TreeBuilder = dataclasses.field(default_factory=TreeBuilder)
    bytes_read: int = 0
    files_new: int = 0
    files_unchanged: int = 0

    def repository(self, git: Git, name: str, address: str) -> dict[str, Any]:
        """Store one repository's refs, HEAD and new pack; what the snapshot says of it."""
        refs, head = list_refs(git), read_head(git)
        state, why = None, "first backup"
        if self.parent is not None and self.parent_files is None:
            why = "previous snapshot unreadable"
        elif self.parent is not None and self.parent_files is not None:
            state, why = parent_state(self.repo, self.parent_files, self.parent, name, address)
        packs: dict[str, Node | Stored] = dict(state.packs) if state is not None else {}
        new_objects = 0
        if state is None or (state.refs, state.head) != (refs, head):
            exclude = set() if state is None else existing(git, tips_of(state.refs, state.head))
            made = make_pack(git, self.repo, self.pool, tips_of(refs, head), exclude)
            if made is not None:
                stored, new_objects = made
                packs[f"pack-{stored.sha256}.pack"] = stored
                self.bytes_read += stored.size
                self.files_new += 1
        for file_name, pack in sorted(packs.items()):
            if isinstance(pack, Node):
                self.files_unchanged += 1
            # A copy: the parent's node is the repository's cached one, and add() renames it.
            node = dataclasses.replace(pack) if isinstance(pack, Node) else pack
            self.tree.add(f"{name}/packs/{file_name}", node)
        for file_name, content in (("refs", format_refs(refs)), ("HEAD", f"{head}\n".encode())):
            stored = store_stream(self.repo, self.pool, io.BytesIO(content))
            self.tree.add(f"{name}/{file_name}", stored)
            self.bytes_read += len(content)
            self.files_new += 1
        report = {
            "address": public_address(address), "refs": len(refs), "head": head,
            "packs": len(packs), "new_objects": new_objects, "full": state is None,
        }  # fmt: skip
        return report | ({"full_reason": why} if state is None else {})


def tips_of(refs: dict[str, str], head: str) -> set[str]:
    """The objects a pack must reach: every ref's, and a detached HEAD's."""
    return set(refs.values()) | (set() if head.startswith("ref: ") else {head})


def git_backup(
    repo: Repository,
    *,
    system: str,
    spec: GitSystem,
    job: str | None,
    tags: list[str],
    cache_dir: Path,
    host: str | None = None,
) -> Snapshot:
    """Back up every repository of ``spec`` into ``repo`` (locked by the caller); the
    snapshot is saved only when all of them are stored."""
    run = Run(repo)
    parent = newest_of(repo, system, KIND)
    report: dict[str, dict[str, Any]] = {}
    with BlobPool(repo, DATA) as pool:
        backup = _Backup(repo, pool, parent, parent_files(repo, parent))
        for name, address in repository_names(spec).items():
            what = f"system {system}: repository {name} ({public_address(address)})"
            report[name] = backup.repository(
                open_source(address, name, what, cache_dir), name, address
            )
    return run.save(
        backup.tree, system=system, job=job, tags=tags,
        source={"kind": KIND, "repositories": report}, bytes_read=backup.bytes_read,
        files_new=backup.files_new, files_unchanged=backup.files_unchanged, host=host,
        parent=parent.id if parent is not None else None,
    )  # fmt: skip
