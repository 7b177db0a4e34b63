"""The one trust boundary: every encryption, decryption and keyed hash goes through :class:`MasterKey`.

Subkeys are derived per object or pack from a random salt, and nonces under a
subkey are counters, so no (key, nonce) pair is ever reused (see the format's
"Ciphers and subkeys").
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Literal

import blake3
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from drplan.errors import DrplanError, IntegrityError

CipherName = Literal["aes-256-gcm", "chacha20-poly1305"]
CIPHERS: tuple[CipherName, ...] = ("aes-256-gcm", "chacha20-poly1305")
KEY_SIZE = 32
SALT_SIZE = 32
NONCE_SIZE = 12
TAG_SIZE = 16
SUBKEY_CONTEXT = "drplan 2026 repository subkey v1"


def aead(cipher: CipherName, key: bytes) -> AESGCM | ChaCha20Poly1305:
    if cipher == "aes-256-gcm":
        return AESGCM(key)
    if cipher == "chacha20-poly1305":
        return ChaCha20Poly1305(key)
    raise DrplanError(f"unknown cipher {cipher!r}", hint=f"this drplan knows {', '.join(CIPHERS)}")


def counter_nonce(counter: int) -> bytes:
    return counter.to_bytes(NONCE_SIZE, "big")


@dataclass(frozen=True)
class MasterKey:
    """The repository's secrets: the encryption root and the blob-id key."""

    encryption: bytes
    id_key: bytes

    @classmethod
    def generate(cls) -> MasterKey:
        return cls(secrets.token_bytes(KEY_SIZE), secrets.token_bytes(KEY_SIZE))

    def __repr__(self) -> str:  # never show key material, even in a debugger dump
        return "MasterKey(<secret>)"

    def blob_id(self, plaintext: bytes | bytearray | memoryview) -> bytes:
        return blake3.blake3(plaintext, key=self.id_key).digest()

    def subkey(self, salt: bytes) -> bytes:
        return blake3.blake3(self.encryption + salt, derive_key_context=SUBKEY_CONTEXT).digest()

    def sealer(self, cipher: CipherName, salt: bytes) -> Sealer:
        return Sealer(aead(cipher, self.subkey(salt)))

    def ring(self) -> KeyRing:
        """The data keys of a repository without a keyring (and what seals a keyring):
        generation 0 is the master key's own encryption key, objects are version 1."""
        return KeyRing(self.id_key, {0: self.encryption}, 0, versioned=False)


@dataclass(frozen=True)
class KeyRing:
    """The data keys, by generation, that encrypt a repository's objects and packs, and the
    blob-id key. ``versioned``: objects and packs name their generation (format version 2);
    a repository without a keyring writes version 1, which is generation 0."""

    id_key: bytes
    keys: dict[int, bytes]
    current: int
    versioned: bool = True

    def __repr__(self) -> str:  # never show key material
        return f"KeyRing(generations={sorted(self.keys)}, current={self.current})"

    def blob_id(self, plaintext: bytes | bytearray | memoryview) -> bytes:
        return blake3.blake3(plaintext, key=self.id_key).digest()

    def sealer(
        self, cipher: CipherName, salt: bytes, generation: int | None = None, what: str = "it"
    ) -> Sealer:
        """AEAD under the subkey of ``salt`` and the data key of ``generation`` (the
        current one by default); IntegrityError naming ``what`` for a generation this
        keyring lacks."""
        generation = self.current if generation is None else generation
        key = self.keys.get(generation)
        if key is None:
            raise IntegrityError(
                f"{what} is sealed with data key generation {generation}, which the keyring does not"
                f" hold (it holds {', '.join(map(str, sorted(self.keys)))})",
                hint="the object is damaged, or was written after a rotation by a process that"
                " opened the repository before it: run `drplan check`",
            )
        subkey = blake3.blake3(key + salt, derive_key_context=SUBKEY_CONTEXT).digest()
        return Sealer(aead(cipher, subkey))


class Sealer:
    """AEAD under one subkey; the caller supplies counter nonces."""

    def __init__(self, primitive: AESGCM | ChaCha20Poly1305) -> None:
        self._aead = primitive

    def seal(self, counter: int, plaintext: bytes | bytearray | memoryview, aad: bytes) -> bytes:
        return self._aead.encrypt(counter_nonce(counter), plaintext, aad)

    def open(
        self, counter: int, ciphertext: bytes | bytearray | memoryview, aad: bytes, what: str
    ) -> bytes:
        try:
            return self._aead.decrypt(counter_nonce(counter), ciphertext, aad)
        except InvalidTag:
            raise IntegrityError(
                f"{what} failed authentication: it is damaged or was tampered with"
            ) from None


def new_salt() -> bytes:
    return secrets.token_bytes(SALT_SIZE)


def object_id(stored: bytes | bytearray | memoryview) -> str:
    """The storage name of an object: hex BLAKE3 of its bytes as stored."""
    return blake3.blake3(stored).hexdigest()
