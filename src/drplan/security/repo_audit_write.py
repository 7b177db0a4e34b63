"""Appending an operation's entries to the audit trails of the locations it used.

Each location's head is found from names alone (a listing from the block of this host's
anchor on), every location's before any is written, so that each entry can witness the
others' heads: the first location's entry those before the operation, each later one
the entries just written. Entries this host failed to write to a location earlier go
first, ``late``. A write that fails is a warning and the entry is kept for the next time
(repo_audit_state): the operation it records has happened either way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from drplan.errors import DrplanError
from drplan.repo.config import RepoConfig
from drplan.repo.objects import open_object
from drplan.repo.repository import CONFIG, Repository
from drplan.security.repo_audit import (
    BLOCK,
    PREFIX,
    Ref,
    block_prefix,
    list_refs,
    seal_entry,
    where,
)
from drplan.security.repo_audit_state import AuditState
from drplan.storage import Storage

Warn = Callable[[str], None]


@dataclass
class Target:
    """A location the operation used, and what it did there."""

    label: str
    storage: Storage  # below the recording: entries are not the operation's work
    started: str
    touched: dict[str, Any]

    @property
    def url(self) -> str:
        return where(self.storage)


def listing(storage: Storage, anchor: Ref | None) -> list[Ref]:
    """The entries to find the head among: from the anchor's block of 1000 on, a block
    at a time while one holds entries; everything when there is no anchor, or nothing is
    left in its block (the trail was cut below it)."""
    if anchor is None:
        return list_refs(storage)[0]
    found: list[Ref] = []
    block = anchor.seq
    while refs := list_refs(storage, block_prefix(block))[0]:
        found += refs
        block += BLOCK
    return found or list_refs(storage)[0]


@dataclass
class Chain:
    """One location's trail as this process appends to it."""

    target: Target
    anchor: Ref | None
    listed: set[Ref] = field(default_factory=set)
    head: list[Ref] = field(default_factory=list)
    cut: str | None = None  # why the anchor is not followed as it should be
    unlisted: DrplanError | None = None  # why the head could not be found

    def find_head(self) -> None:
        self.listed = set(listing(self.target.storage, self.anchor))
        top = max((r.seq for r in self.listed), default=0)
        self.head = sorted(r for r in self.listed if r.seq == top)
        if self.anchor is not None and self.anchor not in self.listed:
            ends = f"it ends at entry {top}" if top < self.anchor.seq else "another is there"
            self.cut = (
                f"the audit trail of {self.target.label} lacks entry {self.anchor.short} that"
                f" this host wrote or verified there ({ends}): entries were removed; run"
                " `drplan audit verify`"
            )
            # Followed all the same: the cut becomes a gap that every verifier sees.
            self.head.append(self.anchor)

    def write(self, repo: Repository, fields: dict[str, Any]) -> Ref:
        seq = max((r.seq for r in self.head), default=0) + 1
        body = {**fields, "seq": seq, "prev": [r.name for r in sorted(self.head)]}
        ref, stored = seal_entry(repo, body)
        self.target.storage.write(PREFIX + ref.name, stored)
        self.head = [ref]
        return ref

    @property
    def newest(self) -> Ref | None:
        return max(self.head, default=None)


def write_entries(
    repo: Repository,
    targets: list[Target],
    common: dict[str, Any],
    warn: Warn,
    state: AuditState | None = None,
    *,
    defer: bool = False,
) -> None:
    """Write the operation's entry (``common`` and each location's own fields) to each of
    ``targets`` that holds ``repo``'s repository; never raises for one location.

    ``defer``: the operation failed because a location did not answer; trying its entries
    now would wait as long again, to fail the same way, and add a second message to the
    one that named the location. They are kept for the next operation, unannounced."""
    state = state or AuditState.default()
    repo_id = repo.config.id
    if defer:
        for target in targets:
            state.add_pending(repo_id, target.url, _late(_fields(common, target)))
        return
    chains = []
    for i, target in enumerate(targets):
        if i > 0 and not _same_repository(repo, target.storage):
            continue  # a copy or fan-out that never made it a replica: not ours to write
        chains.append(Chain(target, state.anchor(repo_id, target.url)))
    for chain in chains:
        try:
            chain.find_head()
        except DrplanError as exc:
            chain.unlisted = exc  # unreachable now: not written below, and told so
    for chain in chains:
        target = chain.target
        url = target.url
        fields = _fields(common, target)
        try:
            if chain.unlisted is not None:
                raise chain.unlisted
            if chain.cut:
                warn(chain.cut)
            for owed in state.pending(repo_id, url):
                state.set_anchor(repo_id, url, chain.write(repo, owed.fields), owed.fields["time"])
                owed.path.unlink()
            fields["witness"] = _witness(chains, chain)
            state.set_anchor(repo_id, url, chain.write(repo, fields), fields["time"])
        except (DrplanError, OSError) as exc:
            kept = state.add_pending(repo_id, url, _late(fields))
            then = "it is kept on this host and written with the next one there"
            if not kept:
                then = "this host keeps too many for it already: this one is lost"
            warn(f"the audit entry of this {common['operation']} could not be written to"
                 f" {target.label}: {exc}; {then}")  # fmt: skip


def _fields(common: dict[str, Any], target: Target) -> dict[str, Any]:
    return {**common, "location": target.label, "url": target.url,
            "started": target.started, "touched": target.touched}  # fmt: skip


def _late(fields: dict[str, Any]) -> dict[str, Any]:
    """An entry kept to be written later: what it witnessed will be old news by then."""
    return {**fields, "late": True, "witness": []}


def _witness(chains: list[Chain], chain: Chain) -> list[dict[str, str]]:
    """The heads of the operation's other locations, as far as this process knows them."""
    seen = []
    for other in chains:
        newest = other.newest
        if other is not chain and newest is not None:
            seen.append({"location": other.target.label, "url": other.target.url,
                         "head": newest.name})  # fmt: skip
    return seen


def _same_repository(repo: Repository, storage: Storage) -> bool:
    """Whether ``storage`` holds ``repo``'s repository: its config opens with the key."""
    try:
        body = open_object(repo.key, repo.cipher, "config", storage.read(CONFIG), CONFIG)
        return RepoConfig.from_json(body).id == repo.config.id
    except DrplanError:
        return False
