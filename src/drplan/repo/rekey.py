"""``copy --rekey``: a repository's snapshots written into a new, empty location as a new
repository, under keys that share nothing with the source's: a new master key, keyring and
blob-id key, and so new ids for every blob, tree, pack, index, snapshot and WAL object
(docs/repository-format.md, "Re-keying into a new repository").

This module owns the new repository's identity and the order of the work:
:func:`open_target` creates it (or finds the one an interrupted run of the same re-key
created), :func:`rekey_snapshots` writes the snapshots into it, parents and base-backup
chains first, each visible only once all it references is durable, then carries the WAL
archive and incident timelines (``rekey_objects``). How blobs and trees are re-identified
is ``rekey_blobs``.

A rerun resumes: the target is recognised by its repository id, a keyed hash of the
source's id under the target's blob-id key; the snapshots done before by the source ids
they list in ``previous_ids``; blob ids are derived again from the plaintext, and blobs the
target's index holds are not stored again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from drplan.errors import ReplicaMismatchError, WrongPasswordError
from drplan.progress import Progress
from drplan.repo.config import RepoConfig
from drplan.repo.crypto import MasterKey
from drplan.repo.keyring import KEYRING_PREFIX
from drplan.repo.keys import KEY_PREFIX, KdfParams, open_with_password
from drplan.repo.locks import RepositoryLock
from drplan.repo.objects import seal_object
from drplan.repo.rekey_blobs import Rekeyer, rekeyed_snapshot
from drplan.repo.rekey_objects import Carried, carry_incidents, carry_wal
from drplan.repo.replication import SourceDamage
from drplan.repo.repository import CONFIG, Repository
from drplan.repo.snapshot import Snapshot
from drplan.storage import NotFound, Storage

REKEY_ID_CONTEXT = b"drplan/rekey/v1\n"  # what the new repository id hashes, before the source id
# What a location may hold besides what a `repo init` cut short wrote, and still count as empty.
LEFT_BY_INIT = (KEY_PREFIX, KEYRING_PREFIX, "locks/")


@dataclass
class RekeyResult:
    repository: str  # the new repository's id
    created: bool = False  # the target was empty and now holds the new repository
    copied: dict[str, str] = field(default_factory=dict)  # source snapshot id -> new id
    already: dict[str, str] = field(default_factory=dict)  # re-keyed by an earlier run
    damaged: dict[str, str] = field(default_factory=dict)  # source snapshot id -> why not
    blobs_stored: int = 0
    bytes_stored: int = 0
    wal: Carried = field(default_factory=Carried)
    incidents: Carried = field(default_factory=Carried)

    def as_dict(self) -> dict[str, object]:
        return {
            "repository": self.repository,
            "created": self.created,
            "copied": self.copied,
            "already_present": self.already,
            "damaged": self.damaged,
            "blobs_stored": self.blobs_stored,
            "bytes_stored": self.bytes_stored,
            "wal": self.wal.as_dict(),
            "incidents": self.incidents.as_dict(),
        }


def rekey_id(key: MasterKey, source_id: str) -> str:
    """The id of the repository re-keyed from ``source_id``: only its own key recomputes it,
    so it proves which source a target was made for without telling anyone else."""
    return key.blob_id(REKEY_ID_CONTEXT + source_id.encode()).hex()[:32]


def open_target(
    source: Repository, storage: Storage, new_password: bytes, kdf: KdfParams | None = None
) -> tuple[Repository, bool]:
    """The new repository at ``storage`` for re-keying ``source``, and whether it was created
    now: an empty location gets one (the source's cipher, chunker, compression and pack
    size; new keys, a new id), a location holding the one an earlier run of this re-key
    created is opened with ``new_password``; anything else is refused (exit 15)."""
    where = storage.url
    refused = ReplicaMismatchError(
        f"{where} is not empty: copy --rekey writes a new repository, into an empty location"
        f" (or one an interrupted re-key of {source.storage.url} left, with its new password)",
        hint="name an empty location as --to",
    )
    try:
        storage.stat(CONFIG)
    except NotFound:
        return _create(storage, source, new_password, kdf, refused), True
    try:
        target = Repository.open(storage, new_password)
    except WrongPasswordError:
        raise refused from None
    if target.config.id != rekey_id(target.opened_master(), source.config.id):
        raise refused
    return target, False


def _create(
    storage: Storage,
    source: Repository,
    new_password: bytes,
    kdf: KdfParams | None,
    refused: ReplicaMismatchError,
) -> Repository:
    if any(not i.name.startswith(LEFT_BY_INIT) for i in storage.list("")):
        raise refused
    if any(True for _ in storage.list(KEY_PREFIX)):
        return _finish_init(storage, source, new_password, refused)
    master = MasterKey.generate()
    config = _config(source, rekey_id(master, source.config.id))
    return Repository.init(storage, new_password, kdf=kdf, config=config, key=master)


def _config(source: Repository, repo_id: str) -> RepoConfig:
    """The source's parameters, the chunker's seed included: the re-keyed chunks are the
    source's, and a later backup cut the same way stores again only what changed."""
    return RepoConfig(
        repo_id,
        source.cipher,
        source.config.chunker,
        source.config.compression_level,
        source.config.pack_size,
    )


def _finish_init(
    storage: Storage, source: Repository, new_password: bytes, refused: ReplicaMismatchError
) -> Repository:
    """A first run killed while creating the repository left its keyring and key file, not
    its config: the new password opens them, so the config is written for that master key
    (as ``repo init`` writes it, last). Key files another password wraps are refused."""
    try:
        opened = open_with_password(storage, new_password)
    except WrongPasswordError:
        raise refused from None
    config = _config(source, rekey_id(opened.master, source.config.id))
    sealed = seal_object(opened.keyring.ring, opened.cipher, "config", config.to_json())
    storage.write(CONFIG, sealed)
    return Repository.open(storage, new_password)


def rekey_snapshots(
    source: Repository,
    target: Repository,
    snapshots: list[Snapshot],
    *,
    wal_systems: set[str] | None = None,
    report: Callable[[str], None] = lambda _: None,
    progress: Progress | None = None,
) -> RekeyResult:
    """Write ``snapshots`` of ``source`` (shared-locked by the caller, its index loaded) into
    ``target`` (from :func:`open_target`), with the base backups their chains need, then the
    WAL of ``wal_systems`` (None: every system) and every incident timeline. The target is
    locked exclusively meanwhile. Snapshots the source cannot give whole are left out and
    named in ``damaged``; the others go on."""
    result = RekeyResult(target.config.id)
    with RepositoryLock(target, exclusive=True, operation="copy"):
        target.load_index()
        done = _rekeyed_before(target)
        todo = _in_order(_with_chains(source, snapshots))
        if progress is not None:
            progress.set_totals(len(todo), sum(s.summary.bytes_total for s in todo))
        rekeyer = Rekeyer(source, target)
        for snapshot in todo:
            if snapshot.id in done:
                result.already[snapshot.id] = done[snapshot.id]
            else:
                _rekey_one(rekeyer, snapshot, done, result, report)
            if progress is not None:
                progress.done(1, snapshot.summary.bytes_total)
        target.flush()
        result.wal = carry_wal(source, target, wal_systems, report)
        result.incidents = carry_incidents(source, target)
    result.blobs_stored = target.stats.blobs_added
    result.bytes_stored = target.stats.bytes_stored
    return result


def _rekey_one(
    rekeyer: Rekeyer,
    snapshot: Snapshot,
    done: dict[str, str],
    result: RekeyResult,
    report: Callable[[str], None],
) -> None:
    chain = snapshot.source.get("chain") or []
    try:
        if not isinstance(chain, list) or not all(isinstance(i, str) for i in chain):
            raise SourceDamage(f"base backup {snapshot.short_id}'s chain is malformed")
        missing = [link[:8] for link in chain if link not in done]
        if missing:
            raise SourceDamage(
                f"base backup {snapshot.short_id} builds on {', '.join(missing)}, which could"
                " not be re-keyed: it would not restore"
            )
        tree = rekeyer.root(snapshot.tree)
    except SourceDamage as exc:
        result.damaged[snapshot.id] = exc.message
        report(f"snapshot {snapshot.short_id} not re-keyed: {exc.message}")
        return
    new = rekeyed_snapshot(snapshot, tree, done)
    rekeyer.target.save_snapshot(new)  # flushes first: visible only once all it needs is durable
    done[snapshot.id] = result.copied[snapshot.id] = new.id
    report(f"snapshot {snapshot.short_id} re-keyed as {new.short_id}")


def _rekeyed_before(target: Repository) -> dict[str, str]:
    """Source snapshot id -> target id, for the snapshots the target holds already (their
    ``previous_ids`` name them; the target was made for this source: see ``rekey_id``)."""
    done: dict[str, str] = {}
    for snapshot in target.readable_snapshots()[0]:
        for previous in snapshot.previous_ids:
            done[previous] = snapshot.id
    return done


def _with_chains(source: Repository, snapshots: list[Snapshot]) -> list[Snapshot]:
    """``snapshots`` and the base backups their chains build on (an incremental without
    its full would not restore); a link the source cannot give is found missing later."""
    wanted = {s.id: s for s in snapshots}
    links = {link for s in snapshots for link in _links(s.source.get("chain"))}
    if links - set(wanted):
        for snapshot in source.readable_snapshots()[0]:
            if snapshot.id in links:
                wanted.setdefault(snapshot.id, snapshot)
    return list(wanted.values())


def _links(chain: object) -> list[str]:
    return [i for i in chain if isinstance(i, str)] if isinstance(chain, list) else []


def _in_order(snapshots: Iterable[Snapshot]) -> list[Snapshot]:
    """Oldest first, but each after the snapshots it names (its chain, its parent), whatever
    their clocks said: a snapshot is written with its references mapped to new ids."""
    ordered = sorted(snapshots, key=lambda s: (s.time, s.id))
    by_id = {s.id: s for s in ordered}
    out: list[Snapshot] = []
    placed: set[str] = set()
    for first in ordered:
        stack = [(first, False)]
        while stack:
            snapshot, ready = stack.pop()
            if ready:
                out.append(snapshot)
                continue
            if snapshot.id in placed:
                continue
            placed.add(snapshot.id)
            stack.append((snapshot, True))
            for name in [*_links(snapshot.source.get("chain")), snapshot.parent]:
                if name in by_id and name not in placed:
                    stack.append((by_id[name], False))
    return out
