"""The repository config object: cipher, chunker and compression parameters, repository id."""

from __future__ import annotations

import json
import secrets
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from drplan import clock
from drplan.errors import IntegrityError
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
        """The config, with parameters this drplan can work with; IntegrityError otherwise."""
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError) as exc:
            raise IntegrityError(f"the config object is malformed ({exc})") from None
        version = data.get("version") if type(data) is dict else None
        if type(version) is not int or version != FORMAT_VERSION:
            raise IntegrityError(
                f"repository format version {version!r:.40} is not supported"
                f" (this drplan reads version {FORMAT_VERSION})",
                hint="written by a newer drplan? upgrade it; otherwise the config is damaged",
            )
        try:
            cipher = data.get("cipher")
            if cipher not in CIPHERS:
                raise ValueError(f"unknown cipher {cipher!r:.40}")
            chunker = data.get("chunker")
            if type(chunker) is not dict or set(chunker) != _CHUNKER_FIELDS:
                raise ValueError(f"chunker is {chunker!r:.80}")
            if chunker["algorithm"] != "fastcdc-2020":
                raise ValueError(f"unknown chunker {chunker['algorithm']!r:.40}")
            params = ChunkerParams(
                algorithm="fastcdc-2020",
                **{key: _int(chunker, key) for key in _CHUNKER_FIELDS - {"algorithm"}},
            )
            if not params.min_size <= params.avg_size <= params.max_size:
                raise ValueError("chunk sizes are not min <= avg <= max")
            compression = data.get("compression")
            if type(compression) is not dict or compression.get("algorithm") != "zstd":
                raise ValueError(f"compression is {compression!r:.80}")
            created = data.get("created")
            if type(data.get("id")) is not str or type(created) is not str:
                raise ValueError("id or created is not text")
            return cls(
                id=data["id"],
                cipher=cipher,
                chunker=params,
                compression_level=_int(compression, "level"),
                pack_size=_int(data, "pack_size"),
                created=created,
            )
        except ValueError as exc:
            raise IntegrityError(
                f"the config object is malformed ({exc})", hint="restore it from a replica"
            ) from None


_CHUNKER_FIELDS = {f.name for f in fields(ChunkerParams)}
# What a reader accepts: FastCDC-2020's own bounds for the chunker, zstd's levels, and
# packs of 1 KiB to 1 GiB (a pack's offsets are 32-bit).
_LIMITS = {
    "min_size": (64, 1 * MIB),
    "avg_size": (256, 4 * MIB),
    "max_size": (1024, 16 * MIB),
    "normalization": (0, 3),
    "seed": (0, (1 << 63) - 1),
    "level": (-(1 << 17), 22),
    "pack_size": (1024, 1024 * MIB),
}


def _int(data: dict[str, Any], key: str) -> int:
    value = data.get(key)
    low, high = _LIMITS[key]
    if type(value) is not int or not low <= value <= high:
        raise ValueError(f"{key} is {value!r:.40}, not an integer from {low} to {high}")
    return value
