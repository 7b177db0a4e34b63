"""The public status page's section: the components customers see, grouped, each mapped
to the systems of the plan it depends on; and the audience whose messages are the
page's updates."""

from __future__ import annotations

from pydantic import Field

from drplan.plan.model.base import Name, PlanModel


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
