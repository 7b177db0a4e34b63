"""The status page's webhook subscribers: each told of every change of the page in
Atlassian Statuspage's webhook format, so that what consumes a Statuspage page's
webhooks consumes this one.

- a component whose state changed: ``{"meta", "page", "component_update": {"id",
  "component_id", "old_status", "new_status", "created_at"}, "component": {...}}``;
- an incident that appeared, changed status or has a new update: ``{"meta", "page",
  "incident": {...}}`` with the incident as ``incidents.json`` has it.

What each subscriber was last told is kept in the state directory, per subscriber: one
that is down is told what it missed once it answers, the others are not told twice, and
a restart of the daemon sends nothing again. A subscriber is first told of the changes
after it was added (as a new Statuspage subscriber is).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from drplan import clock
from drplan.notify.channels import SendError, post_json
from drplan.plan.model import Plan
from drplan.statuspage import formats
from drplan.statuspage.state import PageState

Seen = dict[str, Any]  # {"components": {name: state}, "incidents": {id: [status, updates]}}


def seen(state: PageState) -> Seen:
    return {"components": {c.name: c.state for c in state.components},
            "incidents": {i.id: [i.status, len(i.updates)] for i in state.incidents}}  # fmt: skip


def notices(before: Seen, state: PageState, now: datetime) -> list[dict[str, Any]]:
    """What changed from ``before`` to ``state``, as Statuspage's webhook payloads."""
    indicator = formats.status(state)
    page = {"id": formats.PAGE_ID, "status_indicator": indicator["indicator"],
            "status_description": indicator["description"]}  # fmt: skip
    meta = {"generated_at": clock.rfc3339(now)}
    found = []
    for c in state.components:
        old = before["components"].get(c.name)
        if old is not None and old != c.state:
            found.append({"meta": meta, "page": page, "component_update": {
                "id": f"{c.name}-{int(now.timestamp())}", "component_id": c.name,
                "old_status": old, "new_status": c.state, "created_at": clock.rfc3339(now),
            }, "component": {"id": c.name, "name": c.title, "status": c.state,
                             "created_at": None}})  # fmt: skip
    for incident in reversed(state.incidents):  # the oldest first
        if before["incidents"].get(incident.id) != [incident.status, len(incident.updates)]:
            found.append({"meta": meta, "page": page, "incident": formats.incident(incident)})
    return found


class Subscribers:
    """The daemon's: tell every subscriber what changed since it was last told."""

    def __init__(self, plan: Callable[[], Plan], path: Path) -> None:
        self.plan, self.path = plan, path

    def tick(self, state: PageState, now: datetime) -> list[str]:
        """Tell each subscriber what changed for it; what failed (tried again next)."""
        page = self.plan().status_page
        if page is None or not page.subscribers:
            return []
        told = self._load()
        current, failed = seen(state), []
        for name in page.subscribers:
            before = told.get(name)
            if before is None:  # new: told from now on
                told[name] = current
                continue
            try:
                for body in notices(before, state, now):
                    post_json(name, self.plan().channels[name], body, now)
            except SendError as exc:
                failed.append(str(exc))
                continue
            told[name] = current
        self._save({n: told[n] for n in page.subscribers if n in told})
        return failed

    def _load(self) -> dict[str, Seen]:
        try:
            found: dict[str, Seen] = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return found

    def _save(self, told: dict[str, Seen]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        staged = self.path.with_name(self.path.name + ".new")
        staged.write_text(json.dumps(told, sort_keys=True))
        os.replace(staged, self.path)
