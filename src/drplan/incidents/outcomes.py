"""What real incidents count for in the recovery KPIs, beside the drills.

Each affected system of each incident that is over (resolved or closed) is one recovery,
dated by the disaster moment: within its RTO when its clock stopped by its objective,
within its RPO when the measured loss was known and within its objective, intact when
every check that stopped the clock passed. A system resolved without being recovered
(waived) is a recovery that met nothing: the response did not bring it back. Rehearsals
are not counted here: they are recorded as drills (``incidents.rehearsal``). An incident
still open counts once it is over.

The timelines are read from the catalog (the copy every host's incidents reach), folded
like any copy of a timeline; one that does not parse is left out and said.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING

from drplan.drills.report import Recovery
from drplan.errors import DrplanError
from drplan.incidents.state import CLOSED, RESOLVED, Incident, fold
from drplan.incidents.timeline import parse

if TYPE_CHECKING:
    from drplan.catalog.store import Catalog

SOURCE = "incident"


def recoveries(incidents: Iterable[Incident]) -> list[Recovery]:
    """The recoveries of the incidents that are over, oldest first."""
    found = []
    for incident in incidents:
        if incident.status not in (RESOLVED, CLOSED) or incident.declared.get("rehearsal"):
            continue
        for name in incident.systems:
            objectives = incident.declared["objectives"][name]
            done = incident.recovered.get(name)
            if done is None:
                found.append(Recovery(incident.since, incident.id, name, False, False, False,
                                      None, None, SOURCE))  # fmt: skip
                continue
            rto, rpo = done["rto_seconds"], done.get("rpo_seconds")
            rpo_goal = objectives["rpo_seconds"]
            found.append(Recovery(
                incident.since, incident.id, name, rto <= objectives["rto_seconds"],
                rpo is not None and (rpo_goal is None or rpo <= rpo_goal),
                all(v["outcome"] != "failed" for v in done.get("validations", [])),
                rto, rpo, SOURCE,
            ))  # fmt: skip
    return sorted(found, key=lambda r: r.at)


def from_catalog(catalog: Catalog, since: datetime) -> tuple[list[Incident], list[str]]:
    """Every incident in the catalog declared since ``since``, and those left out (why)."""
    incidents, left_out = [], []
    for incident_id in catalog.incident_ids():
        try:
            events = [parse(body, digest) for body, digest in catalog.incident_events(incident_id)]
            incident = fold(events)
        except DrplanError as exc:
            left_out.append(f"{incident_id}: {exc.message}")
            continue
        except (ValueError, KeyError, TypeError) as exc:
            left_out.append(f"{incident_id}: its timeline in the catalog does not read ({exc})")
            continue
        if incident.since >= since:
            incidents.append(incident)
    return incidents, left_out
