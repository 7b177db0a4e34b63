"""The signals `drplan scan` judges a snapshot by, and the rules that turn them into a
verdict: pure functions over numbers and names, so each rule is tested on its own.

docs/security.md ("Finding the last clean point") states every threshold below; keep
the two in step.
"""

from __future__ import annotations

import fnmatch
import math
import re
import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

Verdict = Literal["clean", "suspicious", "compromised", "unknown"]

# -- content ---------------------------------------------------------------------------------

# Entropy is measured on at most this much of a file's first stored chunk: enough for a
# stable estimate (the small-sample bias at 64 KiB is 0.003 bits/byte), cheap to compute.
SAMPLE_BYTES = 64 * 1024
# Below this, random bytes cannot be told from text: 256 random bytes measure about 7.2.
MIN_JUDGED_BYTES = 512
ENCRYPTED_BITS = 7.9  # bits per byte: what ciphertext (and good compression) measures
# "Clearly lower": a previous version (or the extension's typical file) at least this far
# below the encrypted threshold. Compressed formats sit at 7.9+ already and never qualify.
CLEARLY_LOWER = 0.5


def entropy(data: bytes) -> float:
    """Shannon entropy in bits per byte (0 for empty data, 8 for uniformly random)."""
    if not data:
        return 0.0
    total = len(data)
    return -sum(n / total * math.log2(n / total) for n in Counter(data).values())


def encrypted_threshold(length: int) -> float:
    """The entropy above which ``length`` bytes look encrypted: 7.9, lowered for short
    samples by the Miller-Madow bias of the estimate (random 1 KiB measures about 7.82),
    with a 0.1 margin for the spread."""
    bias = 255 / (2 * max(length, 1) * math.log(2))
    return min(ENCRYPTED_BITS, 8 - bias - 0.1)


def looks_encrypted(bits: float, length: int) -> bool:
    return length >= MIN_JUDGED_BYTES and bits >= encrypted_threshold(length)


def clearly_lower(bits: float, length: int) -> bool:
    """Whether a baseline of ``bits`` is low enough that reaching the encrypted threshold
    is a change of kind (text became ciphertext), not a compressed file rewritten."""
    return bits < encrypted_threshold(length) - CLEARLY_LOWER


# -- names -----------------------------------------------------------------------------------

# Extensions ransomware families append (lower case, without the dot). `.lock` is left out:
# lock files (yarn.lock, Cargo.lock) are everywhere. `.enc` is kept, and a system that
# routinely stores encrypted `.enc` files is protected by its own history (z-scores).
RANSOM_EXTENSIONS = frozenset(
    {
        "locked", "encrypted", "crypt", "crypted", "crypto", "enc", "lockbit", "ryk",
        "ryuk", "cerber", "cerber3", "locky", "zepto", "odin", "thor", "aesir", "wncry",
        "wnry", "wcry", "crypz", "cryp1", "conti", "hive", "akira", "basta", "royal",
        "phobos", "dharma", "wallet", "sodinokibi", "revil", "makop", "blackcat", "babyk",
        "clop", "medusa", "rhysida", "lockfile", "pay2key", "vvv", "ccc", "zzz", "micro",
    }
)  # fmt: skip

# Ransom note names (case-insensitive globs on the file name, not the path).
NOTE_PATTERNS = (
    "*readme*to*decrypt*", "*how*to*decrypt*", "*how*to*recover*", "*how*to*restore*files*",
    "*decrypt*instruction*", "*decrypt*my*files*", "*decrypt*your*files*", "*restore*my*files*",
    "*recover*your*files*", "*recovery*instructions*", "*your*files*are*encrypted*",
    "!!!*read*me*!!!*", "!!*restore*!!*", "*ransom*note*", "help_decrypt*", "*-decrypt.txt",
    "*-decrypt.html", "*_readme_*.txt", "readme.lockbit*", "*restore-my-files*",
)  # fmt: skip
_NOTES = re.compile("|".join(fnmatch.translate(p) for p in NOTE_PATTERNS), re.IGNORECASE)


def extension(name: str) -> str:
    """The last extension of a file name, lower case, without the dot ('' for none)."""
    base = name.rsplit("/", 1)[-1]
    stem, dot, ext = base.rpartition(".")
    return ext.lower() if dot and stem else ""


def ransom_extension(name: str) -> bool:
    return extension(name) in RANSOM_EXTENSIONS


def ransom_note(name: str) -> bool:
    return _NOTES.fullmatch(name.rsplit("/", 1)[-1]) is not None


def renamed_from(added: str, deleted: set[str] | frozenset[str]) -> str | None:
    """The deleted path ``added`` is that path plus new extensions (``report.docx`` ->
    ``report.docx.locked``, ``a.txt.id-42.[x@y].crypt``), the longest such; None when none."""
    head, _, base = added.rpartition("/")
    for i in range(len(base) - 1, 0, -1):
        if base[i] == "." and f"{head}/{base[:i]}" in deleted:
            return f"{head}/{base[:i]}"
    return None


# -- history ---------------------------------------------------------------------------------

MIN_HISTORY = 3  # earlier comparisons needed before a z-score is trusted
HISTORY_WINDOW = 30  # the most recent clean comparisons a z-score is held against
Z_SUSPICIOUS = 3.0
Z_COMPROMISED = 4.0
COMPROMISED_SHARE = 0.20  # encrypted-looking (or ransom-named) share of the files


@dataclass(frozen=True)
class SignalRule:
    """How one numeric signal is judged. ``floor``: below it the signal never counts (a
    z-score on a flat history would make one edited file look extreme). ``alone``: with
    too little history, the value from which it counts (None: never without history).
    ``spread``: the least standard deviation a z-score divides by, for the same reason."""

    name: str
    floor: float
    alone: float | None
    spread: float
    what: str


RULES = (
    SignalRule("deleted", 0.05, 0.30, 0.02, "share of the files deleted (not renamed)"),
    SignalRule("renamed", 0.02, 0.10, 0.02, "share of the files renamed to NAME.EXT"),
    # Rewriting is what busy directories do; alone it means something only against history.
    SignalRule("rewritten", 0.10, None, 0.02, "share of the files rewritten in place"),
    SignalRule(
        "encrypted", 0.02, 0.10, 0.02, "share of the files that now look encrypted (new content)"
    ),
    SignalRule("ransom_named", 0.01, 0.02, 0.02, "share of the files with a ransomware extension"),
    SignalRule("notes", 1, 1, 0.25, "new ransom notes (a count)"),
)
RULE = {r.name: r for r in RULES}


def zscore(value: float, history: Sequence[float], spread: float) -> float | None:
    """How far ``value`` lies above the history's mean, in standard deviations (at least
    ``spread``); None with fewer than MIN_HISTORY values."""
    recent = list(history)[-HISTORY_WINDOW:]
    if len(recent) < MIN_HISTORY:
        return None
    deviation = max(statistics.pstdev(recent), spread)
    return (value - statistics.fmean(recent)) / deviation


@dataclass
class Judged:
    """One signal's value, held against history or an absolute threshold."""

    name: str
    value: float | None  # None: not measured (a snapshot with nothing before it)
    count: int
    z: float | None
    out_of_line: bool
    threshold: str
    examples: list[str]

    def as_dict(self) -> dict[str, Any]:
        return {
            "value": self.value,
            "count": self.count,
            "z": None if self.z is None else round(self.z, 2),
            "out_of_line": self.out_of_line,
            "threshold": self.threshold,
            "examples": self.examples,
        }


def judge_signal(
    rule: SignalRule, value: float | None, count: int, history: Sequence[float], examples: list[str]
) -> Judged:
    if value is None:
        return Judged(rule.name, None, count, None, False, "not measured", examples)
    z = zscore(value, history, rule.spread)
    if z is None:
        hit = rule.alone is not None and value >= max(rule.alone, rule.floor)
        shown = (
            "no history: never alone" if rule.alone is None else f"no history: >= {rule.alone:g}"
        )
    else:
        hit = value >= rule.floor and z >= Z_SUSPICIOUS
        shown = f"z >= {Z_SUSPICIOUS:g} and >= {rule.floor:g}"
    return Judged(rule.name, value, count, z, hit, shown, examples)


def verdict_of(signals: dict[str, Judged]) -> tuple[Verdict, list[str]]:
    """The verdict of one comparison and the reasons for it (docs/security.md)."""
    encrypted, named, notes = signals["encrypted"], signals["ransom_named"], signals["notes"]
    reasons = []
    if _far(encrypted):
        reasons.append(f"{_pct(encrypted.value)} of the files now look encrypted ({_z(encrypted)})")
    if _far(named):
        reasons.append(
            f"{_pct(named.value)} of the files carry a ransomware extension ({_z(named)})"
        )
    if notes.out_of_line and (encrypted.out_of_line or named.out_of_line):
        reasons.append(
            f"{notes.count} ransom note(s) beside "
            + ("encrypted-looking" if encrypted.out_of_line else "ransomware-named")
            + " files"
        )
    if reasons:
        return "compromised", reasons
    for judged in signals.values():
        if judged.out_of_line:
            shown = str(judged.count) if judged.name == "notes" else _pct(judged.value)
            reasons.append(f"{judged.name} {shown} out of line ({_z(judged)})")
    return ("suspicious" if reasons else "clean"), reasons


def _far(judged: Judged) -> bool:
    """Out of line, a large share, and (with history) far outside it."""
    return (
        judged.out_of_line
        and judged.value is not None
        and judged.value >= COMPROMISED_SHARE
        and (judged.z is None or judged.z >= Z_COMPROMISED)
    )


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def _z(judged: Judged) -> str:
    return "no history" if judged.z is None else f"z={judged.z:.1f}"
