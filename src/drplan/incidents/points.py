"""Recovery points an incident defines, for `--to` in its runbook's actions.

``before-incident`` is the last point before the incident's disaster moment: everything
committed strictly before it, nothing at or after it. ``last-good`` is the newest point
before it at which the system's drill checks pass (``drills.last_good`` searches; outside
an incident, the whole window is searched); ``last-clean`` the same, judged by the
system's security checks (``drills.last_clean``). The incident is the one the step
runs in (``$DRPLAN_INCIDENT``, set by `drplan incident run`), read from this host's
journal or the catalog, so the point is the moment the incident recorded, whatever the
environment says.
"""

from __future__ import annotations

import os
from datetime import datetime

from drplan.errors import UsageError
from drplan.recovery.pitr import Target

INCIDENT_ENV = "DRPLAN_INCIDENT"
BEFORE_INCIDENT = "before-incident"
LAST_GOOD = "last-good"  # searched for with scratch recoveries: drills.last_good
LAST_CLEAN = "last-clean"  # the same search, judged by security checks: drills.last_clean
SEARCHED = (LAST_GOOD, LAST_CLEAN)  # points a search finds, bounded by the incident
POINTS = (BEFORE_INCIDENT, *SEARCHED)


def incident_target(text: str) -> Target:
    """The recovery target ``text`` (one of POINTS) means in the current incident; for
    ``last-good`` and ``last-clean``, the newest point the search may return (its caller
    searches)."""
    moment = incident_moment()
    if moment is None:
        if text in SEARCHED:
            return Target("latest")
        raise UsageError(
            f"--to {text} needs an incident: it is meant for a runbook step",
            hint=f"run it through `drplan incident run`, or set {INCIDENT_ENV}=INC",
        )
    return Target("time", text, moment, inclusive=False)


def incident_moment() -> datetime | None:
    """The disaster moment of the incident the command runs in (None: in none)."""
    from drplan.incidents.service import open_incidents  # noqa: PLC0415 - SQLAlchemy is slow

    incident_id = os.environ.get(INCIDENT_ENV)
    if not incident_id:
        return None
    with open_incidents() as service:
        return service.load(incident_id).since


def incident_locations() -> list[str] | None:
    """The locations the current incident's scenario recovers from (its `recover_from`:
    the off-site ones when the data center is lost); None in no incident, or when the
    scenario names none."""
    from drplan.incidents.service import open_incidents  # noqa: PLC0415 - SQLAlchemy is slow

    incident_id = os.environ.get(INCIDENT_ENV)
    if not incident_id:
        return None
    with open_incidents() as service:
        return list(service.load(incident_id).declared.get("recover_from") or []) or None
