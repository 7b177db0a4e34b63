"""Re-encryption: everything a location stores rewritten under the keyring's current data
key, so that the data keys of older generations can be dropped (`key rotate --reencrypt`).

A rotation alone leaves what was stored before it sealed with data keys the new keyring
still holds: whoever kept a copy of the old keyring and has the old master key reads it.
Re-encryption closes that, in an order where a crash at any moment loses nothing and a
rerun goes on where it stopped:

1. packs of older generations: their blobs read, authenticated and written again in new
   packs (blob ids are unchanged: the blob-id key is not rotated), indexed as they go;
2. objects re-sealed where they are, by the same name (the config, WAL files, incident
   timelines, audit entries, tombstones): each write replaces the whole object at once;
3. snapshots re-sealed under their new name (the hash of the new bytes), oldest first,
   recording the names they had (``previous_ids``), with their parent and base-backup
   chain pointing at the new names; the old object deleted after the new one is durable
   (readers hide a snapshot another one replaced, so a crash shows neither twice);
4. one index of the current packs superseding all others; then the old packs and
   indexes deleted;
5. (:func:`drop_old_generations`, once every location is done) a keyring of the current
   data key alone, superseding the one holding the old keys.

The same snapshot and config bytes are written to every location (``shared``), so
replicas keep identical names. Objects under Object Lock are deleted all the same (on a
versioned bucket a delete only hides the object) and listed with the date their locked
version goes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import getpass
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from drplan import clock
from drplan.errors import DrplanError, IntegrityError
from drplan.repo.crypto import object_id
from drplan.repo.index import Index, IndexFile, PackInfo, live_index_files
from drplan.repo.keyring import KEYRING_PREFIX, KeyringDoc, load_keyring, seal_keyring
from drplan.repo.objects import object_generation, open_object
from drplan.repo.pack import open_blob
from drplan.repo.replication import put_verified
from drplan.repo.repository import CONFIG, INDEX_PREFIX, SNAPSHOT_PREFIX, Repository, pack_name
from drplan.repo.snapshot import Snapshot
from drplan.storage import NotFound, Storage

# Objects re-sealed in place, by prefix, with their kind. Locks are not: they come and go.
IN_PLACE = (
    ("wal/", "wal"),
    ("incidents/", "incident"),
    ("audit/", "audit"),
    ("revoked/", "revoked"),
)

Shared = dict[str, bytes]  # sealed once, written to every location: "config", "snapshot:<id>"


@dataclass
class Reencrypted:
    """What re-encryption did to one location."""

    location: str
    generation: int = 0
    packs_rewritten: int = 0
    bytes_read: int = 0
    bytes_written: int = 0
    objects_resealed: int = 0
    snapshots_renamed: dict[str, str] = field(default_factory=dict)
    damaged: list[str] = field(default_factory=list)  # what could not be read: left as it is
    locked: dict[str, datetime] = field(default_factory=dict)
    error: str | None = None
    repo: Repository | None = field(default=None, repr=False)  # opened with the new keyring

    @property
    def complete(self) -> bool:
        return self.error is None and not self.damaged

    def as_dict(self) -> dict[str, Any]:
        return {
            "location": self.location,
            "generation": self.generation,
            "packs_rewritten": self.packs_rewritten,
            "bytes_read": self.bytes_read,
            "bytes_written": self.bytes_written,
            "objects_resealed": self.objects_resealed,
            "snapshots_renamed": self.snapshots_renamed,
            "damaged": self.damaged,
            "locked": {name: clock.rfc3339(end) for name, end in sorted(self.locked.items())},
            "error": self.error,
        }


def reencrypt(
    repo: Repository, shared: Shared, report: Callable[[str], None] | None = None
) -> Reencrypted:
    """Rewrite everything of ``repo`` sealed with an older generation (the caller holds the
    exclusive lock and has loaded the index)."""
    say = report or (lambda _: None)
    out = Reencrypted(repo.storage.url, repo.key.current)
    before = repo.stats.bytes_stored
    kept = _rewrite_packs(repo, out, say)
    out.bytes_written = repo.stats.bytes_stored - before
    _reseal_in_place(repo, out, shared)
    _reseal_snapshots(repo, out, shared)
    _consolidate_index(repo, out, kept)
    out.damaged += _leftovers(repo)
    return out


def _leftovers(repo: Repository) -> list[str]:
    """What is still sealed with an older generation, read from the objects' headers: the
    last check before the old keys may go (a ranged read of a few bytes per object)."""
    current = repo.key.current
    names = [CONFIG] + [
        info.name
        for prefix in (SNAPSHOT_PREFIX, INDEX_PREFIX, *(p for p, _ in IN_PLACE))
        for info in repo.storage.list(prefix)
    ]
    left = [
        f"{name} is still sealed with an older data key"
        for name in names
        if _sealed_current(repo, name) is False
    ]
    left += [
        f"pack {p.id[:16]} is still sealed with an older data key"
        for p in repo.load_index().packs.values()
        if p.generation != current
    ]
    return left


def _rewrite_packs(
    repo: Repository, out: Reencrypted, say: Callable[[str], None]
) -> list[PackInfo]:
    """Copy the blobs of older packs into packs of the current generation; returns the old
    packs that could not be read whole (kept, and named in ``out.damaged``)."""
    current = repo.key.current
    old = [p for p in repo.index.packs.values() if p.generation != current]
    fresh = Index()  # what is already current (a rerun finds its own earlier packs here)
    for pack in repo.index.packs.values():
        if pack.generation == current:
            fresh.add_pack(pack)
    repo.index = fresh
    kept = []
    for number, pack in enumerate(old, 1):
        say(f"re-encrypting pack {number} of {len(old)}")
        try:
            data = repo.storage.read(pack_name(pack.id))
            out.bytes_read += len(data)
            for entry in pack.entries:
                if entry.id in repo.index:
                    continue
                sealed = data[entry.offset : entry.offset + entry.stored_length]
                where = f"blob {entry.id.hex()[:16]} in pack {pack.id[:16]}"
                plain = open_blob(
                    repo.key, repo.cipher, pack.salt, pack.generation, entry, sealed, where
                )
                repo.save_blob(entry.type, plain, entry.id)
        except (IntegrityError, NotFound) as exc:
            out.damaged.append(f"pack {pack.id[:16]}: {getattr(exc, 'message', 'missing')}")
            kept.append(pack)
            continue
        out.packs_rewritten += 1
    repo.flush()
    return kept


def _reseal_in_place(repo: Repository, out: Reencrypted, shared: Shared) -> None:
    names = [(CONFIG, "config")] + [
        (info.name, kind) for prefix, kind in IN_PLACE for info in repo.storage.list(prefix)
    ]
    for name, kind in names:
        try:
            if _sealed_current(repo, name) is not False:
                continue  # already re-sealed (a rerun), or gone
            body = open_object(repo.key, repo.cipher, kind, repo.storage.read(name), name)
        except NotFound:
            continue
        except IntegrityError as exc:
            out.damaged.append(exc.message)
            continue
        if name != CONFIG:
            data = repo.seal(kind, body)
        else:
            if "config" not in shared:
                shared["config"] = repo.seal(kind, body)
            data = shared["config"]
        put_verified(repo.storage, name, data)
        out.objects_resealed += 1


def _reseal_snapshots(repo: Repository, out: Reencrypted, shared: Shared) -> None:
    """Oldest first, so a snapshot's parent and chain are renamed before it is written."""
    snapshots, damaged = repo.readable_snapshots()
    out.damaged += [f"snapshot {i[:8]}: {why}" for i, why in damaged.items()]
    renamed = {old: s.id for s in snapshots for old in s.previous_ids}
    for snapshot in snapshots:
        refs = [snapshot.parent, *snapshot.source.get("chain", [])]
        sealed = _sealed_current(repo, SNAPSHOT_PREFIX + snapshot.id)
        if sealed is not False and not any(r in renamed for r in refs):
            continue
        new = _renamed(snapshot, renamed)
        key = f"snapshot:{snapshot.id}"
        if key not in shared:  # sealed once, the same bytes in every location
            shared[key] = repo.seal("snapshot", new.to_json())
        data = shared[key]
        new.id = object_id(data)
        if repo.storage.lock_days:
            from drplan.repo.immutability import cover_snapshot  # noqa: PLC0415 - see save_snapshot

            cover_snapshot(repo, new)
        put_verified(repo.storage, SNAPSHOT_PREFIX + new.id, data)
        _delete(repo.storage, SNAPSHOT_PREFIX + snapshot.id, out)
        renamed[snapshot.id] = new.id
        out.snapshots_renamed[snapshot.id] = new.id
    # Replaced ones a crash left between writing the new object and deleting the old.
    for info in list(repo.storage.list(SNAPSHOT_PREFIX)):
        if info.name.removeprefix(SNAPSHOT_PREFIX) in renamed:
            _delete(repo.storage, info.name, out)


def _renamed(snapshot: Snapshot, renamed: dict[str, str]) -> Snapshot:
    source = dict(snapshot.source)
    if "chain" in source:
        source["chain"] = [renamed.get(i, i) for i in source["chain"]]
    parent = renamed.get(snapshot.parent, snapshot.parent) if snapshot.parent else None
    return dataclasses.replace(
        snapshot,
        parent=parent,
        source=source,
        previous_ids=[*snapshot.previous_ids, snapshot.id],
        id="",
    )


def _consolidate_index(repo: Repository, out: Reencrypted, kept: list[PackInfo]) -> None:
    """One index of the current packs (and the old ones that could not be read), superseding
    every other; then the old packs and indexes go."""
    files = list(repo.index_files())
    listed = {p.id: p for _, f in live_index_files(files) for p in f.packs}
    current = repo.key.current
    old = [p for p in listed.values() if p.generation != current and p not in kept]
    if not old and len(files) == 1 and _sealed_current(repo, INDEX_PREFIX + files[0][0]):
        return  # one index, of this generation: nothing to supersede
    packs = [*repo.index.packs.values(), *kept]
    repo.save_index(IndexFile(packs, supersedes=[name for name, _ in files]))
    for pack in old:
        _delete(repo.storage, pack_name(pack.id), out)
    for name, _ in files:
        _delete(repo.storage, INDEX_PREFIX + name, out)


def _sealed_current(repo: Repository, name: str) -> bool | None:
    """Whether the object is sealed with the current generation, from its first bytes (a
    ranged read: WAL files are large); None when it is gone."""
    try:
        head = repo.storage.read(name, 0, 9)
    except NotFound:
        return None
    # Version 1 objects are generation 0, never current here: re-encryption needs a
    # keyring, and a keyring's first rotation makes generation 1 current.
    return object_generation(head, name) == repo.key.current


def drop_old_generations(repos: list[Repository]) -> tuple[str, list[str]]:
    """Write a keyring holding only the current data key (the same bytes to every location)
    and delete the one holding the old keys. Only once every location is re-encrypted:
    a copy between replicas moves packs as they are."""
    first = repos[0]
    master = first.opened_master()
    loaded = load_keyring(first.storage, master, first.cipher)
    current = loaded.ring.current
    doc = KeyringDoc(
        current,
        {current: loaded.ring.keys[current]},
        # every keyring it opens, not only the live ones: one that a deleted keyring
        # superseded would come back to life
        tuple(sorted({*loaded.live, *loaded.superseded})),
        (),
        clock.rfc3339(clock.now()),
        socket.gethostname(),
        getpass.getuser(),
    )
    name, data = seal_keyring(master, first.cipher, doc)
    for repo in repos:
        put_verified(repo.storage, name, data)
        for old in doc.supersedes:
            with contextlib.suppress(NotFound):
                repo.storage.delete(KEYRING_PREFIX + old)
    return name, list(doc.supersedes)


def _delete(storage: Storage, name: str, out: Reencrypted) -> None:
    try:
        until = storage.locked_until(name)
        storage.delete(name)
    except NotFound:
        return
    except DrplanError as exc:
        out.damaged.append(f"{name} could not be deleted ({exc.message})")
        return
    if until is not None and until > clock.now():
        out.locked[name] = until


def reencrypt_locations(
    targets: list[tuple[str, Storage]],
    password: bytes,
    upload_limit: float | None,
    say: Callable[[str], None],
) -> tuple[list[Reencrypted], bool]:
    """Re-encrypt every location ``password`` opens (each under its exclusive lock), then,
    only if every one of them finished whole, drop the old data keys everywhere; returns
    the outcomes and whether the old keys were dropped."""
    from drplan.repo.locks import RepositoryLock  # noqa: PLC0415 - locks build on repository
    from drplan.storage.limited import LimitedStorage  # noqa: PLC0415

    shared: Shared = {}
    outcomes: list[Reencrypted] = []
    repos: list[Repository] = []
    for name, storage in targets:
        limited = LimitedStorage(storage, upload_limit) if upload_limit else storage
        try:
            repo = Repository.open(limited, password)
            if not repo.key.versioned:
                raise DrplanError(
                    "it has no keyring yet: its data is sealed with the master key itself",
                    hint="rotate first: `drplan key rotate --reencrypt --new-password-file FILE`",
                )
            with RepositoryLock(repo, True, "key rotate --reencrypt"):
                repo.load_index()
                outcome = reencrypt(repo, shared, _prefixed(say, name))
        except DrplanError as exc:
            outcome = Reencrypted(name, error=exc.message)
        else:
            repos.append(repo)
            outcome.repo = repo
        outcome.location = name
        outcomes.append(outcome)
    whole = bool(repos) and all(o.complete for o in outcomes)
    if whole:
        drop_old_generations(repos)
        for repo in repos:  # what is written from now on (the audit entry) uses the new keyring
            repo.refresh_keyring()
    return outcomes, whole


def _prefixed(say: Callable[[str], None], name: str) -> Callable[[str], None]:
    return lambda text: say(f"{name}: {text}")
