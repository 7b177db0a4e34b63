"""The last clean point: every snapshot of a files system judged, oldest first, against
the one before it and against the system's own history, for the signs of ransomware.

Verdicts are computed from the repository every time (nothing is cached across runs):
a cache could only ever be trusted less than the repository it came from. The rules
are in ``scan_signals`` and docs/security.md ("Finding the last clean point").

Two content checks may add to them (docs/security.md, "Scanners and YARA"): YARA rules
over what each snapshot brought, judged in the same pass (``scan_yara``), and an external
scanner over restored snapshots, run afterwards on the few worth its cost
(``scan_scanner``). Either can only make a verdict worse, never clear one: a scanner
that finds nothing in files the heuristics saw encrypted has not shown them clean.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from drplan.clock import rfc3339
from drplan.errors import DrplanError
from drplan.repo.repository import Repository
from drplan.repo.snapshot import Snapshot
from drplan.security.scan_changes import ContentReader, Measured, alone, measure
from drplan.security.scan_scanner import Scanner, ScannerResult, scan_snapshot
from drplan.security.scan_signals import (
    MIN_HISTORY,
    RULES,
    Judged,
    Verdict,
    judge_signal,
    verdict_of,
)
from drplan.security.scan_yara import YaraMatcher, YaraResult

_WORSE = {"clean": 0, "suspicious": 1, "compromised": 2}


@dataclass
class Judgement:
    """One snapshot's verdict and its evidence."""

    snapshot: Snapshot
    verdict: Verdict
    reasons: list[str] = field(default_factory=list)
    compared_with: str | None = None  # the snapshot id it was held against (None: nothing before)
    history: int = 0  # earlier clean comparisons its z-scores were held against
    signals: dict[str, Judged] = field(default_factory=dict)
    sampled: int = 0  # files whose content was read
    too_small: int = 0  # new or rewritten files too small to judge by content
    # Held against the last clean snapshot too (after a compromise): that comparison.
    against_last_clean: dict[str, Any] | None = None
    yara: YaraResult | None = None  # --yara: what it brought, matched
    scanner: ScannerResult | None = None  # --scanner: None when not scanned

    def worsen(self, verdict: Verdict, reasons: list[str]) -> None:
        """A content check's verdict: the worse of the two decides; reasons are kept."""
        if _WORSE.get(verdict, 0) > _WORSE.get(self.verdict, 0):
            self.verdict, self.reasons = verdict, reasons + self.reasons
        elif verdict != "clean":
            self.reasons = self.reasons + reasons

    def as_dict(self) -> dict[str, Any]:
        s = self.snapshot
        return {
            "id": s.id, "short_id": s.short_id, "time": rfc3339(s.time), "verdict": self.verdict,
            "reasons": self.reasons, "compared_with": self.compared_with,
            "history": self.history, "no_history": self.history < MIN_HISTORY,
            "sampled_files": self.sampled,
            "too_small_to_judge": self.too_small,
            "signals": {name: j.as_dict() for name, j in self.signals.items()},
            "against_last_clean": self.against_last_clean,
            "yara": None if self.yara is None else self.yara.as_dict(),
            "scanner": None if self.scanner is None else self.scanner.as_dict(),
        }  # fmt: skip


@dataclass
class ScanReport:
    system: str
    judgements: list[Judgement]
    # Snapshot objects that cannot be read at all: whose system they are is unknown.
    unreadable_objects: dict[str, str]

    @property
    def newest_judged(self) -> Judgement | None:
        judged = [j for j in self.judgements if j.verdict != "unknown"]
        return judged[-1] if judged else None


def scan_system(
    repo: Repository,
    system: str,
    tell: Callable[[str], None] = lambda _: None,
    yara: YaraMatcher | None = None,
) -> ScanReport:
    """Judge every files snapshot of ``system`` in ``repo``, oldest first (with ``yara``,
    what each brought matched against its rules too)."""
    snapshots, unreadable = repo.readable_snapshots()
    mine = [s for s in snapshots if s.system == system and s.source.get("kind") == "files"]
    reader = ContentReader(repo)
    history: dict[str, list[float]] = {rule.name: [] for rule in RULES}
    out: list[Judgement] = []
    previous: Snapshot | None = None  # the last snapshot that could be read
    last_clean: Snapshot | None = None
    compromised_since_clean = False
    for snapshot in mine:
        tell(f"scanning {snapshot.short_id} of {rfc3339(snapshot.time)}")
        try:
            judgement, measured = _judge(reader, previous, snapshot, history)
            if compromised_since_clean and last_clean is not None and last_clean is not previous:
                _hold_against(reader, last_clean, judgement, history)
            if yara is not None:
                judgement.yara = yara.judge(reader, snapshot, measured.changed)
                judgement.worsen(judgement.yara.verdict, judgement.yara.reasons())
        except DrplanError as exc:
            # A damaged tree or a missing pack: this one is unknown, the next is held
            # against the last snapshot that could be read.
            out.append(Judgement(snapshot, "unknown", [f"cannot be read: {exc.message}"]))
            continue
        out.append(judgement)
        previous = snapshot
        if judgement.verdict == "clean":
            # Only clean comparisons make the history, so an attack does not raise the
            # bar for the next one; and only clean content teaches typical entropies. A
            # snapshot judged alone measured its whole content, not a change: left out.
            for name, judged in judgement.signals.items():
                if judged.value is not None and judgement.compared_with is not None:
                    history[name].append(judged.value)
            for ext, bits in measured.fresh:
                reader.remember(ext, bits)
            last_clean, compromised_since_clean = snapshot, False
        elif judgement.verdict == "compromised":
            compromised_since_clean = True
    return ScanReport(system, out, unreadable)


def _judge(
    reader: ContentReader,
    before: Snapshot | None,
    after: Snapshot,
    history: dict[str, list[float]],
) -> tuple[Judgement, Measured]:
    measured = alone(reader.repo, after) if before is None else measure(reader, before, after)
    signals = _signals(measured, history)
    verdict, reasons = verdict_of(signals)
    judgement = Judgement(
        after,
        verdict,
        reasons,
        None if before is None else before.id,
        len(history["encrypted"]),
        signals,
        measured.sampled,
        measured.too_small,
    )
    return judgement, measured


def _signals(measured: Measured, history: dict[str, list[float]]) -> dict[str, Judged]:
    values = measured.values()
    return {
        rule.name: judge_signal(
            rule, *values[rule.name][:2], history[rule.name], values[rule.name][2]
        )
        for rule in RULES
    }


def _hold_against(
    reader: ContentReader,
    last_clean: Snapshot,
    judgement: Judgement,
    history: dict[str, list[float]],
) -> None:
    """After a compromise, a snapshot that changed little since the compromised one is
    still compromised while it differs from the last clean one as the attack did."""
    against, _ = _judge(reader, last_clean, judgement.snapshot, history)
    judgement.against_last_clean = {
        "snapshot": last_clean.id,
        "verdict": against.verdict,
        "reasons": against.reasons,
        "signals": {name: j.as_dict() for name, j in against.signals.items()},
    }
    if against.verdict == "compromised" and judgement.verdict != "compromised":
        judgement.verdict = "compromised"
        judgement.reasons = [
            f"still compromised against the last clean snapshot {last_clean.short_id}: "
            + "; ".join(against.reasons)
        ]


def scan_with(
    scanner: Scanner,
    repo: Repository,
    judgements: list[Judgement],
    every: bool,
    tell: Callable[[str], None] = lambda _: None,
) -> None:
    """Run ``scanner`` over restored snapshots and add what it finds to their verdicts.

    Each costs a full restore and a full read, so by default only those a finding would
    change the answer for: the newest readable one (what exit 25 is about), the suspicious
    ones, then the last clean point, again and again while the scanner finds something
    in it (the point then moves to an earlier snapshot). ``every``: every readable one.
    A scanner error stops the walk back: a scanner that cannot run would fail on each."""
    readable = [j for j in judgements if j.verdict != "unknown"]
    if every or not readable:
        queue = readable
    else:
        queue = [j for j in readable[:-1] if j.verdict == "suspicious"] + [readable[-1]]
    while queue:
        failed = False
        for judgement in queue:
            result = scan_snapshot(scanner, repo, judgement.snapshot, tell)
            judgement.scanner = result
            if result.outcome == "found":
                judgement.worsen("compromised", [result.reason()])
            elif result.outcome == "error":
                failed = True
                # Not called clean unless the scan asked for says so.
                if judgement.verdict == "clean":
                    judgement.verdict = "unknown"
                judgement.reasons = [*judgement.reasons, result.reason()]
        if every or failed:
            return
        point = last_clean_point(judgements).judgement
        queue = [point] if point is not None and point.scanner is None else []


@dataclass(frozen=True)
class CleanPoint:
    judgement: Judgement | None  # None: no clean snapshot before the compromise
    why: str


def last_clean_point(judgements: list[Judgement]) -> CleanPoint:
    """The newest clean snapshot before the latest run of snapshots that are not clean
    (a run holding a compromised one; else the run the newest snapshot ends, if it is
    not clean): the point before the trouble began, not a clean-looking one after it."""
    runs: list[list[int]] = []
    for i, j in enumerate(judgements):
        if j.verdict != "clean":
            if runs and runs[-1][-1] == i - 1:
                runs[-1].append(i)
            else:
                runs.append([i])
    bad = [r for r in runs if any(judgements[i].verdict == "compromised" for i in r)]
    trailing = [r for r in runs if r[-1] == len(judgements) - 1]
    run = bad[-1] if bad else (trailing[0] if trailing else None)
    if run is None:
        clean = [j for j in judgements if j.verdict == "clean"]
        if not clean:
            return CleanPoint(None, "no snapshot was judged clean")
        return CleanPoint(clean[-1], "the newest snapshot is clean")
    first = judgements[run[0]]
    began = f"{first.snapshot.short_id} of {rfc3339(first.snapshot.time)} ({first.verdict})"
    before = [j for j in judgements[: run[0]] if j.verdict == "clean"]
    if not before:
        return CleanPoint(None, f"no snapshot before {began} was judged clean")
    return CleanPoint(before[-1], f"the newest clean snapshot before {began}")
