"""The public status page's section: the components customers see, grouped, each mapped
to the systems of the plan it depends on and probed by the daemon if the plan says how;
and the audience whose messages are the page's updates."""

from __future__ import annotations

from datetime import timedelta

from pydantic import Field, StrictInt, model_validator

from drplan.plan.durations import Duration
from drplan.plan.model.base import Name, PlanModel


class StatusProbe(PlanModel):
    url: str | None = None
    """An HTTP(S) address answered with 2xx or 3xx while the component works."""
    command: str | None = None
    """A shell command (`/bin/sh -c`) that exits 0 while the component works."""
    every: Duration = Field(default=timedelta(seconds=30))
    """How often `drplan serve` probes it."""
    timeout: Duration = Field(default=timedelta(seconds=5))
    """A probe not answered in this long failed."""
    slow_after: Duration | None = None
    """A probe answered, but slower than this: degraded performance."""
    failures: StrictInt = Field(default=2, ge=1)
    """Failed probes in a row before it counts as a major outage (one miss is no outage)."""

    @model_validator(mode="after")
    def _one_way(self) -> StatusProbe:
        if (self.url is None) == (self.command is None):
            raise ValueError("give the probe a url or a command, one of them")
        if self.url is not None and not self.url.startswith(("http://", "https://")):
            raise ValueError(f"probe url {self.url!r}: an http:// or https:// address")
        return self


class StatusGroup(PlanModel):
    title: str
    """The group's name on the page, e.g. `Customer services`."""


class StatusComponent(PlanModel):
    title: str
    """The component's name on the page, e.g. `Meter ingestion API`."""
    systems: list[Name] = Field(min_length=1)
    """The systems it depends on: an open incident on one of them sets its state."""
    group: Name | None = None
    """The group (see `groups`) it is shown in."""
    description: str = ""
    """One line under its name."""
    probe: StatusProbe | None = None
    """How `drplan serve` checks it works, besides the incidents: a probe that keeps
    failing sets it to a major outage, a slow one to degraded performance, until it
    answers again."""


class StatusPage(PlanModel):
    title: str
    """The page's title, e.g. `SmartWatts status`."""
    components: dict[Name, StatusComponent] = Field(min_length=1)
    """What customers see, by name."""
    groups: dict[Name, StatusGroup] = Field(default_factory=dict)
    """Groups of components, in the order shown."""
    audience: Name | None = None
    """The audience (see `communication.audiences`) whose messages are the page's updates;
    unset: none, and the page says only the components' states."""
    subscribers: list[Name] = Field(default_factory=list)
    """Webhook channels (see `channels`, kind `webhook`) told of each change of the page
    in Statuspage's webhook format: a component's new state (`component_update`), an
    incident's new status or update (`incident`), signed with the channel's secret."""
    publish_to: list[Name] = Field(default_factory=list)
    """S3 locations that get a static copy of the page under `status-page/` at every
    change (a bucket set up as a website), so that customers still read it when the site
    that serves it is gone."""
