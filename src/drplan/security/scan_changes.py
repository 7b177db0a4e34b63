"""What changed between two snapshots of a files system, as `drplan scan` counts it:
deletions, renames to NAME.EXT, rewrites, files that now look encrypted, ransomware
names. The changed paths come from ``repo.browse.diff_snapshots``; only their nodes
and the first stored chunk of each new or rewritten file (and of its previous version)
are read.
"""

from __future__ import annotations

import os
import statistics
from dataclasses import dataclass, field

from drplan.repo.browse import diff_snapshots, walk
from drplan.repo.repository import Repository
from drplan.repo.snapshot import Snapshot
from drplan.repo.tree import Node
from drplan.security.scan_signals import (
    MIN_JUDGED_BYTES,
    SAMPLE_BYTES,
    clearly_lower,
    entropy,
    extension,
    looks_encrypted,
    ransom_extension,
    ransom_note,
    renamed_from,
)

# Files whose content is sampled per comparison; past it, an even spread of them (by
# path) is, and the encrypted count is scaled up. Bounds a scan's reads at about
# 2 * MAX_SAMPLED first chunks per snapshot, whatever the size of the change.
MAX_SAMPLED = 2000
EXAMPLES = 10  # paths kept per signal as evidence
_DIR_CACHE = 4096  # directory listings kept by tree id (trees never change)
_TYPICAL_KEPT = 50  # entropies remembered per extension


@dataclass
class Measured:
    """The raw signals of one snapshot against an earlier one (or alone: ``before`` None)."""

    files_before: int
    files: int
    deleted: list[str] = field(default_factory=list)
    renamed: list[str] = field(default_factory=list)  # the new paths
    rewritten: list[str] = field(default_factory=list)
    encrypted: list[str] = field(default_factory=list)
    encrypted_estimate: float = 0.0  # scaled up when only part of the candidates was read
    ransom_named: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    sampled: int = 0
    too_small: int = 0
    alone: bool = False  # nothing before it: only names were judged
    # (extension, entropy) of new content that did not count as encrypted: the extension's
    # typical entropy, remembered once the snapshot is judged clean.
    fresh: list[tuple[str, float]] = field(default_factory=list)
    # Every new or rewritten file (all files, alone) by path: what `--yara` reads.
    changed: dict[str, Node] = field(default_factory=dict)

    def values(self) -> dict[str, tuple[float | None, int, list[str]]]:
        """Each signal's (value, count, examples): shares of the files before, notes a count."""
        base = max(self.files_before, 1)

        def share(
            paths: list[str], count: float | None = None
        ) -> tuple[float | None, int, list[str]]:
            if self.alone:
                return None, 0, []
            n = len(paths) if count is None else count
            return n / base, len(paths), sorted(paths)[:EXAMPLES]

        named = len(self.ransom_named) / max(self.files if self.alone else base, 1)
        return {
            "deleted": share(self.deleted),
            "renamed": share(self.renamed),
            "rewritten": share(self.rewritten),
            "encrypted": share(self.encrypted, self.encrypted_estimate),
            "ransom_named": (named, len(self.ransom_named), sorted(self.ransom_named)[:EXAMPLES]),
            "notes": (float(len(self.notes)), len(self.notes), sorted(self.notes)[:EXAMPLES]),
        }


class ContentReader:
    """Nodes by path and sampled entropies, each directory and first chunk read once per
    scan (content-addressed: a blob id always holds the same bytes)."""

    def __init__(self, repo: Repository) -> None:
        self.repo = repo
        self._dirs: dict[bytes, dict[bytes, Node]] = {}
        self._entropy: dict[bytes, tuple[float, int]] = {}
        self.typical: dict[str, list[float]] = {}

    def node(self, tree: bytes, path: str) -> Node | None:
        node: Node | None = None
        current: bytes | None = tree
        for part in path.strip("/").split("/"):
            if current is None:
                return None
            node = self._listing(current).get(os.fsencode(part))
            if node is None:
                return None
            current = node.subtree
        return node

    def _listing(self, tree: bytes) -> dict[bytes, Node]:
        found = self._dirs.get(tree)
        if found is None:
            if len(self._dirs) >= _DIR_CACHE:
                self._dirs.pop(next(iter(self._dirs)))
            found = self._dirs[tree] = {n.name: n for n in self.repo.load_tree(tree)}
        return found

    def sample(self, node: Node) -> tuple[float, int] | None:
        """(entropy, bytes measured) of the start of the file's first chunk; None for a
        file too small to judge."""
        if node.size < MIN_JUDGED_BYTES or not node.content:
            return None
        first = node.content[0]
        if first not in self._entropy:
            data = self.repo.read_blob(first)[:SAMPLE_BYTES]
            self._entropy[first] = (entropy(data), len(data))
        bits, length = self._entropy[first]
        return None if length < MIN_JUDGED_BYTES else (bits, length)

    def remember(self, ext: str, bits: float) -> None:
        kept = self.typical.setdefault(ext, [])
        kept.append(bits)
        del kept[:-_TYPICAL_KEPT]

    def typical_of(self, ext: str) -> float | None:
        kept = self.typical.get(ext)
        return statistics.median(kept) if kept else None


def alone(repo: Repository, snapshot: Snapshot) -> Measured:
    """A snapshot with nothing before it: its names only (every file is new)."""
    files = [(p, n) for p, n in walk(repo, snapshot.tree) if n.type == "file"]
    measured = Measured(files_before=0, files=len(files), alone=True)
    measured.notes = [p for p, _ in files if ransom_note(p)]
    measured.ransom_named = [p for p, _ in files if ransom_extension(p)]
    measured.changed = dict(files)
    return measured


def measure(reader: ContentReader, before: Snapshot, after: Snapshot) -> Measured:
    """``after`` against ``before``: see the module docstring."""
    repo = reader.repo
    changes = list(diff_snapshots(repo, before.tree, after.tree))

    def files(change: str, tree: bytes) -> dict[str, Node]:
        nodes = {p: reader.node(tree, p) for c, p in changes if c == change}
        return {p: n for p, n in nodes.items() if n is not None and n.type == "file"}

    added, removed = files("+", after.tree), files("-", before.tree)
    rewritten = {
        p: (old, new)
        for c, p in changes
        if c == "M"
        and (old := reader.node(before.tree, p)) is not None
        and (new := reader.node(after.tree, p)) is not None
        and old.type == new.type == "file"
    }
    gone = frozenset(removed)
    renames: dict[str, str] = {}  # new path -> old path
    taken: set[str] = set()
    for path in added:
        old_path = renamed_from(path, gone)
        if old_path is not None and old_path not in taken:
            renames[path] = old_path
            taken.add(old_path)
    measured = Measured(
        files_before=before.summary.files,
        files=after.summary.files,
        deleted=[p for p in removed if p not in taken],
        renamed=list(renames),
        rewritten=list(rewritten),
        ransom_named=[p for p in added if ransom_extension(p)],
        notes=[p for p in added if ransom_note(p)],
        changed={**added, **{p: new for p, (_, new) in rewritten.items()}},
    )
    # Held against their own previous version first: those samples also teach the
    # extensions' typical entropy that brand-new files are held against.
    candidates: list[tuple[str, Node, Node | None, str]] = [
        *((p, new, old, extension(p)) for p, (old, new) in rewritten.items()),
        *((p, added[p], removed[o], extension(o)) for p, o in renames.items()),
        *((p, n, None, extension(p)) for p, n in added.items() if p not in renames),
    ]
    chosen = _spread(candidates)
    for path, node, old, ext in chosen:
        _judge_content(reader, measured, path, node, old, ext)
    scale = len(candidates) / len(chosen) if chosen else 1.0
    measured.encrypted_estimate = len(measured.encrypted) * scale
    return measured


def _spread(
    candidates: list[tuple[str, Node, Node | None, str]],
) -> list[tuple[str, Node, Node | None, str]]:
    """At most MAX_SAMPLED candidates, evenly spread: the order stays rewrites, renames, new."""
    if len(candidates) <= MAX_SAMPLED:
        return candidates
    step = len(candidates) / MAX_SAMPLED
    return [candidates[int(i * step)] for i in range(MAX_SAMPLED)]


def _judge_content(
    reader: ContentReader, measured: Measured, path: str, node: Node, old: Node | None, ext: str
) -> None:
    new = reader.sample(node)
    if new is None:
        measured.too_small += 1
        return
    measured.sampled += 1
    if not looks_encrypted(*new):
        measured.fresh.append((ext, new[0]))
        return
    # The previous version is read only now: most new content does not look encrypted.
    before = reader.sample(old) if old is not None else None
    if before is not None:
        reader.remember(ext, before[0])
        lower = clearly_lower(*before)
    else:
        # No previous version (or one too small): the extension's typical file, when the
        # scan has seen any; an extension never seen cannot be judged by content.
        typical = reader.typical_of(ext)
        lower = typical is not None and clearly_lower(typical, new[1])
    if lower:
        measured.encrypted.append(path)
    else:
        measured.fresh.append((ext, new[0]))
