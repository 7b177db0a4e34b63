"""What the web server works with: the plan, the catalog, the accounts, the audit trail,
the incidents, the clock; one object built once per server and handed to every route."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from drplan import clock
from drplan.catalog.store import Catalog
from drplan.security.audit import AuditTrail
from drplan.web.accounts import Accounts, Principal
from drplan.web.auth import Guard, LoginThrottle

if TYPE_CHECKING:
    from prometheus_client.registry import CollectorRegistry

    from drplan.incidents.service import Incidents
    from drplan.plan.model import Plan
    from drplan.repo.repository import Repository
    from drplan.scheduler.triggers import Trigger


@dataclass
class WebContext:
    plan_of: Callable[[], Plan]  # the plan as loaded now (serve reloads it on SIGHUP)
    plan_path: str  # the file it was read from: a declaration records it
    catalog: Catalog
    catalog_url: str
    now: Callable[[], datetime] = clock.now
    # What the daemon knows and a standalone `drplan web` does not: the last assessment
    # of the locations (None until there is one), whether it is ready (None: ready, else
    # why not), and its metrics.
    status: Callable[[], dict[str, Any] | None] = lambda: None
    ready: Callable[[], str | None] = lambda: None
    registry: CollectorRegistry | None = None
    # Told after each use of the incidents: the daemon's driver looks at once (an approved
    # step starts without waiting for its next look).
    changed: Callable[[], None] = lambda: None
    # The daemon's probes of the status page's components: their states now, and the
    # outages they found (none on a server that does not probe).
    page_health: Callable[[], tuple[dict[str, str], dict[str, list[Any]]]] = lambda: ({}, {})
    # The repositories, where this server holds their password (None: it does not).
    open_location: Callable[[Plan, str], Repository] | None = None
    # Queues a run of a job for a trigger (the daemon's; None: no daemon in this process).
    trigger: Callable[[str, Trigger], None] | None = None
    accounts: Accounts = field(init=False)
    audit: AuditTrail = field(init=False)
    guard: Guard = field(init=False)
    throttle: LoginThrottle = field(init=False)

    def __post_init__(self) -> None:
        self.accounts = Accounts(self.catalog)
        self.audit = AuditTrail(self.catalog)
        self.guard = Guard(self.accounts, self.plan_of, self.now)
        self.throttle = LoginThrottle(self.plan_of().web.login_attempts)

    def record(self, who: Principal | str, action: str, source: str, **data: Any) -> None:
        """An audit entry for a change made through the web server."""
        actor = who if isinstance(who, str) else f"{who.name} ({who.via})"
        self.audit.record(actor, action, {**data, "source": source}, self.now())

    @contextmanager
    def incidents(self, who: Principal | None = None) -> Iterator[Incidents]:
        """The incidents, acted on as ``who``."""
        from drplan.incidents.operations import copy_off_site  # noqa: PLC0415
        from drplan.incidents.service import over_catalog  # noqa: PLC0415

        service = over_catalog(self.catalog, copy_off_site)
        if who is not None:
            service.user = f"{who.name} via web"
        try:
            yield service
        finally:
            self.changed()
