"""The repository config object: cipher, chunker and compression parameters, repository id."""

from __future__ import annotations

import json
import secrets
from dataclasses import asdict, dataclass, field
from typing import Any

from drplan import clock
from drplan.errors import DrplanError
from drplan.repo.crypto import CIPHERS, CipherName

FORMAT_VERSION = 1
MIB = 1024 * 1024
# zstd level 1: on logs and configuration (bench/files_bench.py's data) it compressed as
# well as level 3, and 60% faster. Jobs whose data gains from more raise it.
DEFAULT_COMPRESSION_LEVEL = 1


@dataclass(frozen=True)
class ChunkerParams:
    algorithm: str = "fastcdc-2020"
    min_size: int = 256 * 1024
    avg_size: int = 1 * MIB
    max_size: int = 4 * MIB
    normalization: int = 1
    seed: int = 0


@dataclass(frozen=True)
class RepoConfig:
    id: str
    cipher: CipherName
    chunker: ChunkerParams
    compression_level: int = DEFAULT_COMPRESSION_LEVEL
    pack_size: int = 16 * MIB
    created: str = field(default_factory=lambda: clock.rfc3339(clock.now()))
    version: int = FORMAT_VERSION

    @classmethod
    def new(
        cls, cipher: CipherName = "aes-256-gcm", compression_level: int = DEFAULT_COMPRESSION_LEVEL
    ) -> RepoConfig:
        chunker = ChunkerParams(seed=secrets.randbelow(2**31))
        return cls(secrets.token_hex(16), cipher, chunker, compression_level)

    def to_json(self) -> bytes:
        data: dict[str, Any] = {
            "version": self.version,
            "id": self.id,
            "created": self.created,
            "cipher": self.cipher,
            "chunker": asdict(self.chunker),
            "compression": {"algorithm": "zstd", "level": self.compression_level},
            "pack_size": self.pack_size,
        }
        return json.dumps(data, sort_keys=True).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> RepoConfig:
        data = json.loads(raw)
        if data.get("version") != FORMAT_VERSION:
            raise DrplanError(
                f"repository format version {data.get('version')} is not supported"
                f" (this drplan reads version {FORMAT_VERSION})",
                hint="upgrade drplan",
            )
        if data["cipher"] not in CIPHERS:
            raise DrplanError(f"repository cipher {data['cipher']!r} is not supported")
        return cls(
            id=data["id"],
            cipher=data["cipher"],
            chunker=ChunkerParams(**data["chunker"]),
            compression_level=int(data["compression"]["level"]),
            pack_size=int(data["pack_size"]),
            created=data["created"],
        )
