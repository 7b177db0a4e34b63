"""Which packs a partial read-back reads: the values of ``--read-data-subset``.

Terms:

ring
    The packs a check can read (indexed and present in storage), ordered by id, each
    with its size in bytes. Pack ids are uniformly random, so any stretch of the ring
    is a fair sample of the repository, and the order stays put as packs come and go.
part ``n/t``
    The ``n``-th of ``t`` stretches of the ring of equal bytes: a pack belongs to the
    part its middle byte falls in. Every pack belongs to one part; a part no pack's
    middle falls in (more parts than packs, or one pack larger than a part) reads the
    pack under its own middle byte instead, so no part ever reads nothing.
share ``x%`` and amount (``500M``, ``2G``)
    The next slice of the ring after the rotation's cursor (``drplan.repo.rotation``):
    at least that many bytes (at least one pack), so ``ceil(100 / x)`` runs read every
    pack. Units are binary: ``1K`` is 1024 bytes, ``M``, ``MiB`` and ``MB`` all 1024².
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from drplan.errors import UsageError

Ring = list[tuple[str, int]]  # (pack id, bytes), sorted by id

_UNITS = {"b": 0, "k": 1, "m": 2, "g": 3, "t": 4}
_AMOUNT = re.compile(r"(\d+(?:\.\d+)?)\s*(?:([kmgt])(?:i?b)?|b)", re.IGNORECASE)


@dataclass(frozen=True)
class Part:
    n: int
    t: int


@dataclass(frozen=True)
class Share:
    percent: float


@dataclass(frozen=True)
class Amount:
    size: int  # bytes


Subset = Part | Share | Amount


def parse_subset(text: str) -> Subset:
    """``"2/5"``, ``"10%"`` or ``"500M"``; anything else is a usage error naming the forms."""
    value = text.strip()
    try:
        if value.endswith("%"):
            percent = float(value[:-1])
            if 0 < percent <= 100:  # false for nan as well
                return Share(percent)
        elif "/" in value:
            n, t = (int(x) for x in value.split("/"))
            if 1 <= n <= t:
                return Part(n, t)
        elif match := _AMOUNT.fullmatch(value):
            number, unit = match.groups()
            size = int(float(number) * 1024 ** _UNITS[(unit or "b").lower()])
            if size >= 1:
                return Amount(size)
    except ValueError:
        pass
    raise UsageError(
        f"--read-data-subset {text!r} is none of n/t (1 <= n <= t), x% (0 < x <= 100)"
        " or a size (500M, 2G)",
        hint="e.g. --read-data-subset 5% (a rotating slice), 1/7 (a part), 2G",
    )


def part_of(ring: Ring, part: Part) -> list[str]:
    """The ids of part ``n`` of ``t`` (see the module docstring), in ring order."""
    total = sum(size for _, size in ring)
    if not ring or total <= 0:
        return []
    chosen = []
    before = 0
    for pack_id, size in ring:
        # Integer arithmetic: the middle byte (before + size/2) falls in part
        # floor(middle * t / total), 0-based.
        if (2 * before + size) * part.t // (2 * total) == part.n - 1:
            chosen.append(pack_id)
        before += size
    if chosen:
        return chosen
    middle2 = (2 * part.n - 1) * total  # twice the part's middle byte, times t
    before = 0
    for pack_id, size in ring:
        before += size
        if 2 * part.t * before > middle2:
            return [pack_id]
    return [ring[-1][0]]


def budget_of(subset: Share | Amount, total: int) -> int:
    """The bytes a slice reads at least: a share of ``total``, or the amount; never zero."""
    if isinstance(subset, Amount):
        return subset.size
    return max(1, math.ceil(total * subset.percent / 100))
