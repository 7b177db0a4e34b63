"""Restoring from an archive location: which packs must be thawed first, and asking for it.

Packs of file data in an archive storage class (S3 GLACIER, DEEP_ARCHIVE) cannot be
read until the service makes a temporary readable copy (a thaw, hours to days).
Listings, snapshots and the index stay in the readable class, so a restore can work
out exactly which packs it needs before reading any, and say so, instead of failing
halfway through.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from drplan.errors import ThawNeededError
from drplan.recovery.files import packs_needed
from drplan.repo.repository import Repository, pack_name
from drplan.repo.snapshot import Snapshot

HEAD_WORKERS = 8
READABLE = ("hot", "thawed")


@dataclass
class ThawReport:
    needed: int = 0  # packs the restore reads
    cold: list[str] = field(default_factory=list)  # archived, no thaw asked for
    thawing: list[str] = field(default_factory=list)  # thaw in progress
    requested: list[str] = field(default_factory=list)  # thaw asked for just now


def check_thawed(
    repo: Repository,
    snapshot: Snapshot,
    includes: list[str],
    *,
    request: bool = False,
    days: int = 7,
    tier: str = "Standard",
) -> ThawReport:
    """Raise ThawNeededError unless every pack the restore needs is readable now; with
    ``request``, ask for the cold ones to be thawed first."""
    packs = sorted(packs_needed(repo, snapshot, includes))
    with ThreadPoolExecutor(HEAD_WORKERS, thread_name_prefix="drplan-thaw") as pool:
        states = dict(
            zip(
                packs, pool.map(lambda p: repo.storage.thaw_state(pack_name(p)), packs), strict=True
            )
        )
    report = ThawReport(len(packs))
    report.cold = [p for p, s in states.items() if s == "cold"]
    report.thawing = [p for p, s in states.items() if s == "thawing"]
    if not report.cold and not report.thawing:
        return report
    if request:
        for pack_id in report.cold:
            repo.storage.request_thaw(pack_name(pack_id), days, tier)
        report.requested, report.cold = report.cold, []
    waiting = len(report.thawing) + len(report.requested) + len(report.cold)
    size = sum(repo.index.packs[p].size for p in [*report.cold, *report.thawing, *report.requested])
    asked = f"; a thaw was just requested for {len(report.requested)}" if report.requested else ""
    raise ThawNeededError(
        f"{waiting} of {len(packs)} packs this restore needs ({size / 2**20:.1f} MiB) are archived"
        f" in {repo.storage.url} and not readable yet ({len(report.thawing)} thawing{asked})",
        hint="run the restore again once they are thawed"
        if report.requested or not report.cold
        else "ask for a thaw with --request-thaw, then run the restore again once it is done",
    )
