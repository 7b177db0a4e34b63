"""The config object: whatever it holds, a decoded config has parameters the chunker,
zstd and the pack writer accept, or it is damage (IntegrityError)."""

from __future__ import annotations

import json
from typing import Any

import pytest
import zstandard
from hypothesis import given
from hypothesis import strategies as st

from drplan.errors import IntegrityError
from drplan.repo.chunker import Chunker
from drplan.repo.config import RepoConfig
from tests.fixtures.fuzz import decoded_or_damage, fuzz, json_mutated, mutated

VALID = RepoConfig.new().to_json()
DOC: dict[str, Any] = json.loads(VALID)


def usable(config: RepoConfig) -> None:
    """The config is put to work as the repository's writers put it."""
    Chunker(config.chunker)
    zstandard.ZstdCompressor(level=config.compression_level)
    assert 1024 <= config.pack_size <= 1 << 30
    assert isinstance(config.id, str)
    assert isinstance(config.created, str)


@fuzz
@given(st.binary(max_size=300) | mutated(VALID) | json_mutated(DOC))
def test_fuzz_config(raw: bytes) -> None:
    config = decoded_or_damage(lambda: RepoConfig.from_json(raw))
    if config is not None:
        usable(config)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"chunker": {**DOC["chunker"], "min_size": 10}}, "min_size is 10"),
        ({"chunker": {**DOC["chunker"], "seed": -1}}, "seed is -1"),
        ({"chunker": {**DOC["chunker"], "avg_size": "1M"}}, "avg_size is '1M'"),
        ({"chunker": {**DOC["chunker"], "extra": 1}}, "chunker is"),
        ({"compression": {"algorithm": "zstd", "level": 99}}, "level is 99"),
        ({"pack_size": 0}, "pack_size is 0"),
        ({"cipher": "rot13"}, "unknown cipher 'rot13'"),
        ({"id": 5}, "id or created is not text"),
    ],
)
def test_parameters_no_writer_accepts_are_damage(change: dict[str, Any], problem: str) -> None:
    with pytest.raises(IntegrityError, match="the config object is malformed") as caught:
        RepoConfig.from_json(json.dumps({**DOC, **change}).encode())
    assert problem in caught.value.message


def test_an_unknown_version_says_which() -> None:
    with pytest.raises(IntegrityError, match="repository format version 2 is not supported"):
        RepoConfig.from_json(json.dumps({**DOC, "version": 2}).encode())
