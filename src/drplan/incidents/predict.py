"""How long each affected system's recovery should take, from its past drills, set
against its deadline on the incident's RTO clock.

A drill measured the recovery of a system from start to validated, phase by phase: that
is the time the recovery step will take, scaled to today. When the incident knows
today's sizes (``sized``: the newest base backups' data and the WAL archived since, read
after the declaration) and the drill recorded its own, the phases that read data
(fetch, rebuild, verify) are scaled by the data's ratio and the replay by the WAL's;
starting and validating are taken as they were. Started now, a system whose median
time ends before its deadline is on track; one whose worst ends after it is at risk;
one whose median ends after it will miss. A system never drilled cannot be predicted,
and that is said plainly: it is a finding in itself.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from drplan import clock
from drplan.incidents.state import Incident

ON_TRACK, AT_RISK, WILL_MISS, NEVER_DRILLED = "on track", "at risk", "will miss", "never drilled"


@dataclass(frozen=True)
class Prediction:
    system: str
    verdict: str
    drills: int  # how many drills measured it
    median_seconds: float | None = None
    worst_seconds: float | None = None
    last_drilled: datetime | None = None
    scaled: bool = False  # to today's data and WAL (else as the drills measured)
    phase: str | None = None  # the phase whose step recovers it ("2 Recovery Steps")
    phase_verdict: str | None = None  # the same judgement against that phase's window

    def as_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict, "drills": self.drills,
            "median_seconds": self.median_seconds, "worst_seconds": self.worst_seconds,
            "last_drilled": self.last_drilled.isoformat() if self.last_drilled else None,
            "scaled": self.scaled, "phase": self.phase, "phase_verdict": self.phase_verdict,
        }  # fmt: skip


def predict(incident: Incident, now: datetime) -> dict[str, Prediction]:
    """Each affected system's prediction, from the drills the declaration recorded."""
    measured = incident.declared.get("drilled", {})
    found = {}
    for name in incident.systems:
        runs = measured.get(name, [])
        if not runs:
            found[name] = Prediction(name, NEVER_DRILLED, 0)
            continue
        today = incident.sized.get(name)
        scaled = [_scaled(run, today) for run in runs]
        times = [s if s is not None else float(run[1]) for s, run in zip(scaled, runs, strict=True)]
        median, worst = statistics.median(times), max(times)
        phase = next((p for p in incident.phases if any(name in s.recovers and s.open
                                                           for s in p.steps)), None)  # fmt: skip
        window = incident.window(phase) if phase is not None else None
        found[name] = Prediction(
            name,
            _verdict(now, median, worst, incident.deadline(name)),
            len(runs),
            median,
            worst,
            clock.parse_rfc3339(runs[0][0]),
            all(s is not None for s in scaled),
            f"{phase.number} {phase.name}" if phase is not None else None,
            _verdict(now, median, worst, window[1]) if window is not None else None,
        )
    return found


def _verdict(now: datetime, median: float, worst: float, by: datetime) -> str:
    """Started now: done by ``by`` at the median and at the worst (on track), at the
    median only (at risk), or not even at the median (will miss)."""
    if now + timedelta(seconds=median) > by:
        return WILL_MISS
    if now + timedelta(seconds=worst) > by:
        return AT_RISK
    return ON_TRACK


READS_DATA = ("fetch", "rebuild", "verify")


def _scaled(run: list[Any], today: dict[str, Any] | None) -> float | None:
    """One drill's time scaled to today's sizes; None when either side lacks them."""
    if today is None or len(run) < 3:
        return None
    was = run[2]
    phases = was.get("phases") or {}
    data_then, wal_then = was.get("restored_bytes"), was.get("wal_bytes")
    data_now, wal_now = today.get("restored_bytes"), today.get("wal_bytes")
    if not phases or not data_then or data_now is None:
        return None
    reading = sum(float(phases.get(p, 0.0)) for p in READS_DATA)
    replay = float(phases.get("replay", 0.0))
    rest = max(0.0, float(run[1]) - reading - replay)  # starting, validating, the rest
    replay_now = replay * (wal_now / wal_then) if wal_then and wal_now is not None else replay
    return float(reading * (data_now / data_then) + replay_now + rest)
