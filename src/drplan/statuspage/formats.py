"""The status page as Atlassian Statuspage's public JSON (API v2: ``summary.json``,
``status.json``, ``components.json``, ``incidents.json``), so that the widgets and
monitors that read a Statuspage page read this one: the same objects, fields and
values (component statuses, incident statuses and impacts, the page's indicator)."""

from __future__ import annotations

from typing import Any

from drplan import clock
from drplan.statuspage.state import DEGRADED, MAJOR, PARTIAL, WORSE, PageState, PublicIncident

INDICATOR = {DEGRADED: ("minor", "Minor Service Outage"),
             PARTIAL: ("major", "Partial System Outage"),
             MAJOR: ("critical", "Major System Outage")}  # fmt: skip
PAGE_ID = "drplan"


def _time(value: Any) -> str | None:
    return clock.rfc3339(value) if value is not None else None


def page(state: PageState, url: str) -> dict[str, Any]:
    return {"id": PAGE_ID, "name": state.title, "url": url, "time_zone": "Etc/UTC",
            "updated_at": _time(state.updated_at)}  # fmt: skip


def status(state: PageState) -> dict[str, str]:
    indicator, description = INDICATOR.get(state.worst, ("none", "All Systems Operational"))
    return {"indicator": indicator, "description": description}


def components(state: PageState) -> list[dict[str, Any]]:
    groups = sorted({c.group for c in state.components if c.group})
    found: list[dict[str, Any]] = [{"id": c.name, "name": c.title, "status": c.state, "description": c.description or None,
              "position": n, "group_id": c.group, "group": False, "page_id": PAGE_ID,
              "showcase": True, "only_show_if_degraded": False,
              "created_at": None, "updated_at": _time(state.updated_at)}
             for n, c in enumerate(state.components, 1)]  # fmt: skip
    for n, name in enumerate(groups, len(found) + 1):
        members = [c for c in state.components if c.group == name]
        worst = max((c.state for c in members), key=WORSE.index)
        found.append({"id": name, "name": name, "status": worst, "description": None,
                      "position": n, "group_id": None, "group": True, "page_id": PAGE_ID,
                      "components": [c.name for c in members], "showcase": True,
                      "only_show_if_degraded": False, "created_at": None,
                      "updated_at": _time(state.updated_at)})  # fmt: skip
    return found


def incident(found: PublicIncident) -> dict[str, Any]:
    updates = [{"id": f"{found.id}-{n}", "status": u["status"], "body": u["body"],
                "incident_id": found.id, "created_at": _time(u["at"]),
                "updated_at": _time(u["at"]), "display_at": _time(u["at"]),
                "affected_components": [{"code": c, "name": c} for c in found.components]}
               for n, u in enumerate(found.updates, 1)]  # fmt: skip
    return {"id": found.id, "name": found.name, "status": found.status,
            "impact": found.impact, "created_at": _time(found.started_at),
            "updated_at": _time(found.updates[0]["at"] if found.updates else found.started_at),
            "monitoring_at": None, "resolved_at": _time(found.resolved_at),
            "started_at": _time(found.started_at), "shortlink": None, "page_id": PAGE_ID,
            "incident_updates": updates, "components": found.components,
            "eta": _time(found.eta), "data_loss": found.data_loss}  # fmt: skip


def summary(state: PageState, url: str) -> dict[str, Any]:
    """``/api/v2/summary.json``: the page, every component, the unresolved incidents."""
    return {"page": page(state, url), "components": components(state),
            "incidents": [incident(i) for i in state.incidents if i.status != "resolved"],
            "scheduled_maintenances": [], "status": status(state)}  # fmt: skip
