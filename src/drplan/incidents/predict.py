"""How long each affected system's recovery should take, from its past drills, set
against its deadline on the incident's RTO clock.

A drill measured the recovery of a system from start to validated: that is the time the
recovery step will take. Started now, a system whose median drilled time ends before its
deadline is on track; one whose worst drilled time ends after it is at risk; one whose
median ends after it will miss. A system never drilled cannot be predicted, and that is
said plainly: it is a finding in itself.
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

    def as_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict, "drills": self.drills,
            "median_seconds": self.median_seconds, "worst_seconds": self.worst_seconds,
            "last_drilled": self.last_drilled.isoformat() if self.last_drilled else None,
        }  # fmt: skip


def predict(incident: Incident, now: datetime) -> dict[str, Prediction]:
    """Each affected system's prediction, from the drills the declaration recorded."""
    measured = {
        name: [(clock.parse_rfc3339(at), seconds) for at, seconds in runs]
        for name, runs in incident.declared.get("drilled", {}).items()
    }
    found = {}
    for name in incident.systems:
        runs = measured.get(name, [])
        if not runs:
            found[name] = Prediction(name, NEVER_DRILLED, 0)
            continue
        times = [seconds for _, seconds in runs]
        median, worst = statistics.median(times), max(times)
        deadline = incident.deadline(name)
        if now + timedelta(seconds=median) > deadline:
            verdict = WILL_MISS
        elif now + timedelta(seconds=worst) > deadline:
            verdict = AT_RISK
        else:
            verdict = ON_TRACK
        found[name] = Prediction(name, verdict, len(runs), median, worst, runs[0][0])
    return found
