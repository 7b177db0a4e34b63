"""Key files: the master key wrapped by a password through argon2id, one file per password.

Each key file is checked field by field before its KDF runs: a damaged one is damage
naming it (IntegrityError) and does not stand in the way of another that opens.
Version 2 binds the metadata (host, user, label, time, KDF, cipher, nonce) to the
wrapped key as associated data; version 1 files, from before, still open.
"""

from __future__ import annotations

import base64
import contextlib
import getpass
import json
import os
import socket
from dataclasses import dataclass
from typing import Any

from argon2.exceptions import HashingError
from argon2.low_level import Type, hash_secret_raw
from cryptography.exceptions import InvalidTag

from drplan import clock
from drplan.errors import DrplanError, IntegrityError, WrongPasswordError
from drplan.repo.crypto import (
    CIPHERS,
    KEY_SIZE,
    NONCE_SIZE,
    TAG_SIZE,
    CipherName,
    KeyRing,
    MasterKey,
    aead,
    object_id,
)
from drplan.repo.keyring import LoadedKeyring, load_keyring
from drplan.repo.objects import open_object, seal_object
from drplan.storage import NotFound, Storage

KEY_PREFIX = "keys/"
# A removed key leaves a tombstone: replicas learn of the removal from it when copied to,
# and a key file that comes back (from an old replica) still opens nothing.
REVOKED_PREFIX = "revoked/"
KEY_AAD = b"drplan/key/v1"  # version 1: the metadata is not bound to the wrapped key
KEY_AAD_V2 = b"drplan/key/v2\n"  # version 2: followed by the metadata (see _bound)
KEY_VERSION = 2  # what this drplan writes; it reads 1 and 2


@dataclass(frozen=True)
class KdfParams:
    """argon2id cost: defaults are RFC 9106's second recommended option (t=3, 4 lanes, 64 MiB).

    Four lanes cost an attacker the same as one but let the library use every core:
    on two cores a key opens in about 0.17 s instead of 0.31 s.
    """

    time_cost: int = 3
    memory_kib: int = 64 * 1024
    parallelism: int = 4

    def derive(self, password: bytes, salt: bytes) -> bytes:
        return hash_secret_raw(
            password,
            salt,
            time_cost=self.time_cost,
            memory_cost=self.memory_kib,
            parallelism=self.parallelism,
            hash_len=KEY_SIZE,
            type=Type.ID,
        )


# The most a key file may ask of a reader (what `repo init` allows, and lanes to spare):
# a key file beyond them is refused as damaged instead of taking all memory, or hours.
MAX_KDF = KdfParams(time_cost=100, memory_kib=4 * 1024 * 1024, parallelism=255)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@dataclass(frozen=True)
class KeyFile:
    id: str
    created: str
    host: str
    user: str
    label: str
    version: int = KEY_VERSION


@dataclass(frozen=True)
class _Parsed:
    """A key file whose every field has the form the format gives it (not yet opened)."""

    info: KeyFile
    kdf: KdfParams
    salt: bytes
    cipher: CipherName
    nonce: bytes
    wrapped: bytes
    aad: bytes


def _bound(doc: dict[str, Any]) -> bytes:
    """Version 2's associated data: the whole key file but the wrapped key, as canonical
    JSON (keys sorted, no spaces, non-ASCII escaped), so changing any of it fails the tag."""
    meta = {key: value for key, value in doc.items() if key != "master_key"}
    return KEY_AAD_V2 + json.dumps(meta, sort_keys=True, separators=(",", ":")).encode()


def wrap(
    master: MasterKey, password: bytes, kdf: KdfParams, cipher: CipherName, label: str
) -> bytes:
    """The bytes of a new (version 2) key file for ``password``."""
    salt, nonce = os.urandom(16), os.urandom(NONCE_SIZE)
    kek = kdf.derive(password, salt)
    secret = json.dumps({"encryption": _b64(master.encryption), "id": _b64(master.id_key)}).encode()
    doc: dict[str, Any] = {
        "version": KEY_VERSION,
        "created": clock.rfc3339(clock.now()),
        "host": socket.gethostname(),
        "user": getpass.getuser(),
        "label": label,
        "kdf": {
            "algorithm": "argon2id",
            "time_cost": kdf.time_cost,
            "memory_kib": kdf.memory_kib,
            "parallelism": kdf.parallelism,
            "salt": _b64(salt),
        },
        "cipher": cipher,
        "nonce": _b64(nonce),
    }
    doc["master_key"] = _b64(aead(cipher, kek).encrypt(nonce, secret, _bound(doc)))
    return json.dumps(doc, indent=2).encode()


def _unwrap(parsed: _Parsed, password: bytes, name: str) -> MasterKey | None:
    """The master key if ``password`` opens this key file, else None (a wrong password, or
    for version 2 also changed metadata: the tag cannot tell which)."""
    try:
        kek = parsed.kdf.derive(password, parsed.salt)
    except HashingError as exc:
        raise _damaged(name, f"its KDF parameters are refused ({exc})") from None
    try:
        secret = aead(parsed.cipher, kek).decrypt(parsed.nonce, parsed.wrapped, parsed.aad)
    except InvalidTag:
        return None
    try:  # authenticated, so only a bug writes this wrong; refused all the same
        keys = json.loads(secret)
        master = MasterKey(_unb64(keys["encryption"]), _unb64(keys["id"]))
    except (ValueError, KeyError, TypeError, RecursionError) as exc:
        raise _damaged(name, f"its master key is malformed ({exc})") from None
    if len(master.encryption) != KEY_SIZE or len(master.id_key) != KEY_SIZE:
        raise _damaged(name, "its master key has the wrong length")
    return master


def _unb64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


def _damaged(name: str, problem: str) -> IntegrityError:
    return IntegrityError(
        f"key file {_shown(name)} is damaged: {problem}",
        hint="open with another key's password and remove it (`drplan key remove`), or restore"
        " it from a replica",
    )


def _shown(name: str) -> str:
    """``keys/1a2b3c4d5e6f``: as `drplan key list` shows ids."""
    return KEY_PREFIX + name.removeprefix(KEY_PREFIX)[:12]


def _parse(stored: bytes, name: str) -> _Parsed:
    """Every field checked for its form; IntegrityError naming the key file otherwise."""
    try:
        doc = json.loads(stored)
    except (ValueError, RecursionError) as exc:
        raise _damaged(name, f"it is not JSON ({exc})") from None
    version = doc.get("version") if type(doc) is dict else None
    if type(version) is not int or version not in (1, KEY_VERSION):
        raise IntegrityError(
            f"key file {_shown(name)} has version {version!r:.40}; this drplan reads 1 and 2",
            hint="written by a newer drplan? upgrade it; otherwise the key file is damaged:"
            " remove it (`drplan key remove`) or restore it from a replica",
        )
    try:
        kdf_doc = doc.get("kdf")
        if type(kdf_doc) is not dict or kdf_doc.get("algorithm") != "argon2id":
            raise ValueError("its KDF is not argon2id")
        kdf = KdfParams(
            _int(kdf_doc, "time_cost", MAX_KDF.time_cost),
            _int(kdf_doc, "memory_kib", MAX_KDF.memory_kib),
            _int(kdf_doc, "parallelism", MAX_KDF.parallelism),
        )
        if kdf.memory_kib < 8 * kdf.parallelism:
            raise ValueError("its KDF memory is below 8 KiB per lane")
        cipher = doc.get("cipher")
        if cipher not in CIPHERS:
            raise ValueError(f"its cipher {cipher!r:.40} is unknown")
        info = KeyFile(
            name.removeprefix(KEY_PREFIX),
            _text(doc.get("created"), "created"),
            _text(doc.get("host"), "host"),
            _text(doc.get("user"), "user"),
            _text(doc.get("label", "") if version == 1 else doc.get("label"), "label"),
            version,
        )
        return _Parsed(
            info,
            kdf,
            _bytes(kdf_doc, "salt", 8, 64),
            cipher,
            _bytes(doc, "nonce", NONCE_SIZE, NONCE_SIZE),
            _bytes(doc, "master_key", TAG_SIZE + 1, 1024),
            KEY_AAD if version == 1 else _bound(doc),
        )
    except ValueError as exc:
        raise _damaged(name, str(exc)) from None


def _int(doc: dict[str, Any], key: str, high: int) -> int:
    value = doc.get(key)
    if type(value) is not int or not 1 <= value <= high:
        raise ValueError(f"its {key} is {value!r:.40}, not an integer from 1 to {high}")
    return value


def _text(value: object, key: str) -> str:
    if type(value) is not str:
        raise ValueError(f"its {key} is {value!r:.40}, not text")
    return value


def _bytes(doc: dict[str, Any], key: str, low: int, high: int) -> bytes:
    try:
        value = _unb64(doc.get(key))  # type: ignore[arg-type]  # anything else is refused
    except (TypeError, ValueError):
        raise ValueError(f"its {key} is not base64") from None
    if not low <= len(value) <= high:
        raise ValueError(f"its {key} has {len(value)} bytes")
    return value


def describe(name: str, stored: bytes) -> KeyFile:
    """What a key file says of itself; IntegrityError naming it when it is damaged."""
    return _parse(stored, name).info


def add_key(
    storage: Storage,
    master: MasterKey,
    password: bytes,
    kdf: KdfParams,
    cipher: CipherName,
    label: str,
) -> str:
    data = wrap(master, password, kdf, cipher, label)
    key_id = object_id(data)
    storage.write(KEY_PREFIX + key_id, data)
    return key_id


def revoked_ids(storage: Storage, ring: KeyRing, cipher: CipherName) -> set[str]:
    """Key ids revoked by a tombstone sealed with one of this repository's data keys.
    Tombstones that do not open are ignored: whoever can write to one location must not
    be able to lock everyone out of it."""
    revoked = set()
    for info in storage.list(REVOKED_PREFIX):
        key_id = info.name.removeprefix(REVOKED_PREFIX)
        try:
            body = json.loads(
                open_object(ring, cipher, "revoked", storage.read(info.name), info.name)
            )
        except (DrplanError, ValueError, RecursionError, NotFound):
            continue
        if type(body) is dict and body.get("key") == key_id:
            revoked.add(key_id)
    return revoked


def tombstone(ring: KeyRing, cipher: CipherName, key_id: str) -> bytes:
    body = {"version": 1, "key": key_id, "revoked": clock.rfc3339(clock.now())}
    return seal_object(ring, cipher, "revoked", json.dumps(body).encode())


def revoke_key(storage: Storage, ring: KeyRing, cipher: CipherName, key_id: str) -> None:
    """Remove a key file, leaving its sealed tombstone first (see REVOKED_PREFIX)."""
    storage.write(REVOKED_PREFIX + key_id, tombstone(ring, cipher, key_id))
    with contextlib.suppress(NotFound):
        storage.delete(KEY_PREFIX + key_id)


def live_keys(storage: Storage, ring: KeyRing, cipher: CipherName) -> list[str]:
    """Names of the key files that are not revoked, sorted."""
    revoked = revoked_ids(storage, ring, cipher)
    return sorted(
        info.name
        for info in storage.list(KEY_PREFIX)
        if info.name.removeprefix(KEY_PREFIX) not in revoked
    )


@dataclass(frozen=True)
class Opened:
    """What a password opens: the master key, the keyring it wraps, the id of the key file
    that opened it and the repository's cipher (key files are sealed with it)."""

    master: MasterKey
    keyring: LoadedKeyring
    key_id: str
    cipher: CipherName


def open_with_password(storage: Storage, password: bytes) -> Opened:
    """The master key and keyring the password opens (see :class:`Opened`). A key file that opens but was revoked (a valid
    tombstone) does not count. A damaged key file does not stand in the way of another
    that opens; when none opens, IntegrityError names the damaged ones, else
    WrongPasswordError names the key files tried.

    A key file whose bytes no longer match its name still opens when its wrapped key
    does (that is authenticated by the password): a flipped bit in a version 1 key's
    time must not lock anyone out. `drplan check` reports it."""
    names = sorted(info.name for info in storage.list(KEY_PREFIX))
    if not names:
        raise DrplanError(
            f"{storage.url}: the repository has no key files", hint="it cannot be opened"
        )
    damaged: list[IntegrityError] = []
    for name in names:
        try:
            stored = storage.read(name)
        except NotFound:
            continue  # removed meanwhile
        try:
            parsed = _parse(stored, name)
            master = _unwrap(parsed, password, name)
        except IntegrityError as exc:
            damaged.append(exc)
            continue
        key_id = name.removeprefix(KEY_PREFIX)
        if master is None:
            if object_id(stored) != key_id:
                damaged.append(_damaged(name, "its bytes do not match its name"))
            continue
        keyring = load_keyring(storage, master, parsed.cipher)
        if key_id not in revoked_ids(storage, keyring.ring, parsed.cipher):
            return Opened(master, keyring, key_id, parsed.cipher)
    if damaged:
        raise IntegrityError(
            f"{storage.url}: no key file opens with this password, and {damaged[0].message}"
            + (f" (and {len(damaged) - 1} more)" if len(damaged) > 1 else ""),
            hint=damaged[0].hint,
        )
    tried = ", ".join(_shown(n) for n in names[:5]) + (", ..." if len(names) > 5 else "")
    raise WrongPasswordError(
        f"{storage.url}: wrong password (it opens none of the {len(names)} key file(s): {tried})",
        hint="check $DRPLAN_PASSWORD, --password-file or the plan's password_command",
    )


def key_file_findings(storage: Storage) -> list[tuple[str, str]]:
    """(severity, message) for each key file that is not as written, without any password:
    its bytes against its name (which is their hash), then its fields. A version 1 key
    file is "info": its host, user, label and time are not bound to the wrapped key."""
    found = []
    for info in storage.list(KEY_PREFIX):
        try:
            stored = storage.read(info.name)
        except NotFound:
            continue
        if object_id(stored) != info.name.removeprefix(KEY_PREFIX):
            found.append(("error", _damaged(info.name, "its bytes do not match its name").message))
            continue
        try:
            parsed = _parse(stored, info.name)
        except IntegrityError as exc:
            found.append(("error", exc.message))
            continue
        if parsed.info.version == 1:
            found.append(
                (
                    "info",
                    f"key file {_shown(info.name)} is version 1: its host, user, label and time"
                    " are not bound to the key; open the repository with its password and run"
                    " `drplan key passwd` to rewrite it",
                )
            )
    return found
