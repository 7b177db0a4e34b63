"""Acting on incidents: declare one, record what responders do, read one back, and keep
the catalog's copy of every timeline in step with the journal.

Every change is an event: appended to the local journal and synced first, then added to
the catalog. When the catalog cannot be reached the event is kept all the same, the
command says so, and the next command (or ``serve``) adds what the catalog lacks.
"""

from __future__ import annotations

import contextlib
import getpass
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from drplan.errors import CatalogError, DrplanError, IncidentStateError, UsageError
from drplan.incidents.journal import ID_PATTERN, Journal
from drplan.incidents.state import OPEN, OUTCOMES, RESOLVED, Incident, PhaseState, fold
from drplan.incidents.timeline import GENESIS, Event, parse

if TYPE_CHECKING:
    from drplan.catalog.store import Catalog
    from drplan.plan.model import Plan

log = logging.getLogger("drplan.incidents")
ID_ATTEMPTS = 20
# Events after which the off-site copies are brought up to date (a step: when it settled
# its phase; the declaration: once its first message is out, see ``copy_off_site``).
REPLICATED = {"step", "clock_stopped", "resolved", "closed", "resumed", "rehearsed"}


@dataclass
class Incidents:
    """The incidents of this host's journal, and of the catalog when it can be reached."""

    journal: Journal
    open_catalog: Callable[[], Catalog]
    warnings: list[str] = field(default_factory=list)  # said to the user after the command
    # Copies the journal (its bytes, its length) to the off-site locations of the plan the
    # incident was declared with; what could not be copied, to warn of.
    replicate: Callable[[Incident, bytes, int], list[str]] | None = None
    # Who acts, beside the role: the OS user at the CLI, the logged-in user on the web.
    user: str = field(default_factory=getpass.getuser)
    owns_catalog: bool = True  # False: a server's, open before and after
    _catalog: Catalog | None = None
    _catalog_down: bool = False
    _copy_due: set[str] = field(default_factory=set)  # incidents whose copy was put off

    def close(self) -> None:
        if self._catalog is not None and self.owns_catalog:
            self._catalog.close()

    # -- reading ----------------------------------------------------------------------------

    def ids(self) -> list[str]:
        """Every incident known here or in the catalog, the first declared first."""
        known = self.journal.ids()
        catalog = self._reach()
        if catalog is not None:
            try:
                known += [i for i in catalog.incident_ids() if i not in known]
            except CatalogError as exc:
                self._down(exc)
        return known

    def load(self, incident: str) -> Incident:
        """The incident as its timeline says (the journal's copy, else the catalog's)."""
        incident = incident.upper()
        if not ID_PATTERN.match(incident):
            raise UsageError(f"{incident!r} is not an incident id (e.g. INC-7K3Q)",
                             hint="`drplan incident list` shows them")  # fmt: skip
        events = self.journal.read(incident)
        if not events or not self.owns_catalog:  # a server shows what every host did
            events = events + self.catalog_after(incident, events)
        if not events:
            raise UsageError(f"no incident {incident} here or in the catalog",
                             hint="`drplan incident list` shows them")  # fmt: skip
        return fold(events)

    def everything(self) -> list[Incident]:
        """Every incident known here or in the catalog, the first declared first, each as
        :meth:`load` has it, with one query for what the catalog holds beyond the journal
        (a page that shows them all every second reads each journal, not the catalog)."""
        ids = self.ids()
        catalog = self._reach()
        try:
            held = catalog.incident_lengths() if catalog is not None else {}
        except CatalogError as exc:
            self._down(exc)
            held = {}
        found = []
        for incident in ids:
            events = self.journal.read(incident)
            if held.get(incident, 0) > len(events):
                events = events + self.catalog_after(incident, events)
            if events:
                found.append(fold(events))
        return found

    def catalog_after(self, incident: str, events: list[Event]) -> list[Event]:
        """The catalog's events that go on from ``events`` (other hosts' since), or none:
        one query, which finds nothing at all in the usual case."""
        tail = self.catalog_copy(incident, after=len(events))
        if tail and tail[0].prev == (events[-1].hash if events else GENESIS):
            return tail
        return []

    def catalog_copy(self, incident: str, after: int = 0) -> list[Event]:
        catalog = self._reach()
        if catalog is None:
            return []
        try:
            return [
                parse(body, digest) for body, digest in catalog.incident_events(incident, after)
            ]
        except CatalogError as exc:
            self._down(exc)
            return []
        except ValueError:
            raise DrplanError(f"the catalog's timeline of {incident} holds an entry that is not one",
                              hint=f"`drplan incident verify {incident}`") from None  # fmt: skip

    def drill_history(self) -> list[dict[str, Any]]:
        """The catalog's drill runs, newest first, that predictions are made from (none
        when the catalog cannot be reached: every system is then unpredicted)."""
        catalog = self._reach()
        if catalog is None:
            return []
        try:
            return catalog.drills(limit=500)
        except CatalogError as exc:
            self._down(exc)
            return []

    def open_ones(self) -> list[Incident]:
        return [i for i in self.everything() if i.status == OPEN]

    # -- acting -----------------------------------------------------------------------------

    def declare(self, plan: Plan, plan_path: str, scenario: str, actor: str | None,
                now: datetime, **options: Any) -> Incident:  # fmt: skip
        from drplan.incidents.declare import declaration, new_id  # noqa: PLC0415 - the schema

        data = declaration(plan, plan_path, scenario, now=now, history=self.drill_history(),
                           **options)  # fmt: skip
        for other in self.open_ones():
            shared = sorted(set(other.systems) & set(data["systems"]))
            if shared:
                self.warnings.append(f"incident {other.id} ({other.scenario}) is open on"
                                     f" {', '.join(shared)} too")  # fmt: skip
        taken = set(self.ids())
        for _ in range(ID_ATTEMPTS):
            incident = new_id()
            if incident in taken:
                continue
            try:
                self.record(incident, "declared", self.actor(actor, data["roles"]), data, now,
                            new=True)  # fmt: skip
            except DrplanError as exc:
                if "exists already" in exc.message:
                    continue
                raise
            return self.load(incident)
        raise DrplanError("no free incident id was found", hint="declare again")

    def step(self, incident: Incident, ref: str, outcome: str, now: datetime, *,
             item: int | None = None, note: str | None = None, actor: str | None = None,
             out_of_order: bool = False) -> Event:  # fmt: skip
        """Record a manual step's outcome (or one checklist item ticked)."""
        incident.writable()
        step = incident.step(ref)
        if outcome not in OUTCOMES:
            raise UsageError(f"{outcome!r} is not a step outcome",
                             hint=f"use one of {', '.join(OUTCOMES)}")  # fmt: skip
        data: dict[str, Any] = {"step": step.id, "outcome": outcome}
        if item is not None:
            if not 1 <= item <= len(step.checklist):
                raise UsageError(
                    f"step {step.id} has {len(step.checklist)} checklist items, not {item}",
                    hint="; ".join(f"{n} {text}" for n, text in enumerate(step.checklist, 1))
                    or "it has no checklist",
                )
            data["item"] = item
        elif not step.open:
            raise IncidentStateError(f"step {step.id} ({step.title}) is {step.status} already",
                                     hint="add what changed with `drplan incident note`")  # fmt: skip
        elif step.running is not None:
            raise IncidentStateError(
                f"step {step.id} ({step.title}) is running (process {step.running['pid']} on"
                f" {step.running['host']})",
                hint="wait for it: `drplan incident timeline INC --follow`",
            )
        else:
            waiting = incident.before(step)
            if waiting and not out_of_order:
                raise IncidentStateError(
                    f"step {step.id} comes after {', '.join(s.id for s in waiting)}, still open",
                    hint="finish those first, or pass --out-of-order (it is recorded)",
                )
            if waiting:
                data["out_of_order"] = [s.id for s in waiting]
        if note:
            data["note"] = note
        return self.record(incident.id, "step", self.actor(actor, incident.roles), data, now)

    def approve(self, incident: Incident, ref: str, role: str | None, now: datetime) -> Event:
        """Approve a gated step, as its approving role or the incident commander."""
        incident.writable()
        step = incident.step(ref)
        if step.approve is None:
            raise UsageError(f"step {step.id} ({step.title}) needs no approval",
                             hint="`drplan incident run INC` runs it")  # fmt: skip
        allowed = {r for r in (step.approve, incident.commander) if r is not None}
        if role not in allowed:
            raise UsageError(
                f"step {step.id} is approved by {' or '.join(sorted(allowed))}, not"
                f" {role or 'an unnamed user'}",
                hint=f"pass --as {step.approve}",
            )
        if step.approved_by is not None:
            raise IncidentStateError(f"step {step.id} was approved already by {step.approved_by}",
                                     hint="`drplan incident run INC` runs it")  # fmt: skip
        return self.record(incident.id, "approved", self.actor(role, incident.roles),
                           {"step": step.id}, now)  # fmt: skip

    def note(self, incident: Incident, kind: str, text: str, now: datetime, *,
             actor: str | None = None, owner: str | None = None) -> Event:  # fmt: skip
        """A note for the review: under one of its headings, an action item (with its
        owner), or a plain note."""
        incident.writable()
        kinds = incident.review_kinds()
        if kind not in kinds:
            raise UsageError(f"{kind!r} is not a kind of note of this incident's review",
                             hint=f"use one of {', '.join(kinds)}")  # fmt: skip
        if not text.strip():
            raise UsageError("the note is empty", hint="say what was found or decided")
        data: dict[str, Any] = {"kind": kind, "heading": kinds[kind], "text": text.strip()}
        if kind == "action":
            if owner is None:
                raise UsageError("an action item needs its owner", hint="pass --owner ROLE")
            self.actor(owner, incident.roles)  # a role of the plan
            data["owner"] = owner
        elif owner is not None:
            raise UsageError("--owner is for action items", hint="pass --kind action")
        return self.record(incident.id, "note", self.actor(actor, incident.roles), data, now)

    def resolve(self, incident: Incident, waived: dict[str, str], now: datetime,
                actor: str | None = None) -> Event:  # fmt: skip
        """Resolve: every affected system recovered, or waived with a reason."""
        incident.writable()
        if incident.status != OPEN:
            raise IncidentStateError(f"incident {incident.id} is {incident.status} already",
                                     hint=f"`drplan incident close {incident.id}` after the review")  # fmt: skip
        for system, reason in waived.items():
            if system not in incident.systems:
                raise UsageError(f"{system!r} is not a system of incident {incident.id}",
                                 hint=f"its systems: {', '.join(incident.systems)}")  # fmt: skip
            if not reason.strip():
                raise UsageError(f"--waive {system}: say why it is not recovered",
                                 hint=f"--waive '{system}=REASON'")  # fmt: skip
        missing = [s for s in incident.unrecovered() if s not in waived]
        if missing:
            raise IncidentStateError(
                f"incident {incident.id} cannot be resolved: {', '.join(missing)} not recovered"
                " (no recovering step's checks passed)",
                hint="recover them, or --waive 'SYSTEM=REASON' for each",
            )
        return self.record(incident.id, "resolved", self.actor(actor, incident.roles),
                           {"waived": waived}, now)  # fmt: skip

    def close_incident(self, incident: Incident, now: datetime, actor: str | None = None) -> Event:
        """Close after the review: resolved, and every post_incident heading filled."""
        incident.writable()
        if incident.status != RESOLVED:
            raise IncidentStateError(f"incident {incident.id} is not resolved yet",
                                     hint=f"`drplan incident resolve {incident.id}` first")  # fmt: skip
        missing = incident.unreviewed()
        if missing:
            kinds = {v: k for k, v in incident.review_kinds().items()}
            raise IncidentStateError(
                f"incident {incident.id}'s review has nothing yet on: {'; '.join(missing)}",
                hint=f"`drplan incident note {incident.id} --kind {kinds[missing[0]]} TEXT`,"
                " and so on for each",
            )
        return self.record(incident.id, "closed", self.actor(actor, incident.roles), {}, now)

    def ack(self, incident: Incident, now: datetime, actor: str | None = None) -> Event:
        """Acknowledge every page of the incident not acknowledged yet: their escalation
        stops there."""
        incident.writable()
        waiting = [k for k, e in incident.escalations.items() if not e["acknowledged"]]
        if not waiting:
            raise UsageError(f"incident {incident.id} has no page waiting to be acknowledged",
                             hint="`drplan incident timeline INC` shows the pages sent")  # fmt: skip
        return self.record(incident.id, "acknowledged", self.actor(actor, incident.roles),
                           {"keys": waiting}, now)  # fmt: skip

    def record(self, incident: str, kind: str, actor: str, data: dict[str, Any],
               at: datetime, *, new: bool = False, sync: bool = True, copy: bool = True,
               ) -> Event:  # fmt: skip
        """Append an event: to the journal (synced), then to the catalog, and off site when
        it ends a phase or a system's outage. ``sync=False``: the catalog gets it with the
        next event or `sync`; ``copy=False``: the off-site copy waits for `copy_if_due`
        (a driver puts both off while a step runs, or until a clock is stopped)."""
        # What other hosts added (through the catalog) first: the chain goes on from them.
        # Read when the catalog is wanted now anyway, or open already: a step's start
        # (sync=False) is on disk before anything slow.
        reach = not new and (sync or self._catalog is not None)
        event = self.journal.append(incident, kind, actor, data, at, new=new,
                                    catch_up=partial(self.catalog_after, incident) if reach else None)  # fmt: skip
        if sync:
            self.sync(incident)
        if self.replicate is not None and kind in REPLICATED:
            state = fold(self.journal.read(incident))
            if kind != "step" or not _phase_of(state, data["step"]).open:
                self._copy_due.add(incident)
        if copy:
            self.copy_if_due(incident)
        return event

    def copy_if_due(self, incident: str) -> None:
        """Copy the timeline off site if an event since the last copy asked for it."""
        if incident in self._copy_due:
            self._copy_due.discard(incident)
            self.copy_off_site(incident)

    def copy_off_site(self, incident: str) -> None:
        """Bring the off-site copies of the timeline up to date now."""
        if self.replicate is not None:
            events = self.journal.read(incident)
            self.warnings += self.replicate(fold(events), self.journal.raw(incident), len(events))

    def sync(self, incident: str) -> None:
        """Add to the catalog what the journal has and it lacks."""
        catalog = self._reach()
        if catalog is None:
            return
        rows = [
            {"seq": e.seq, "at": e.at, "kind": e.kind, "body": e.body, "hash": e.hash}
            for e in self.journal.read(incident)
        ]
        try:
            catalog.add_incident_events(incident, rows)
        except CatalogError as exc:
            self._down(exc)

    def actor(self, role: str | None, roles: dict[str, Any]) -> str:
        """Who acts: ``ROLE (user)``, or the user alone."""
        user = self.user
        if role is None:
            return user
        if role not in roles:
            raise UsageError(f"no role {role!r} in the plan",
                             hint=f"the plan's roles: {', '.join(sorted(roles)) or '(none)'}")  # fmt: skip
        return f"{role} ({user})"

    # -- the catalog, when it answers -----------------------------------------------------------

    def reachable_catalog(self) -> Catalog | None:
        """The catalog, or None when it does not answer (said in the warnings)."""
        return self._reach()

    def _reach(self) -> Catalog | None:
        if self._catalog_down:
            return None
        if self._catalog is None:
            try:
                self._catalog = self.open_catalog()
            except CatalogError as exc:
                self._down(exc)
                return None
        return self._catalog

    def _down(self, exc: CatalogError) -> None:
        self._catalog_down = True
        self.warnings.append(f"{exc.message}: the incident journal keeps every event, and the"
                             " catalog gets them when it is back")  # fmt: skip


def _phase_of(incident: Incident, step: str) -> PhaseState:
    return next(p for p in incident.phases if any(s.id == step for s in p.steps))


@contextlib.contextmanager
def open_incidents(
    catalog_url: str | None = None,
    replicate: Callable[[Incident, bytes, int], list[str]] | None = None,
) -> Iterator[Incidents]:
    """The incidents of this host's journal (``STATE_DIR/incidents``) and of the catalog
    (``catalog_url``, else the default one), closed on leaving."""
    from drplan.catalog.paths import default_url  # noqa: PLC0415

    def catalog() -> Catalog:
        from drplan.catalog.store import Catalog  # noqa: PLC0415 - SQLAlchemy: when reached

        return Catalog.open(catalog_url or default_url())

    service = Incidents(Journal(journal_dir()), catalog, replicate=replicate)
    try:
        yield service
    finally:
        service.close()


def journal_dir() -> Path:
    """Where this host journals its incidents: ``STATE_DIR/incidents``."""
    from drplan.catalog.paths import state_dir  # noqa: PLC0415

    return Path(state_dir()) / "incidents"


def over_catalog(
    catalog: Catalog, replicate: Callable[[Incident, bytes, int], list[str]] | None = None
) -> Incidents:
    """The incidents of this host's journal, with a catalog a server holds open (not
    opened per request, and never closed here)."""
    return Incidents(Journal(journal_dir()), lambda: catalog, replicate=replicate,
                     owns_catalog=False)  # fmt: skip
