"""A short sample of the torture suite (``make torture`` runs it in full): a few trials
of every kind, from a fixed seed, so a change that breaks one fails ``make test``."""

from __future__ import annotations

from pathlib import Path

import pytest

from testbed.seaweedfs import SeaweedFS
from torture.run import SCALES, run_kind
from torture.world import World

SEED = 20261207


@pytest.mark.parametrize(("kind", "where"), sorted(SCALES["sample"]), ids=str)
def test_a_sample_of_trials_holds(
    kind: str, where: str, tmp_path: Path, seaweedfs: SeaweedFS
) -> None:
    world = World(tmp_path, seaweedfs)
    result = run_kind(world, kind, where, SCALES["sample"][(kind, where)], SEED, say=print)
    assert result.trials == SCALES["sample"][(kind, where)]
    assert not result.failures, "\n".join(
        f"trial {f.trial}, seed {f.seed} (python -m torture --only '{kind}' --where {where}"
        f" --trial-seed {f.seed}): {f.message}"
        for f in result.failures
    )
