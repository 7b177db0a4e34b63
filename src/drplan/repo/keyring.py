"""The keyring: the data keys, by generation, wrapped by the master key (``keyring/<id>``).

Key files wrap the master key and the master key wraps the keyring, so a new master key
means a new keyring object and new key files, and nothing else rewritten (the format's
"Keyring"). A repository without a keyring (created before keyrings) reads with the
master key's own encryption key as generation 0.
"""

from __future__ import annotations

import base64
import getpass
import json
import secrets
import socket
from dataclasses import dataclass, field

from drplan import clock
from drplan.errors import DrplanError, IntegrityError
from drplan.repo.crypto import KEY_SIZE, CipherName, KeyRing, MasterKey, object_id
from drplan.repo.objects import open_object, seal_object
from drplan.storage import NotFound, Storage

KEYRING_PREFIX = "keyring/"
KEYRING_VERSION = 1
MAX_GENERATION = 2**32 - 1


@dataclass(frozen=True)
class KeyringDoc:
    """One keyring object as written: the data keys and what its rotation replaces."""

    generation: int
    keys: dict[int, bytes]
    supersedes: tuple[str, ...] = ()
    retires: tuple[str, ...] = ()
    created: str = ""
    host: str = ""
    user: str = ""

    def ring(self, id_key: bytes) -> KeyRing:
        return KeyRing(id_key, dict(self.keys), self.generation)

    def body(self) -> bytes:
        return json.dumps(
            {
                "version": KEYRING_VERSION,
                "created": self.created,
                "host": self.host,
                "user": self.user,
                "generation": self.generation,
                "keys": {
                    str(g): base64.b64encode(k).decode() for g, k in sorted(self.keys.items())
                },
                "supersedes": list(self.supersedes),
                "retires": list(self.retires),
            },
            sort_keys=True,
        ).encode()

    @classmethod
    def parse(cls, body: bytes, name: str) -> KeyringDoc:
        """Authenticated, so only a bug writes it wrong; refused as damage all the same."""
        try:
            doc = json.loads(body)
            if type(doc) is not dict or doc.get("version") != KEYRING_VERSION:
                raise ValueError(f"version {doc.get('version') if type(doc) is dict else None!r}")
            keys = {}
            for generation, key in doc["keys"].items():
                number = int(generation)
                value = base64.b64decode(key, validate=True)
                if not 0 <= number <= MAX_GENERATION or len(value) != KEY_SIZE:
                    raise ValueError(f"generation {generation!r:.20} is malformed")
                keys[number] = value
            current = doc["generation"]
            if type(current) is not int or current not in keys:
                raise ValueError("its current generation has no key")
            lists = [doc.get(k, []) for k in ("supersedes", "retires")]
            if any(type(v) is not list or any(type(i) is not str for i in v) for v in lists):
                raise ValueError("supersedes and retires must be lists of ids")
            texts = [doc.get(k, "") for k in ("created", "host", "user")]
            if any(type(t) is not str for t in texts):
                raise ValueError("created, host and user must be text")
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
            raise IntegrityError(f"{name} is damaged: {exc}") from None
        return cls(current, keys, tuple(lists[0]), tuple(lists[1]), *texts)


@dataclass
class LoadedKeyring:
    """What a master key opens under ``keyring/``: the merged ring, the live objects
    (not superseded) and the objects it could not open (another master's, or damage)."""

    ring: KeyRing
    live: dict[str, KeyringDoc] = field(default_factory=dict)
    superseded: list[str] = field(default_factory=list)  # opened, and replaced by a live one
    foreign: list[str] = field(default_factory=list)

    @property
    def names(self) -> frozenset[str]:
        """Every object under ``keyring/`` as this load found it."""
        found = {*self.live, *self.superseded, *self.foreign}
        return frozenset(KEYRING_PREFIX + name for name in found)

    @property
    def legacy(self) -> bool:
        """No keyring: a repository from before keyrings (or its keyring is gone)."""
        return not self.live


def load_keyring(storage: Storage, master: MasterKey, cipher: CipherName) -> LoadedKeyring:
    """The data keys ``master`` opens. Keyring objects that do not open are passed over
    (whoever can write to a location must not choose a reader's keys); with none that
    opens, the ring is the master key's own (a repository without a keyring)."""
    opened: dict[str, KeyringDoc] = {}
    foreign = []
    for info in storage.list(KEYRING_PREFIX):
        name = info.name.removeprefix(KEYRING_PREFIX)
        try:
            stored = storage.read(info.name)
            body = open_object(master.ring(), cipher, "keyring", stored, info.name)
        except NotFound:
            continue
        except IntegrityError:
            foreign.append(name)
            continue
        if object_id(stored) != name:
            foreign.append(name)  # authentic but renamed: not what a writer left
            continue
        opened[name] = KeyringDoc.parse(body, info.name)
    replaced = {old for doc in opened.values() for old in doc.supersedes}
    live = {name: doc for name, doc in opened.items() if name not in replaced}
    if not live:
        return LoadedKeyring(master.ring(), foreign=foreign)
    keys: dict[int, bytes] = {}
    for doc in live.values():
        keys.update(doc.keys)
    current = max(doc.generation for doc in live.values())
    return LoadedKeyring(
        KeyRing(master.id_key, keys, current),
        live,
        sorted(set(opened) - set(live)),
        foreign,
    )


def new_keyring(
    loaded: LoadedKeyring | None, supersedes: list[str], retires: list[str]
) -> KeyringDoc:
    """A keyring holding every data key of ``loaded`` (none for a new repository) and a new
    one as the current generation."""
    keys = dict(loaded.ring.keys) if loaded is not None else {}
    generation = max(keys) + 1 if keys else 0
    if generation > MAX_GENERATION:
        raise DrplanError("the keyring has run out of generations")
    keys[generation] = secrets.token_bytes(KEY_SIZE)
    return KeyringDoc(
        generation,
        keys,
        tuple(sorted(supersedes)),
        tuple(sorted(retires)),
        clock.rfc3339(clock.now()),
        socket.gethostname(),
        getpass.getuser(),
    )


def seal_keyring(master: MasterKey, cipher: CipherName, doc: KeyringDoc) -> tuple[str, bytes]:
    """The object name and stored bytes of ``doc`` sealed with ``master``."""
    data = seal_object(master.ring(), cipher, "keyring", doc.body())
    return KEYRING_PREFIX + object_id(data), data


def keyring_findings(loaded: LoadedKeyring) -> list[tuple[str, str]]:
    """(severity, message) for `drplan check`: keyring objects this master does not open
    (left by a rotation cut short before it wrote a key file, or not drplan's), and
    superseded ones a rotation did not get to delete."""
    found = [
        (
            "info",
            f"keyring/{name[:12]} does not open with this repository's master key: left by a"
            " key rotation cut short, or not written by drplan; it is never used",
        )
        for name in loaded.foreign
    ]
    found += [
        (
            "info",
            f"keyring/{name[:12]} was replaced by a key rotation that has not finished:"
            " rerun `drplan key rotate` to finish it",
        )
        for name in loaded.superseded
    ]
    return found
