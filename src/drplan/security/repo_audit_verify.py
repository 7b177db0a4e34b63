"""Verifying the repository audit trails: each location's chain on its own (damaged
entries, gaps, replaced entries, forks), then against what is kept outside it (this host's
anchors, the witnesses in the other locations' entries, entries this host still owes).

Findings are values; ``drplan audit verify`` renders them. The rules are those of
docs/repository-format.md ("Verifying").
"""

from __future__ import annotations

from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from drplan import clock
from drplan.errors import DrplanError
from drplan.repo.repository import Repository
from drplan.security.repo_audit import PREFIX, Entry, Ref, instant, list_refs, open_entry, where
from drplan.security.repo_audit_state import AuditState
from drplan.storage import Storage

READERS = 8  # entries read at once (one GET each on S3)
NOT_ERRORS = ("fork", "branch")


@dataclass(frozen=True)
class Finding:
    kind: str  # damaged, gap, replaced, truncated, unwritten; fork, branch (not errors)
    message: str

    @property
    def error(self) -> bool:
        return self.kind not in NOT_ERRORS

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "message": self.message, "error": self.error}


@dataclass
class Trail:
    """One location's trail as read."""

    label: str
    url: str
    repo_id: str
    storage: Storage
    entries: list[Entry] = field(default_factory=list)  # those that open, by ref
    refs: set[Ref] = field(default_factory=set)  # every entry listed, opening or not
    findings: list[Finding] = field(default_factory=list)

    @property
    def top(self) -> int:
        return max((r.seq for r in self.refs), default=0)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.error]

    def at(self, seq: int) -> list[Entry]:
        return [e for e in self.entries if e.ref.seq == seq]

    def as_dict(self) -> dict[str, Any]:
        times = [e.time for e in self.entries]
        return {
            "location": self.label, "url": self.url, "entries": len(self.refs),
            "first": instant(min(times)) if times else None,
            "last": instant(max(times)) if times else None,
            "top": self.top, "ok": not self.errors,
            "findings": [f.as_dict() for f in self.findings],
        }  # fmt: skip


def read_trail(repo: Repository, label: str) -> Trail:
    """Every entry of ``repo``'s location, each checked, and the chain's shape."""
    trail = Trail(label, where(repo.storage), repo.config.id, repo.storage)
    refs, foreign = list_refs(repo.storage)
    trail.refs = set(refs)
    trail.findings += [
        Finding("damaged", f"{name} is not an audit entry's name") for name in foreign
    ]

    def read(ref: Ref) -> Entry | Finding:
        try:
            return open_entry(repo, ref, repo.storage.read(PREFIX + ref.name))
        except DrplanError as exc:
            return Finding("damaged", f"entry {ref.short}: {exc.message}")

    with ThreadPoolExecutor(READERS, thread_name_prefix="drplan-audit") as pool:
        for got in pool.map(read, sorted(refs)):
            if isinstance(got, Entry):
                trail.entries.append(got)
            else:
                trail.findings.append(got)
    _out_of_order(trail)
    _gaps(trail)
    _links(trail)
    return trail


def _out_of_order(trail: Trail) -> None:
    """An entry's seq is one more than the highest it follows: anything else was forged
    by a key holder or written by a broken writer, and its place in the chain is a lie."""
    kept = []
    for entry in trail.entries:
        expected = max((r.seq for r in entry.prev), default=0) + 1
        if entry.ref.seq != expected:
            trail.findings.append(Finding("damaged", f"entry {entry.ref.short} follows entries"
                                          f" up to {expected - 1}, not {entry.ref.seq - 1}"))  # fmt: skip
        else:
            kept.append(entry)
    trail.entries = kept


def _gaps(trail: Trail) -> None:
    present = {r.seq for r in trail.refs}
    missing = [seq for seq in range(1, trail.top + 1) if seq not in present]
    for first, last in _ranges(missing):
        what = f"entry {first} is" if first == last else f"entries {first} to {last} are"
        trail.findings.append(
            Finding("gap", f"{what} missing{_between(trail, first - 1, last + 1)}")
        )


def _between(trail: Trail, before: int, after: int) -> str:
    def when(seq: int) -> str | None:
        times = [e.time for e in trail.at(seq)]
        return f"entry {seq} of {clock.rfc3339(min(times))}" if times else None

    earlier, later = when(before), when(after)
    if earlier and later:
        return f", between {earlier} and {later}"
    return f", after {earlier}" if earlier else f", before {later}" if later else ""


def _ranges(numbers: list[int]) -> list[tuple[int, int]]:
    ranges: list[tuple[int, int]] = []
    for n in numbers:
        if ranges and ranges[-1][1] == n - 1:
            ranges[-1] = (ranges[-1][0], n)
        else:
            ranges.append((n, n))
    return ranges


def _links(trail: Trail) -> None:
    """Replaced entries (a link to an entry whose seq is there under another hash), and
    forks: joined, the newest, or a branch nothing follows (removable unseen)."""
    present = {r.seq for r in trail.refs}
    followed = set()
    for entry in trail.entries:
        for ref in entry.prev:
            followed.add(ref)
            if ref not in trail.refs and ref.seq in present:
                trail.findings.append(Finding(
                    "replaced", f"entry {entry.ref.short} follows entry {ref.short}, which is not"
                    f" there (removed, or replaced: entry {ref.seq} there is another)"))  # fmt: skip
    by_seq: dict[int, list[Ref]] = defaultdict(list)
    for ref in trail.refs:
        by_seq[ref.seq].append(ref)
    for seq, refs in sorted(by_seq.items()):
        if len(refs) < 2:
            continue
        whom = "; ".join(e.what for e in trail.at(seq))
        if seq == trail.top:
            state = "not joined yet: the newest"
        elif all(r in followed for r in refs):
            state = f"joined at entry {seq + 1}"
        else:
            state = "not joined"
            for ref in refs:
                if ref not in followed:
                    trail.findings.append(Finding(
                        "branch", f"entry {ref.short} is on a branch no later entry follows (its"
                        " writer was slower than the next): it could be removed unseen"))  # fmt: skip
        trail.findings.append(Finding("fork", f"fork at entry {seq}: {len(refs)} entries"
                                      f" ({whom}), {state}"))  # fmt: skip


@dataclass(frozen=True)
class Claim:
    """Someone's word that a location's trail held an entry: an anchor, a witness."""

    by: str
    ref: Ref
    when: datetime | None


def cross_check(trails: list[Trail], state: AuditState | None = None) -> None:
    """Each trail against this host's anchor, the witnesses of the others, and the
    entries this host owes it; then the anchors of trails found whole move to their heads."""
    state = state or AuditState.default()
    for trail in trails:
        claims = []
        anchor = state.anchor(trail.repo_id, trail.url)
        if anchor is not None:
            claims.append(Claim("this host", anchor, None))
        _claims(trail, claims + _witnessed(trail, trails))
        owed = state.pending(trail.repo_id, trail.url)
        if owed:
            oldest = owed[0].fields
            trail.findings.append(Finding(
                "unwritten", f"{len(owed)} entr{'y' if len(owed) == 1 else 'ies'} of this host"
                f" could not be written here yet (the oldest: {oldest['operation']} of"
                f" {oldest['time']}); the next operation from this host on it writes them"))  # fmt: skip
    for trail in trails:
        if not trail.errors and trail.entries:
            newest = max(trail.entries, key=lambda e: e.ref)
            state.set_anchor(trail.repo_id, trail.url, newest.ref, newest.fields["time"])


def _witnessed(trail: Trail, trails: list[Trail]) -> list[Claim]:
    """What the other trails' entries say they saw of ``trail``."""
    claims = []
    for other in (t for t in trails if t is not trail):
        for entry in other.entries:
            for seen in entry.fields["witness"]:
                ref = Ref.parse(seen["head"])
                if seen["url"] == trail.url and ref is not None:
                    claims.append(Claim(f"{other.label}'s entry {entry.ref.seq}", ref, entry.time))
    return claims


def _claims(trail: Trail, claims: list[Claim]) -> None:
    """The strongest claim the trail fails (the highest seq), cut or replaced."""
    present = {r.seq for r in trail.refs}
    failed = [c for c in claims if c.ref not in trail.refs]
    if failed:
        # Written since the trail was listed (an operation running while this verifies,
        # whose entry in another location, read later, witnesses it)? Listed again.
        now = set(list_refs(trail.storage)[0])
        failed = [c for c in failed if c.ref not in now]
    cut = [c for c in failed if c.ref.seq > trail.top]
    replaced = [c for c in failed if c.ref.seq <= trail.top and c.ref.seq in present]
    if cut:
        worst = max(cut, key=lambda c: c.ref.seq)
        seen = f" on {clock.rfc3339(worst.when)}" if worst.when else ""
        trail.findings.append(Finding(
            "truncated", f"{worst.by} saw entry {worst.ref.short} here{seen}, but the trail"
            f" ends at entry {trail.top}: its newest entries were removed"))  # fmt: skip
    if replaced:
        worst = max(replaced, key=lambda c: c.ref.seq)
        trail.findings.append(Finding(
            "replaced", f"{worst.by} saw entry {worst.ref.short} here, but the entry"
            f" {worst.ref.seq} there is another"))  # fmt: skip
