"""The audit trail: every change made through the web server or the API, and every change
to who may make them (accounts, tokens, logins), with who, what, when and from where.

It is kept in the catalog, so that every host serving the dashboard writes to one trail,
as a hash chain in the format of an incident's timeline (:mod:`drplan.incidents.timeline`,
under the name ``audit``): an edited, removed or reordered entry breaks the chain, and
``drplan audit verify`` says which. Entries are appended in a transaction of their own;
two hosts appending at once cannot both take the same place (the primary key), and the
one refused appends after the other.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError as DuplicateKey

from drplan.catalog.schema import audit_events
from drplan.catalog.store import Catalog
from drplan.errors import CatalogError
from drplan.incidents.timeline import Event, make_event, parse, verify

TRAIL = "audit"  # the name the chain is made under
ATTEMPTS = 20  # appends lost to another writer before giving up


class AuditTrail:
    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    def record(self, actor: str, action: str, data: dict[str, Any], at: datetime) -> Event:
        """Append an entry: ``actor`` (a user, a token, ``drplan`` for the CLI on this
        host), ``action`` (``incident.step``, ``user.add``, ``login.failed``...), and what
        it was about and where from in ``data`` (never a secret)."""
        for _ in range(ATTEMPTS):
            try:
                with self.catalog.transaction() as conn:
                    row = conn.execute(
                        select(audit_events.c.body, audit_events.c.hash)
                        .order_by(audit_events.c.seq.desc())
                        .limit(1)
                    ).first()
                    last = parse(row.body, row.hash) if row is not None else None
                    event = make_event(last, TRAIL, action, actor, data, at)
                    conn.execute(insert(audit_events).values(
                        seq=event.seq, at=event.at, actor=actor, action=action,
                        body=event.body, hash=event.hash,
                    ))  # fmt: skip
                    return event
            except DuplicateKey:
                continue  # another host appended first: after theirs, then
        raise CatalogError(
            f"the audit trail could not be appended to in {ATTEMPTS} attempts",
            hint="other writers keep the catalog busy; try again",
        )

    def entries(self, since: datetime | None = None) -> Iterator[Event]:
        """Every entry, the oldest first (``since``: from that moment on)."""
        query = select(audit_events.c.body, audit_events.c.hash).order_by(audit_events.c.seq)
        if since is not None:
            query = query.where(audit_events.c.at >= since)
        with self.catalog.transaction() as conn:
            rows = conn.execute(query).all()
        for row in rows:
            yield parse(row.body, row.hash)

    def verify(self) -> list[str]:
        """What is wrong with the trail, entry by entry (empty: the chain holds)."""
        events = []
        problems = []
        with self.catalog.transaction() as conn:
            rows = conn.execute(
                select(audit_events.c.seq, audit_events.c.body, audit_events.c.hash)
                .order_by(audit_events.c.seq)
            ).all()  # fmt: skip
        for row in rows:
            try:
                events.append(parse(row.body, row.hash))
            except ValueError:
                problems.append(f"entry {row.seq} is not an audit entry: it was overwritten")
        return problems + verify(events)
