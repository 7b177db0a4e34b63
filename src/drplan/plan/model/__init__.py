"""The plan schema: one pydantic model per plan section, joined in :class:`Plan`.

Each field's docstring is its documentation: docs/plan-reference.md is generated
from these models, and a test keeps it in step. Models check what one section can
check alone; references between sections (a job's system, a step's owner) are
checked by :mod:`drplan.plan.references` once the whole plan has loaded.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from drplan.plan.durations import Duration
from drplan.plan.model.alerting import Alerting, AlertRoute, Severity
from drplan.plan.model.assurance import (
    Compression,
    Document,
    Drill,
    RepositorySettings,
    Review,
    Site,
    SuccessCriteria,
    Tool,
)
from drplan.plan.model.base import Name, PlanModel, TimeZoneName
from drplan.plan.model.objectives import DataClass, Objectives, RtoObjectives, Tier
from drplan.plan.model.response import (
    Audience,
    Channel,
    Communication,
    Contact,
    Phase,
    Role,
    Runbook,
    Scenario,
    Step,
    Window,
)
from drplan.plan.model.security import Evidence, Security
from drplan.plan.model.statuspage import StatusComponent, StatusGroup, StatusPage
from drplan.plan.model.storage import (
    JOB_TYPES_BY_KIND,
    Immutability,
    Job,
    JobType,
    LocalLocation,
    Location,
    LocationRole,
    Retention,
    S3Location,
)
from drplan.plan.model.systems import (
    CommandSystem,
    EtcdSystem,
    FilesSystem,
    GitSystem,
    ImagesSystem,
    PostgresSystem,
    System,
)
from drplan.plan.model.web import ACCESS_LEVELS, Access, Members, Web


class Plan(PlanModel):
    """A disaster recovery plan."""

    version: Literal[1]
    """Version of the plan format; this is format 1."""
    name: str
    """The platform or organisation the plan protects."""
    description: str = ""
    timezone: TimeZoneName = "UTC"
    """Time zone of cron schedules unless a job names its own."""
    objectives: Objectives
    """RTO per tier and RPO per data class."""
    data_classes: dict[Name, DataClass] = Field(default_factory=dict)
    """Requirements per data class (retention, locations, integrity checks)."""
    systems: dict[Name, System] = Field(min_length=1)
    """What is recovered, by name."""
    locations: dict[Name, Location] = Field(min_length=1)
    """Where backups are kept, by name."""
    jobs: dict[Name, Job] = Field(default_factory=dict)
    """What is backed up, when, for how long, and where to."""
    repository: RepositorySettings = Field(default_factory=RepositorySettings)
    """Encryption, password source and compression of the backup repository."""
    sites: dict[Name, Site] = Field(default_factory=dict)
    """Recovery infrastructure: the sites systems and locations live in."""
    scenarios: dict[Name, Scenario] = Field(default_factory=dict)
    """Disasters the plan prepares for, by tier."""
    runbooks: dict[Name, Runbook] = Field(default_factory=dict)
    """Recovery procedures: timed phases of steps."""
    roles: dict[Name, Role] = Field(default_factory=dict)
    """Who does what during an incident, and how to reach them."""
    contacts: dict[Name, Contact] = Field(default_factory=dict)
    """External contacts: vendors, emergency services, customers, partners, regulators."""
    channels: dict[Name, Channel] = Field(default_factory=dict)
    """Where notifications go (Slack, PagerDuty, e-mail, webhook, status page, phone)."""
    communication: Communication | None = None
    """Which channel is used for what, internally and externally."""
    alerting: Alerting = Field(default_factory=Alerting)
    """Which problems the daemon tells whom (RPO at risk or breached, failing jobs)."""
    drills: dict[Name, Drill] = Field(default_factory=dict)
    """Recovery tests and their schedule."""
    success_criteria: SuccessCriteria = Field(default_factory=SuccessCriteria)
    """How recoveries are judged, and the KPIs reported."""
    tools: dict[Name, Tool] = Field(default_factory=dict)
    """Recovery tools and scripts besides drplan, and monitoring the recovery relies on."""
    documents: dict[Name, Document] = Field(default_factory=dict)
    """Documents the plan refers to: checklists, scripts, contact directory, diagrams."""
    review: Review | None = None
    """Document control: version, review dates and cadence, approval."""
    status_page: StatusPage | None = None
    """The public status page: its components, their systems, and whose updates it shows."""
    web: Web = Field(default_factory=Web)
    """The dashboard, the API and the public status page: where, TLS, login, who may do what."""
    security: Security = Field(default_factory=Security)
    """Responding to a security breach: how long one may go unnoticed, where evidence is
    preserved."""

    def rto_of(self, system: str) -> Duration:
        """The RTO that applies to a system: its own if set, else its tier's."""
        spec = self.systems[system]
        return spec.rto or self.objectives.rto.for_tier(spec.tier)

    def drilled_systems(self, drill: str) -> list[str]:
        """The systems a drill recovers: its own list, else every system of the plan."""
        return self.drills[drill].systems or list(self.systems)

    def job_data_classes(self, job: Job) -> list[str]:
        return (
            job.data_classes
            if job.data_classes is not None
            else self.systems[job.system].data_classes
        )

    def job_timezone(self, job: Job) -> str:
        return job.timezone or self.timezone


__all__ = [
    "ACCESS_LEVELS",
    "JOB_TYPES_BY_KIND",
    "Access",
    "AlertRoute",
    "Alerting",
    "Audience",
    "Channel",
    "CommandSystem",
    "Communication",
    "Compression",
    "Contact",
    "DataClass",
    "Document",
    "Drill",
    "EtcdSystem",
    "Evidence",
    "FilesSystem",
    "GitSystem",
    "ImagesSystem",
    "Immutability",
    "Job",
    "JobType",
    "LocalLocation",
    "Location",
    "LocationRole",
    "Members",
    "Objectives",
    "Phase",
    "Plan",
    "PostgresSystem",
    "RepositorySettings",
    "Retention",
    "Review",
    "Role",
    "RtoObjectives",
    "Runbook",
    "S3Location",
    "Scenario",
    "Security",
    "Severity",
    "Site",
    "StatusComponent",
    "StatusGroup",
    "StatusPage",
    "Step",
    "SuccessCriteria",
    "System",
    "Tier",
    "Tool",
    "Web",
    "Window",
]
