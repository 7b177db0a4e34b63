"""Responding to a disaster: scenarios by tier, runbooks of timed phases, roles, contacts, channels."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from itertools import pairwise
from typing import Annotated, Any, Literal

from pydantic import (
    Field,
    PlainSerializer,
    PlainValidator,
    StrictBool,
    StrictInt,
    WithJsonSchema,
    model_validator,
)

from drplan.plan.durations import Duration, format_duration, parse_duration, seconds
from drplan.plan.model.base import Name, PlanModel
from drplan.plan.model.web import Access, Members
from drplan.plan.secrets import Secret

# Commands a runbook step may run as a drplan action; checked so a typo fails at load.
DRPLAN_ACTIONS = (
    "backup",
    "restore",
    "copy",
    "check",
    "drill",
    "evidence",
    "incident",
    "key",
    "locations",
    "plan",
    "scan",
    "secrets",
    "snapshots",
    "status",
    "wal",
)


@dataclass(frozen=True)
class Window:
    """A phase's target window, measured from the start of the incident."""

    start: timedelta
    end: timedelta

    def __str__(self) -> str:
        start = format_duration(self.start) if self.start else "0"
        return f"{start}-{format_duration(self.end)}"


_WINDOW = re.compile(r"\s*([0-9.]+[a-z]*)\s*-\s*([0-9.]+[a-z]+)\s*", re.IGNORECASE)


def _parse_window(value: Any) -> Window:
    if isinstance(value, Window):
        return value
    match = _WINDOW.fullmatch(value) if isinstance(value, str) else None
    if not match:
        raise ValueError(f"{value!r} is not a time window (e.g. '0h-1h', '2-8h')")
    start_text, end_text = match.groups()
    if start_text.replace(".", "").isdigit():
        # '2-8h': the start takes the end's unit.
        start_text += end_text.lstrip("0123456789.")
    start, end = parse_duration(start_text), parse_duration(end_text)
    if end <= start:
        raise ValueError(f"window '{value}' ends before it starts")
    return Window(start, end)


WindowField = Annotated[
    Window,
    PlainValidator(_parse_window),
    PlainSerializer(lambda w: {"start": seconds(w.start), "end": seconds(w.end)}, when_used="json"),
    WithJsonSchema({"type": "string", "examples": ["0h-1h", "2-8h"]}),
]


class Step(PlanModel):
    title: str
    """What is done, as a person would say it."""
    owner: Name | None = None
    """The role (see `roles`) who does it."""
    checklist: list[str] = Field(default_factory=list)
    """Items to tick off."""
    action: str | None = None
    """A drplan command to run (e.g. `restore postgres smartwatts-db --to latest`)."""
    run: str | None = None
    """A shell command to run (e.g. `terraform apply -auto-approve`)."""
    recovers: list[Name] = Field(default_factory=list)
    """Systems this step brings back; the phase window is then held against their RTO."""
    timeout: Duration | None = None
    """Give up on the automated part after this long (default 1 hour): its process group
    is stopped and the step fails."""
    approve: Name | None = None
    """The role (see `roles`) whose `drplan incident approve` the automated part waits
    for; the incident commander may approve too."""
    unattended: StrictBool = False
    """The automated part writes to production without an `approve`, by the plan's choice
    (lint DR023 warns of one that does so unsaid)."""
    rerun: Literal["safe", "ask"] = "ask"
    """When the process driving the incident died while this step ran: `safe` runs it
    again on its own, `ask` waits for the commander (`drplan incident run INC --retry
    STEP`, or the step recorded by hand)."""

    @model_validator(mode="after")
    def _one_automation(self) -> Step:
        if self.action is not None and self.run is not None:
            raise ValueError("a step has either `action` (drplan) or `run` (shell), not both")
        if self.action is not None:
            words = self.action.split()
            if not words or words[0] not in DRPLAN_ACTIONS:
                raise ValueError(
                    f"action '{self.action.strip()}' is not a drplan command"
                    f" (it starts with one of {', '.join(DRPLAN_ACTIONS)})"
                )
        if self.run is not None and not self.run.strip():
            raise ValueError(
                "`run` is empty: give a shell command, or leave it out for a manual step"
            )
        return self

    @property
    def automated(self) -> bool:
        return bool(self.action or self.run)


class Phase(PlanModel):
    name: str
    """The phase's name (e.g. Immediate Response)."""
    window: WindowField | None = None
    """Target time window from the start of the incident (e.g. `0h-1h`)."""
    steps: list[Step] = Field(min_length=1)
    """Steps in the order they are done."""


class Runbook(PlanModel):
    description: str = ""
    phases: list[Phase] = Field(min_length=1)
    """Phases in the order they run."""

    @model_validator(mode="after")
    def _phases_in_order(self) -> Runbook:
        windows = [p.window for p in self.phases if p.window]
        for before, after in pairwise(windows):
            if after.start < before.start:
                raise ValueError(f"phase windows out of order: '{after}' comes after '{before}'")
        return self


class Scenario(PlanModel):
    title: str
    """The scenario's name in the plan's words."""
    tier: Literal[1, 2, 3]
    """Disaster tier: 1 critical, 2 major, 3 minor."""
    description: str = ""
    runbook: Name | None = None
    """The runbook (see `runbooks`) followed when it happens."""
    affects: list[Name] = Field(default_factory=list)
    """Systems it takes down; empty means all of them."""
    recover_from: list[Name] = Field(default_factory=list)
    """Locations to restore from (e.g. only off-site ones when the data center is lost)."""


class Role(PlanModel):
    title: str
    """The role's name in the plan (Incident Commander, Technical Lead, ...)."""
    holder: str
    """Who holds it (a person or a position, e.g. CTO)."""
    team: str | None = None
    """The team the role leads, if any."""
    phone: str | None = Field(default=None, pattern=r"^\+?[0-9][0-9 ()-]{2,}$")
    """Phone number, e.g. +1-555-0001."""
    email: str | None = Field(default=None, pattern=r"^[^@\s]+@[^@\s]+$")
    """E-mail address."""
    slack: str | None = None
    """Slack handle, e.g. @cto."""
    deputy: Name | None = None
    """The role that stands in when this one cannot be reached."""
    access: Access = "responder"
    """What its holders may do in the web dashboard and the API: viewer, responder,
    commander or admin (see `web`)."""
    members: Members = Field(default_factory=Members)
    """Who holds it when they log in (besides a local account given the role, and the
    role's own `email`)."""


class Contact(PlanModel):
    name: str
    """Who it is (organisation or service)."""
    category: Literal["vendor", "emergency", "customer", "partner", "regulator", "other"]
    """What kind of contact it is."""
    phone: str | None = None
    """Phone number."""
    email: str | None = None
    """E-mail address."""
    url: str | None = None
    """Web address (support portal, status page)."""
    notes: str = ""
    """Contract level, account numbers, escalation notes."""


class ChannelBase(PlanModel):
    description: str = ""


class SlackChannel(ChannelBase):
    kind: Literal["slack"]
    webhook_url: Secret
    """Incoming-webhook URL reference."""
    channel: str | None = Field(default=None, pattern=r"^#")
    """Channel name, e.g. #incident-response."""


class PagerDutyChannel(ChannelBase):
    kind: Literal["pagerduty"]
    routing_key: Secret
    """Events API v2 integration key reference."""
    severity: Literal["critical", "error", "warning", "info"] = "critical"
    """Severity of events sent for incidents (drills, declared incidents); alerts carry
    their problem's own severity."""
    events_url: str = Field(
        default="https://events.pagerduty.com/v2/enqueue", pattern=r"^https?://"
    )
    """Events API v2 endpoint (the EU service region's is
    https://events.eu.pagerduty.com/v2/enqueue)."""


class EmailChannel(ChannelBase):
    kind: Literal["email"]
    smtp_host: str
    """SMTP server host name."""
    smtp_port: StrictInt = Field(default=587, ge=1, le=65535)
    """SMTP server port."""
    starttls: StrictBool = True
    """Upgrade the connection with STARTTLS."""
    sender: str = Field(pattern=r"^[^@\s]+@[^@\s]+$")
    """From address."""
    to: list[Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+$")]] = Field(min_length=1)
    """Recipient addresses."""
    username: str | None = None
    """SMTP login, if the server needs one."""
    password: Secret | None = None
    """SMTP password reference."""


class WebhookChannel(ChannelBase):
    kind: Literal["webhook"]
    url: Secret
    """URL reference (URLs of webhooks often carry tokens)."""
    signing_secret: Secret | None = None
    """HMAC-SHA256 key for the X-Drplan-Signature header."""


class StatusPageChannel(ChannelBase):
    kind: Literal["status_page"]
    api_url: str = Field(pattern=r"^https?://")
    """Base URL of the status page API."""
    page_id: str
    """Id of the page to update."""
    api_key: Secret
    """API key reference."""
    components: list[str] = Field(default_factory=list)
    """Component ids whose status follows the incident."""


class PhoneChannel(ChannelBase):
    kind: Literal["phone"]
    call: list[Name] = Field(min_length=1)
    """Roles to call, in order (their phone numbers are in `roles`)."""
    webhook_url: Secret | None = None
    """A service that places the calls (a call bridge, a telephony flow): drplan posts it
    the message and the people to call, in order. Without one, the calls are a task in
    the incident's timeline for a person to make."""


Channel = Annotated[
    SlackChannel
    | PagerDutyChannel
    | EmailChannel
    | WebhookChannel
    | StatusPageChannel
    | PhoneChannel,
    Field(discriminator="kind"),
]


class Audience(PlanModel):
    channels: list[Name] = Field(min_length=1)
    """Channels (see `channels`) this audience is told through."""
    deadline: Duration | None = None
    """Time from the declaration by which this audience must be told (a regulator's 72h):
    each incident then tracks the notice like a step, escalates it when it is late, and
    the review says whether it was met."""
    notes: str = ""
    """How they are told, in the plan's words."""


class Communication(PlanModel):
    primary: Name
    """Channel used first for incident communication (SmartWatts: Slack #incident-response)."""
    secondary: Name | None = None
    """Channel used when the primary is down (SmartWatts: e-mail)."""
    emergency: Name | None = None
    """Channel of last resort (SmartWatts: phone calls)."""
    public: Name | None = None
    """Channel the public sees (status page)."""
    audiences: dict[Name, Audience] = Field(default_factory=dict)
    """External audiences (customers, partners, vendors, regulators) and how they are told."""
    escalate_after: Duration = Field(default=timedelta(minutes=15))
    """How long a page waits for `drplan incident ack` before the next person in the chain
    (the step's owner, their deputy, the incident commander, the commander's deputy, then
    the `escalation_contacts`) is paged."""
    escalation_contacts: list[Name] = Field(default_factory=list)
    """External contacts (see `contacts`) told, in order, when nobody in the plan's roles
    has acknowledged a page: e-mailed through the plan's e-mail channel when they have an
    address, and put in the timeline as a call task with their number."""
    update_every: Duration | None = None
    """While an incident is open, a tactical update (done, next, who) goes to the internal
    audience at each phase change and, with this, at least this often."""
    executive: list[Name] = Field(default_factory=list)
    """Audiences (of `audiences`) that get an executive update at each phase change and
    `update_every`: impact, the ETA from the RTO clock and the drills, the data-loss window."""
    templates: dict[Literal["initial", "update", "tactical", "executive", "resolution"], str] = (
        Field(default_factory=dict)
    )
    """Jinja2 templates of incident messages, replacing drplan's own: the first line is the
    subject, the rest the body. They see `incident` (id, title, tier, since, commander,
    phase, systems with their deadlines, predictions and data-loss budgets, the steps done
    and next), `audience`, `message`, `rehearsal`, and `public` (what an audience outside
    may read: `services` in the status page's words, `since`, `eta`, `back`, `data_loss`).
    Without them, audiences outside (all but the responders and the executive ones) get
    drplan's public wording, which names no system, role or command."""

    @model_validator(mode="after")
    def _templates_parse(self) -> Communication:
        from jinja2 import TemplateSyntaxError  # noqa: PLC0415 - only plans that have them
        from jinja2.sandbox import SandboxedEnvironment  # noqa: PLC0415

        for kind, text in self.templates.items():
            try:
                SandboxedEnvironment().parse(text)
            except TemplateSyntaxError as exc:
                raise ValueError(f"template {kind}: line {exc.lineno}: {exc.message}") from None
        return self
