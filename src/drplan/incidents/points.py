"""Recovery points an incident defines, for `--to` in its runbook's actions.

``before-incident`` is the last point before the incident's disaster moment: everything
committed strictly before it, nothing at or after it. The incident is the one the step
runs in (``$DRPLAN_INCIDENT``, set by `drplan incident run`), read from this host's
journal or the catalog, so the point is the moment the incident recorded, whatever the
environment says.
"""

from __future__ import annotations

import os

from drplan.errors import UsageError
from drplan.recovery.pitr import Target

INCIDENT_ENV = "DRPLAN_INCIDENT"
BEFORE_INCIDENT = "before-incident"
POINTS = (BEFORE_INCIDENT,)


def incident_target(text: str, catalog_url: str | None = None) -> Target:
    """The recovery target ``text`` (one of POINTS) means in the current incident."""
    from drplan.incidents.service import open_incidents  # noqa: PLC0415 - SQLAlchemy is slow

    incident_id = os.environ.get(INCIDENT_ENV)
    if not incident_id:
        raise UsageError(
            f"--to {text} needs an incident: it is meant for a runbook step",
            hint=f"run it through `drplan incident run`, or set {INCIDENT_ENV}=INC",
        )
    with open_incidents(catalog_url) as service:
        incident = service.load(incident_id)
    return Target("time", text, incident.since, inclusive=False)
