"""A backup and ``forget --prune`` started together on one repository, round after round.

Each may refuse to start while the other holds the repository (exit 11: a lock it
cannot share); anything else must succeed. After every round the repository checks
clean, the snapshots the policy keeps are all there, and a backup that said it was
saved restores exactly; at the end every snapshot is read back and restored.
"""

from __future__ import annotations

import random
from typing import Any

from torture.kill9 import PruneKill, _no_loss
from torture.world import TrialFailed

LOCKED = 11


class BackupBesidePrune(PruneKill):
    name = "backup beside prune"

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.label = f"backup beside forget --prune ({self.where})"

    def trial(self, rng: random.Random) -> bool:
        self.backup(self.repo_ref)
        before = self.ids(self.repo_ref)
        kept = sorted(before.values(), key=lambda s: s["time"])[-self.KEEP + 1 :]
        self.source.change()
        self.runs += 1
        tag = f"run{self.runs}"
        self.manifests[tag] = self.source.manifest()
        backup = ["backup", "files", str(self.source.root), "--repo", self.repo_ref, "--tag", tag]
        prune = ["forget", "--keep-last", str(self.KEEP), "--prune", "--repo", self.repo_ref]
        pair = [backup, prune] if rng.random() < 0.5 else [prune, backup]
        ran = self.world.together(*pair, stagger=rng.uniform(0, 0.6))
        for one in ran:
            one.expect(0, LOCKED)
        after = self.ids(self.repo_ref)
        _no_loss({s["id"]: s for s in kept}, after, "backup beside prune (a kept snapshot)")
        self.world.check(self.repo_ref)
        saved = [s for s in after.values() if tag in s["tags"]]
        backed_up = next(r for r in ran if r.argv[0] == "backup")
        if backed_up.code == 0 and not saved:
            raise TrialFailed("a backup said it was saved, and its snapshot is not there (lost)")
        for snapshot in saved:
            self.restores(self.repo_ref, snapshot)
        return any(r.code == LOCKED for r in ran)
