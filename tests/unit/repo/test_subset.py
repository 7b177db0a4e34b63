"""`--read-data-subset` values, and the parts n/t of the ring of packs they name."""

from __future__ import annotations

import random

import pytest

from drplan.errors import UsageError
from drplan.repo.subset import Amount, Part, Share, budget_of, parse_subset, part_of


def ring_of(sizes: list[int], seed: int = 7) -> list[tuple[str, int]]:
    rng = random.Random(seed)
    return sorted((f"{rng.getrandbits(256):064x}", size) for size in sizes)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10%", Share(10.0)),
        ("2.5%", Share(2.5)),
        ("100%", Share(100.0)),
        ("1/3", Part(1, 3)),
        ("3/3", Part(3, 3)),
        ("500M", Amount(500 * 1024**2)),
        ("500MiB", Amount(500 * 1024**2)),
        ("2G", Amount(2 * 1024**3)),
        ("1.5g", Amount(int(1.5 * 1024**3))),
        ("64K", Amount(64 * 1024)),
        ("1T", Amount(1024**4)),
    ],
)
def test_the_forms_users_know(text: str, expected: object) -> None:
    assert parse_subset(text) == expected


@pytest.mark.parametrize(
    "text", ["0%", "101%", "-5%", "nan%", "0/3", "4/3", "1/0", "a/b", "abc", "0M", "", "5", "2X"]
)
def test_nonsense_is_a_usage_error(text: str) -> None:
    with pytest.raises(UsageError) as raised:
        parse_subset(text)
    assert repr(text) in raised.value.message
    assert "n/t" in raised.value.message
    assert "%" in raised.value.message


def test_parts_cover_every_pack_and_none_is_empty() -> None:
    ring = ring_of([16 << 20] * 40 + [300] * 7)
    for t in (1, 2, 3, 5, 40, 47, 100):
        parts = [part_of(ring, Part(n, t)) for n in range(1, t + 1)]
        assert all(parts), t
        assert {p for part in parts for p in part} == {pid for pid, _ in ring}, t


def test_parts_are_balanced_by_bytes() -> None:
    rng = random.Random(3)
    ring = ring_of([rng.randint(1 << 20, 16 << 20) for _ in range(400)])
    size = dict(ring)
    total = sum(size.values())
    for n in range(1, 6):
        share = sum(size[p] for p in part_of(ring, Part(n, 5))) / total
        assert 0.17 < share < 0.23, (n, share)


def test_more_parts_than_packs_still_read_one_pack_each() -> None:
    ring = ring_of([1000, 100_000, 1003])
    parts = [part_of(ring, Part(n, 10)) for n in range(1, 11)]
    assert all(len(part) >= 1 for part in parts)
    assert {p for part in parts for p in part} == {pid for pid, _ in ring}


def test_an_empty_repository_has_empty_parts() -> None:
    assert part_of([], Part(1, 3)) == []


def test_budgets() -> None:
    assert budget_of(Share(10.0), 1000) == 100
    assert budget_of(Share(0.01), 1000) == 1  # never nothing
    assert budget_of(Amount(500), 1000) == 500
