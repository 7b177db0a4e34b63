"""Today's sizes, for predictions scaled from the drills: per PostgreSQL system, the data
of its newest base backup chain and the WAL archived since that chain began (whole
segments, the one being written counted whole: an upper bound), read from the first of
its locations that answers. Read after the declaration's first message, so telling
people never waits on a repository."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from drplan.errors import DrplanError
from drplan.plan.model import Plan, PostgresSystem
from drplan.recovery.postgres import choose_chain
from drplan.recovery.recover import locations_of
from drplan.repo.repository import Repository
from drplan.sources.postgres.wal_archive import (
    DEFAULT_SEGMENT_SIZE,
    SEGMENT,
    WalArchive,
    lsn_segment,
    segment_number,
)
from drplan.storage import StorageError

OpenRepo = Callable[[str], AbstractContextManager[Repository]]


def sizes(plan: Plan, systems: list[str], open_repo: OpenRepo
          ) -> tuple[dict[str, dict[str, Any]], list[str]]:  # fmt: skip
    """The sizes of each PostgreSQL system among ``systems``, and why a system could not
    be sized (one line each)."""
    found: dict[str, dict[str, Any]] = {}
    unsized: list[str] = []
    for name in systems:
        if not isinstance(plan.systems.get(name), PostgresSystem):
            continue
        why = "no location of it"
        for ref in locations_of(plan, name):
            try:
                with open_repo(ref) as repo:
                    found[name] = {**_sized(repo, name), "location": ref}
                break
            except (DrplanError, StorageError) as exc:
                why = f"{ref}: {exc.message if isinstance(exc, DrplanError) else exc}"
        if name not in found:
            unsized.append(f"{name} not sized ({why}): its prediction is the drills' as measured")
    return found, unsized


def _sized(repo: Repository, system: str) -> dict[str, Any]:
    chain = choose_chain(repo, system, None)
    size = int(chain[-1].source.get("wal_segment_size") or DEFAULT_SEGMENT_SIZE)
    first = lsn_segment(str(chain[-1].source.get("start_lsn", "0/0")), size)
    segments = {w.file.removesuffix(".partial")[:24] for w in WalArchive(repo, system).files()}
    wal = sum(size for s in segments if SEGMENT.match(s) and segment_number(s, size) >= first)
    return {"restored_bytes": sum(s.summary.bytes_total for s in chain), "wal_bytes": wal}
