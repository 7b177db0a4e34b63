"""Master-key rotation: a new master key and keyring, written to a location in the order
that keeps every state openable (the format's "Rotation, and what a crash leaves").

A rotation is prepared once (:func:`prepare`): the keyring and the key file are the same
bytes on every location, so replicas stay identical. :func:`apply` writes it to one
location; :func:`finish` completes, with the new password, one a crash cut short.
Neither rewrites a pack, an index, a snapshot or a WAL object.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from drplan import clock
from drplan.errors import DrplanError, UsageError, WrongPasswordError
from drplan.repo.crypto import CipherName, KeyRing, MasterKey, object_id
from drplan.repo.keyring import (
    KEYRING_PREFIX,
    KeyringDoc,
    LoadedKeyring,
    load_keyring,
    new_keyring,
    seal_keyring,
)
from drplan.repo.keys import KEY_PREFIX, REVOKED_PREFIX, KdfParams, revoked_ids, wrap
from drplan.repo.locks import RepositoryLock
from drplan.repo.objects import seal_object
from drplan.repo.replication import put_verified, same_repository, sync_keys
from drplan.repo.repository import Repository
from drplan.storage import NotFound, Storage

NEW_PASSWORD_ENV = "DRPLAN_NEW_PASSWORD"


@dataclass(frozen=True)
class Rotation:
    """A rotation ready to write: the same bytes for every location."""

    master: MasterKey
    doc: KeyringDoc
    keyring_name: str
    keyring: bytes
    key_name: str
    key_file: bytes

    @property
    def retiring_ring(self) -> KeyRing:
        """What seals the retired key files' tombstones: the old current data key, which
        the old keyring (or the old master key itself) and the new one both hold."""
        return retiring_ring(self.master.id_key, self.doc)


def retiring_ring(id_key: bytes, doc: KeyringDoc) -> KeyRing:
    old = max(g for g in doc.keys if g != doc.generation)
    return KeyRing(id_key, {old: doc.keys[old]}, old)


@dataclass
class Outcome:
    """What a rotation did to one location."""

    location: str
    generation: int = 0
    retired: list[str] = field(default_factory=list)  # key ids revoked
    removed_keyrings: list[str] = field(default_factory=list)
    locked: dict[str, datetime] = field(default_factory=dict)  # left until their lock ends
    error: str | None = None

    def as_dict(self) -> dict[str, object]:
        return {
            "location": self.location,
            "generation": self.generation,
            "retired_keys": [k[:12] for k in self.retired],
            "removed_keyrings": [k[:12] for k in self.removed_keyrings],
            "locked": {name: clock.rfc3339(end) for name, end in sorted(self.locked.items())},
            "error": self.error,
        }


def live_key_ids(repo: Repository) -> set[str]:
    revoked = revoked_ids(repo.storage, repo.key, repo.cipher)
    return {
        info.name.removeprefix(KEY_PREFIX)
        for info in repo.storage.list(KEY_PREFIX)
        if info.name.removeprefix(KEY_PREFIX) not in revoked
    }


def prepare(repos: list[Repository], new_password: bytes, kdf: KdfParams, label: str) -> Rotation:
    """A new master key (the same blob-id key), a keyring holding every data key the
    locations' keyrings hold plus a new current one, and a key file for ``new_password``.
    It retires every live key file of every location given, and supersedes their live
    keyrings."""
    first = repos[0]
    old_master = first.opened_master()
    loaded = [_loaded(r) for r in repos]
    merged = LoadedKeyring(
        KeyRing(
            old_master.id_key,
            {g: k for one in loaded for g, k in one.ring.keys.items()},
            max(one.ring.current for one in loaded),
        )
    )
    # Superseded ones too: deleting only the live one would bring them back to life.
    supersedes = sorted({name for one in loaded for name in (*one.live, *one.superseded)})
    retires = set().union(*(live_key_ids(r) for r in repos))
    doc = new_keyring(merged, supersedes, sorted(retires))
    master = MasterKey(MasterKey.generate().encryption, old_master.id_key)
    keyring_name, keyring = seal_keyring(master, first.cipher, doc)
    key_file = wrap(master, new_password, kdf, first.cipher, label)
    return Rotation(master, doc, keyring_name, keyring, KEY_PREFIX + object_id(key_file), key_file)


def apply(storage: Storage, rotation: Rotation, cipher: CipherName) -> Outcome:
    """Write the rotation to one location: keyring, key file, then retire the old keys and
    keyrings. Each write is a whole object, so a crash between two leaves a location that
    one of the two passwords opens (see the module docstring)."""
    _put(storage, rotation.keyring_name, rotation.keyring)
    _put(storage, rotation.key_name, rotation.key_file)
    return _retire(storage, rotation.doc, rotation.retiring_ring, cipher)


def finish(repo: Repository) -> Outcome:
    """Complete a rotation on a location the new password opens: revoke the key files its
    keyring retires and delete the keyrings it supersedes, whatever is left of them."""
    loaded = _loaded(repo)
    doc = max(loaded.live.values(), key=lambda d: d.generation)
    if len(doc.keys) < 2:  # the keyring `repo init` wrote: nothing to retire
        return Outcome(repo.storage.url, doc.generation)
    return _retire(repo.storage, doc, retiring_ring(repo.key.id_key, doc), repo.cipher)


def unfinished(repo: Repository) -> bool:
    """Whether a rotation that wrote this location's keyring has work left here."""
    loaded = _loaded(repo)
    if not loaded.live:
        return False
    revoked = revoked_ids(repo.storage, repo.key, repo.cipher)
    keys = {info.name.removeprefix(KEY_PREFIX) for info in repo.storage.list(KEY_PREFIX)}
    there = {info.name.removeprefix(KEYRING_PREFIX) for info in repo.storage.list(KEYRING_PREFIX)}
    for doc in loaded.live.values():
        if set(doc.retires) - revoked or set(doc.retires) & keys or set(doc.supersedes) & there:
            return True
    return False


def _loaded(repo: Repository) -> LoadedKeyring:
    return load_keyring(repo.storage, repo.opened_master(), repo.cipher)


def _retire(storage: Storage, doc: KeyringDoc, ring: KeyRing, cipher: CipherName) -> Outcome:
    outcome = Outcome(storage.url, doc.generation)
    now = clock.now()
    revoked = revoked_ids(storage, ring, cipher)
    for key_id in doc.retires:
        if key_id not in revoked:
            body = {"version": 1, "key": key_id, "revoked": clock.rfc3339(now)}
            sealed = seal_object(ring, cipher, "revoked", json.dumps(body).encode())
            _put(storage, REVOKED_PREFIX + key_id, sealed)
        if _delete(storage, KEY_PREFIX + key_id, outcome, now):
            outcome.retired.append(key_id)
    for name in doc.supersedes:
        if _delete(storage, KEYRING_PREFIX + name, outcome, now):
            outcome.removed_keyrings.append(name)
    return outcome


def _put(storage: Storage, name: str, data: bytes) -> None:
    """Write and read back: a rotation must not go on past a write that did not land."""
    with contextlib.suppress(NotFound):
        if storage.read(name) == data:
            return  # a rerun: already there
    put_verified(storage, name, data)


def _delete(storage: Storage, name: str, outcome: Outcome, now: datetime) -> bool:
    """Delete unless Object Lock keeps it (then noted with its date); True once it is gone."""
    try:
        until = storage.locked_until(name)
    except NotFound:
        return True
    if until is not None and until > now:
        outcome.locked[name] = until
        return False
    try:
        storage.delete(name)
    except NotFound:
        pass
    except DrplanError as exc:
        raise DrplanError(
            f"{storage.url}: could not delete {name} ({exc.message})",
            hint="rerun `drplan key rotate` with the new password to finish the rotation",
        ) from None
    return True


@dataclass
class Target:
    """One location a rotation is asked to cover."""

    name: str
    storage: Storage
    repo: Repository | None = None
    error: DrplanError | None = None  # why it could not be opened with the password given


def rotate_locations(
    targets: list[Target],
    password: bytes,
    new_password: bytes | None,
    kdf: KdfParams,
    label: str,
    optional: bool = False,
) -> list[Outcome]:
    """Rotate (or finish rotating) the master key of every target ``password`` opens, each
    under its exclusive lock, then bring along the targets it does not open that hold the
    same repository (locations a cut-short rotation did not reach).

    If the password opens a location where a rotation has work left, that rotation is
    finished and no new one started: a rerun with the new password completes what a
    crash or an unreachable location interrupted. Otherwise ``new_password`` is needed.
    A location that fails midway is named in its outcome; the others go on. With
    ``optional`` (re-encryption alone), no new password and nothing to finish is no
    rotation at all: an empty list.
    """
    for target in targets:
        try:
            target.repo = Repository.open(target.storage, password)
        except DrplanError as exc:
            target.error = exc
    opened = [t for t in targets if t.repo is not None]
    if not opened:
        raise next(t.error for t in targets if t.error is not None)
    held: list[RepositoryLock] = []
    try:
        for target in opened:
            assert target.repo is not None
            held.append(RepositoryLock(target.repo, True, "key rotate").acquire())
        return _rotate_opened(targets, opened, new_password, kdf, label, optional)
    finally:
        for lock in held:
            lock.release()


def _rotate_opened(
    targets: list[Target],
    opened: list[Target],
    new_password: bytes | None,
    kdf: KdfParams,
    label: str,
    optional: bool,
) -> list[Outcome]:
    repos = [t.repo for t in opened if t.repo is not None]
    outcomes: dict[str, Outcome] = {}
    source: Repository | None = None
    behind, ahead = _locked_out(targets, repos[0])
    if ahead:
        raise DrplanError(
            f"{', '.join(ahead)} hold this repository under a newer key than this password"
            " opens: a rotation has been done there",
            hint="rerun `drplan key rotate` with the new password to bring every location to it",
        )
    if behind or any(unfinished(r) for r in repos):
        for target in opened:
            assert target.repo is not None
            outcomes[target.name] = _guarded(target, finish)
        source = repos[0]
    else:
        if new_password is None and optional:
            return []
        if new_password is None:
            raise UsageError(
                "key rotate needs the new password",
                hint=f"pass --new-password-file FILE or set ${NEW_PASSWORD_ENV}",
            )
        rotation = prepare(repos, new_password, kdf, label)
        for target in opened:
            outcome = _guarded(target, lambda r: apply(r.storage, rotation, r.cipher))
            outcomes[target.name] = outcome
            if outcome.error is None:
                assert target.repo is not None
                # What writes after the rotation (its audit entry) uses the new keys.
                target.repo = Repository(
                    target.storage,
                    target.repo.config,
                    rotation.doc.ring(rotation.master.id_key),
                    rotation.key_name.removeprefix(KEY_PREFIX),
                    rotation.master,
                )
                source = source or target.repo
    for target in targets:
        if target.repo is None:
            outcomes[target.name] = _brought_along(target, source)
    return [outcomes[t.name] for t in targets]


def _locked_out(targets: list[Target], repo: Repository) -> tuple[list[str], list[str]]:
    """Locations holding this repository that the password does not open: those behind
    (only keyrings this one supersedes, or none: a rotation did not reach them) and those
    ahead (a keyring this master does not know: rotated since)."""
    loaded = _loaded(repo)
    known = set(loaded.live) | set(loaded.superseded)
    known |= {old for doc in loaded.live.values() for old in doc.supersedes}
    behind: list[str] = []
    ahead: list[str] = []
    for target in targets:
        if not isinstance(target.error, WrongPasswordError):
            continue
        try:
            if not same_repository(repo, target.storage):
                continue
            there = {
                i.name.removeprefix(KEYRING_PREFIX) for i in target.storage.list(KEYRING_PREFIX)
            }
        except DrplanError:
            continue  # reported as the password's error
        (ahead if there - known else behind).append(target.name)
    return behind, ahead


def _guarded(target: Target, work: Callable[[Repository], Outcome]) -> Outcome:
    assert target.repo is not None
    try:
        outcome = work(target.repo)
    except DrplanError as exc:
        return Outcome(target.name, error=exc.message)
    outcome.location = target.name
    return outcome


def _brought_along(target: Target, source: Repository | None) -> Outcome:
    """A location the password did not open: if it holds the same repository (it lags a
    rotation), give it the new keyring and key files and retire its old keys."""
    error = target.error
    if source is None or not isinstance(error, WrongPasswordError):
        return Outcome(target.name, error=error.message if error else "not rotated")
    try:
        if not same_repository(source, target.storage):
            return Outcome(target.name, error=error.message)
        sync_keys(source, target.storage)
    except DrplanError as exc:
        return Outcome(target.name, error=exc.message)
    return Outcome(target.name, source.key.current)
