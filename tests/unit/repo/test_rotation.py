"""The rotation of `--read-data-subset x%`: slices after a cursor kept between runs."""

from __future__ import annotations

import math
import os
import random
from pathlib import Path

import pytest

from drplan.repo.rotation import Rotation, load_rotation, rotation_file, save_rotation
from drplan.repo.subset import Share, budget_of

NOW = "2026-12-07T02:00:00Z"


def ring_of(sizes: list[int], seed: int = 11) -> list[tuple[str, int]]:
    rng = random.Random(seed)
    return sorted((f"{rng.getrandbits(256):064x}", size) for size in sizes)


def one_run(
    rotation: Rotation, ring: list[tuple[str, int]], percent: float
) -> tuple[list[str], bool]:
    """What a check does: choose the slice, read it (all sound here), record it."""
    rotation.start(ring, NOW)
    chosen = rotation.next_slice(ring, budget_of(Share(percent), sum(s for _, s in ring)))
    return chosen, rotation.record(chosen, set(chosen), ring, NOW)


@pytest.mark.parametrize(("percent", "seed"), [(5, 1), (10, 2), (33, 3), (2.5, 4), (100, 5)])
def test_ceil_100_over_x_runs_read_every_pack_once(percent: float, seed: int) -> None:
    rng = random.Random(seed)
    ring = ring_of([rng.randint(200, 16 << 20) for _ in range(rng.randint(1, 300))], seed)
    rotation = Rotation()
    seen: list[str] = []
    runs = math.ceil(100 / percent)
    for _ in range(runs):
        chosen, completed = one_run(rotation, ring, percent)
        assert chosen, "every run reads at least one pack"
        seen += chosen
        if completed:
            break
    else:
        pytest.fail(f"no full pass in {runs} runs")
    assert sorted(seen) == sorted(pid for pid, _ in ring)  # every pack, none twice
    assert rotation.passes == 1
    assert rotation.share_read(ring) == 0.0  # a new pass begins


def test_with_few_packs_every_run_reads_something_and_a_new_pass_follows() -> None:
    ring = ring_of([100_000, 1003, 98_000])
    rotation = Rotation()
    first_pass: list[str] = []
    completed = False
    while not completed:
        chosen, completed = one_run(rotation, ring, 10)
        assert chosen
        first_pass += chosen
        assert len(first_pass) <= len(ring)
    assert sorted(first_pass) == sorted(pid for pid, _ in ring)
    chosen, completed = one_run(rotation, ring, 10)
    assert chosen  # the next pass goes on round the ring
    assert not completed
    assert rotation.share_read(ring) > 0


def test_a_damaged_pack_holds_the_cursor_so_the_next_run_reads_it_again() -> None:
    ring = ring_of([1000] * 10)
    rotation = Rotation()
    rotation.start(ring, NOW)
    chosen = rotation.next_slice(ring, 3000)
    assert len(chosen) == 3
    damaged = chosen[1]
    rotation.record(chosen, {chosen[0], chosen[2]}, ring, NOW)
    assert rotation.share_read(ring) == pytest.approx(20.0)  # only what verified counts
    rotation.start(ring, NOW)
    assert rotation.next_slice(ring, 1000) == [damaged]


def test_packs_written_behind_the_cursor_are_read_before_the_pass_completes() -> None:
    ring = ring_of([1000] * 4)
    rotation = Rotation()
    for _ in range(3):
        one_run(rotation, ring, 25)
    newcomer = ("0" * 64, 1000)  # sorts before every pack: behind the cursor
    grown = sorted([*ring, newcomer])
    chosen, completed = one_run(rotation, grown, 20)
    assert not completed
    chosen, completed = one_run(rotation, grown, 20)
    assert chosen == [newcomer[0]]
    assert completed


def test_pruned_packs_leave_the_rotation() -> None:
    ring = ring_of([1000] * 4)
    rotation = Rotation()
    chosen, _ = one_run(rotation, ring, 50)
    rest = [(pid, size) for pid, size in ring if pid not in chosen]
    rotation.start(rest, NOW)  # prune removed what was read: a pass over what remains
    assert rotation.share_read(rest) == 0.0
    assert rotation.read == set()


def test_the_cursor_file_round_trips_atomically(tmp_path: Path) -> None:
    ring = ring_of([1000] * 5)
    rotation = Rotation()
    one_run(rotation, ring, 40)
    path = rotation_file(str(tmp_path / "state"), "repo-id", "/srv/backups")
    save_rotation(path, rotation)
    assert os.listdir(os.path.dirname(path)) == [os.path.basename(path)]  # no temp file left
    assert load_rotation(path) == rotation
    assert rotation_file(str(tmp_path / "state"), "repo-id", "s3://other/replica") != path


@pytest.mark.parametrize("content", [None, b"", b"{not json", b'{"cursor": 5}', b"\xff\xfe", b"[]"])
def test_a_missing_or_corrupt_cursor_file_starts_at_the_beginning(
    tmp_path: Path, content: bytes | None
) -> None:
    path = tmp_path / "rotation.json"
    if content is not None:
        path.write_bytes(content)
    assert load_rotation(str(path)) == Rotation()
