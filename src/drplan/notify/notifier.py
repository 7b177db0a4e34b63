"""Deciding what to tell whom, and telling it without holding anything up.

``Notifier.update(problems)`` compares the problems found now with those open: a new
one (or one grown more severe) is triggered, one open for ``repeat_every`` is told
again, one gone is resolved. Each event goes to the channels of every route it
matches, or to ``communication.primary`` when the plan has no routes. Messages are
queued and sent by a thread of their own, so a channel that hangs or fails delays
other messages at most, never a backup. A channel over ``max_per_hour`` messages in
the last hour gets no more until it is under again (suppressed, and logged). Every
message is logged in the catalog with how it went.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from drplan.catalog.store import Catalog
from drplan.errors import DrplanError
from drplan.notify.channels import Event, SendError, send
from drplan.notify.problems import Problem
from drplan.plan.model import Plan, Severity

log = logging.getLogger("drplan.serve")

SENT, FAILED, SUPPRESSED = "sent", "failed", "suppressed"
HOUR = timedelta(hours=1)


@dataclass
class _Open:
    problem: Problem
    since: datetime
    told: datetime


class Notifier:
    def __init__(
        self,
        plan: Callable[[], Plan],
        catalog: Catalog,
        clock: Callable[[], datetime],
        source: str,
        sender: Callable[[str, object, Event], None] = send,  # type: ignore[assignment]
    ) -> None:
        self.plan = plan
        self.catalog = catalog
        self.clock = clock
        self.source = source
        self.sender = sender
        self.open: dict[str, _Open] = {}
        self._recent: dict[str, deque[datetime]] = {}
        # Messages, and markers a waiting flush() is told through once all before are handled.
        self._queue: queue.Queue[tuple[str, Event] | threading.Event] = queue.Queue()
        self._thread = threading.Thread(target=self._dispatch, name="drplan-notify", daemon=True)
        self._thread.start()

    def update(self, found: list[Problem]) -> list[Event]:
        """Trigger, repeat and resolve against the problems open; the events queued."""
        now = self.clock()
        repeat = self.plan().alerting.repeat_every
        events = []
        current = {p.key: p for p in found}
        for key, problem in current.items():
            held = self.open.get(key)
            if held is None or problem.severity.rank > held.problem.severity.rank:
                self.open[key] = _Open(problem, held.since if held else now, now)
                events.append(Event("trigger", problem, now, self.source))
            elif repeat is not None and now - held.told >= repeat:
                held.problem, held.told = problem, now
                events.append(Event("repeat", problem, now, self.source))
            else:
                held.problem = problem  # the figures move on; no message for that
        for key in [k for k in self.open if k not in current]:
            gone = self.open.pop(key)
            events.append(Event("resolve", gone.problem, now, self.source))
        for event in events:
            for channel in self._route(event.problem):
                self._queue.put((channel, event))
        return events

    def _route(self, problem: Problem) -> list[str]:
        plan = self.plan()
        routes = plan.alerting.routes
        if not routes:
            primary = plan.communication.primary if plan.communication else None
            ok = primary is not None and problem.severity.rank >= Severity.WARNING.rank
            return [primary] if ok and primary else []
        chosen: list[str] = []
        for route in routes:
            if problem.severity.rank < route.min_severity.rank:
                continue
            if route.tiers and (problem.tier is None or problem.tier not in route.tiers):
                continue
            chosen += [c for c in route.channels if c not in chosen]
        return chosen

    def flush(self, timeout: float = 30.0) -> None:
        """Wait until every queued message has been handled (tests, shutdown)."""
        done = threading.Event()
        self._queue.put(done)
        done.wait(timeout)

    def stop(self) -> None:
        self.flush()

    # -- the sending thread ---------------------------------------------------------------------

    def _dispatch(self) -> None:
        while True:
            item = self._queue.get()
            if isinstance(item, threading.Event):
                item.set()
                continue
            name, event = item
            try:
                self._deliver(name, event)
            except Exception:  # a bug must not end the sending thread: log it with its trace
                log.exception("notifying %s failed", name)

    def _deliver(self, name: str, event: Event) -> None:
        now = self.clock()
        plan = self.plan()
        channel = plan.channels.get(name)
        recent = self._recent.setdefault(name, deque())
        while recent and now - recent[0] >= HOUR:
            recent.popleft()
        status, detail = SENT, None
        if channel is None:
            status, detail = FAILED, f"the plan has no channel {name}"
        elif len(recent) >= plan.alerting.max_per_hour:
            status, detail = SUPPRESSED, f"over {plan.alerting.max_per_hour} messages this hour"
        else:
            recent.append(now)
            try:
                self.sender(name, channel, event)
            except (SendError, DrplanError) as exc:
                status, detail = FAILED, str(exc)
        log_line = f"{event.action} {event.problem.key} to {name}: {status}"
        (log.warning if status != SENT else log.info)(
            "%s%s", log_line, f" ({detail})" if detail else ""
        )
        try:
            self.catalog.log_notification(
                name, event.problem.key, event.action, now, status, detail or event.problem.summary
            )
        except DrplanError as exc:
            log.error("the notification could not be logged: %s", exc.message)
