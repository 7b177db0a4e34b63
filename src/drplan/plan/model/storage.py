"""Where backups go: locations (local paths, S3), their roles, immutability; jobs and retention."""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import Field, StrictBool, StrictInt, model_validator

from drplan.plan.durations import UNIT_SECONDS, Duration
from drplan.plan.model.base import Name, PlanModel, TimeZoneName
from drplan.plan.schedule import ScheduleField
from drplan.plan.secrets import Secret


class LocationRole(StrEnum):
    PRIMARY = "primary"
    SECONDARY = "secondary"
    CLOUD = "cloud"
    ARCHIVE = "archive"


# Bounded so that spans stay computable; a million snapshots of anything is already a typo.
KeepCount = Annotated[StrictInt, Field(ge=1, le=1_000_000)]


class Retention(PlanModel):
    """Which snapshots to keep; a snapshot kept by any rule is kept."""

    keep_within: Duration | None = None
    """Keep every snapshot younger than this."""
    keep_last: KeepCount | None = None
    """Keep the newest N snapshots."""
    keep_hourly: KeepCount | None = None
    """Keep the newest snapshot of each of the last N hours that have one."""
    keep_daily: KeepCount | None = None
    """Keep the newest snapshot of each of the last N days that have one."""
    keep_weekly: KeepCount | None = None
    """Keep the newest snapshot of each of the last N weeks that have one."""
    keep_monthly: KeepCount | None = None
    """Keep the newest snapshot of each of the last N months that have one."""
    keep_yearly: KeepCount | None = None
    """Keep the newest snapshot of each of the last N years that have one."""

    @model_validator(mode="after")
    def _not_empty(self) -> Retention:
        if all(value is None for value in self.model_dump().values()):
            raise ValueError("retention keeps nothing; set at least one keep_* rule")
        return self

    def span(self, interval: timedelta | None) -> timedelta:
        """How far back this policy keeps restore points, for a job running every ``interval``."""
        spans = [self.keep_within or timedelta(0)]
        buckets = {
            "h": self.keep_hourly,
            "d": self.keep_daily,
            "w": self.keep_weekly,
            "mo": self.keep_monthly,
            "y": self.keep_yearly,
        }
        # N daily snapshots of a weekly job reach back N weeks: a bucket is at least an interval.
        step = interval.total_seconds() if interval else 0
        spans += [
            timedelta(seconds=max(UNIT_SECONDS[u], step) * n) for u, n in buckets.items() if n
        ]
        if self.keep_last and interval:
            spans.append(interval * self.keep_last)
        return max(spans)

    @property
    def counts_only(self) -> bool:
        """Keeps by count alone (keep_last), so how far back depends on how often the job runs."""
        others = (
            self.keep_within,
            self.keep_hourly,
            self.keep_daily,
            self.keep_weekly,
            self.keep_monthly,
            self.keep_yearly,
        )
        return self.keep_last is not None and all(v is None for v in others)


class Immutability(PlanModel):
    mode: Literal["compliance", "governance"] = "compliance"
    """S3 Object Lock mode: compliance cannot be lifted by anyone; governance by privileged users."""
    days: Annotated[StrictInt, Field(ge=1, le=36_500)]
    """How long each object stays locked after it is written."""


class LocationBase(PlanModel):
    description: str = ""
    role: LocationRole
    """primary, secondary, cloud or archive."""
    offsite: StrictBool | None = None
    """Whether it survives the loss of the primary site; defaults to false for the
    primary role and true for the others."""
    site: Name | None = None
    """The site (see `sites`) it is in."""
    retention: Retention | None = None
    """What this location keeps, overriding each job's retention here."""

    @property
    def is_offsite(self) -> bool:
        return self.offsite if self.offsite is not None else self.role is not LocationRole.PRIMARY

    def offsite_for(self, system_site: str | None) -> bool:
        """Whether this location survives the loss of a system's site.

        An explicit ``offsite`` wins; else, when both sites are named, they must differ;
        else the role decides (only the primary role is on site).
        """
        if self.offsite is not None:
            return self.offsite
        if self.site is not None and system_site is not None:
            return self.site != system_site
        return self.is_offsite


class LocalLocation(LocationBase):
    kind: Literal["local"]
    path: str = Field(pattern=r"^/")
    """Absolute path of the repository directory."""


class S3Location(LocationBase):
    kind: Literal["s3"]
    bucket: str = Field(pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
    """Bucket name."""
    prefix: str = ""
    """Key prefix of the repository inside the bucket."""
    region: str | None = None
    """Region (e.g. us-east-1)."""
    endpoint: str | None = Field(default=None, pattern=r"^https?://")
    """Endpoint URL for S3-compatible stores; AWS when unset."""
    storage_class: Literal[
        "STANDARD",
        "STANDARD_IA",
        "ONEZONE_IA",
        "INTELLIGENT_TIERING",
        "GLACIER_IR",
        "GLACIER",
        "DEEP_ARCHIVE",
    ] = "STANDARD"
    """Storage class of data objects; metadata stays in STANDARD so listing needs no thaw."""
    server_side_encryption: Literal["none", "SSE-S3", "SSE-KMS"] = "none"
    """Server-side encryption on top of drplan's client-side encryption."""
    kms_key_id: str | None = None
    """KMS key for SSE-KMS."""
    access_key_id: Secret | None = None
    """Access key reference; the usual AWS sources are used when unset."""
    secret_access_key: Secret | None = None
    """Secret key reference; the usual AWS sources are used when unset."""
    immutability: Immutability | None = None
    """Object Lock retention for every object written (the bucket must have Object Lock on)."""

    @model_validator(mode="after")
    def _kms_needs_key(self) -> S3Location:
        if self.server_side_encryption == "SSE-KMS" and not self.kms_key_id:
            raise ValueError("server_side_encryption SSE-KMS needs kms_key_id")
        if (self.access_key_id is None) != (self.secret_access_key is None):
            raise ValueError("set both access_key_id and secret_access_key, or neither")
        return self


Location = Annotated[LocalLocation | S3Location, Field(discriminator="kind")]


class JobType(StrEnum):
    FULL = "full"
    INCREMENTAL = "incremental"
    WAL = "wal"
    FILES = "files"
    COMMAND = "command"
    ETCD = "etcd"
    IMAGES = "images"
    GIT = "git"


# Which job types each system kind can run.
JOB_TYPES_BY_KIND: dict[str, tuple[JobType, ...]] = {
    "postgres": (JobType.FULL, JobType.INCREMENTAL, JobType.WAL),
    "files": (JobType.FILES,),
    "command": (JobType.COMMAND,),
    "etcd": (JobType.ETCD,),
    "images": (JobType.IMAGES,),
    "git": (JobType.GIT,),
}


class Job(PlanModel):
    description: str = ""
    system: Name
    """The system it backs up."""
    type: JobType
    """full, incremental or wal (postgres); otherwise the system's kind (files, command,
    etcd, images, git)."""
    schedule: ScheduleField
    """Cron expression, interval, `continuous`, `on EVENT` or `manual`. `on change` runs the
    job when what it backs up changes (a files system's paths, watched; a git system's
    refs); any other `on EVENT` when `drplan trigger EVENT`, the API or a registry's
    webhook says so (docs/operations.md, "Triggered jobs")."""
    debounce: Duration | None = None
    """For an `on change` job: run once the paths have been quiet this long, or at the
    latest ten times this long after the first change, so a path that never rests is
    still backed up (30s when unset)."""
    poll: Duration | None = None
    """For an `on change` job of a git system: how often a repository given by URL is
    asked for its refs (`git ls-remote`) to notice new commits (1m when unset)."""
    timezone: TimeZoneName | None = None
    """Time zone of a cron schedule; defaults to the plan's."""
    retention: Retention | None = None
    """What to keep; WAL is kept as long as a base backup needs it."""
    locations: list[Name] = Field(min_length=1)
    """Where its snapshots go: written to the first reachable, copied to the others."""
    replicate: Literal["after-backup", "manual"] = "after-backup"
    """When snapshots reach the other locations: right after each backup (`after-backup`),
    or only when `drplan copy` runs (`manual`)."""
    stream: StrictBool = False
    """For a `continuous` wal job: also receive WAL as it is written (`drplan wal stream`,
    kept running by `drplan serve`), so the recovery point is seconds old on a quiet
    server too, not only when archive_command hands over a full segment."""
    partial_every: Duration | None = None
    """For a wal job with `stream: true`: how often the segment being written is shipped
    (`drplan wal stream --partial-every`; 10s when unset). A crash then loses at most this
    much of commits, plus the time to ship it: keep it well under the data's RPO."""
    archive_timeout: Duration | None = None
    """For a wal job: the `archive_timeout` the server is set to, which the plan relies on.
    archive_command hands over a 16 MB segment when it is full, or when archive_timeout has
    passed: without it a quiet server may not fill one for hours, so nothing bounds what a
    crash loses. Lint bounds the loss with it (DR022); every base backup warns when the
    server's is longer or off. Each timeout closes a whole segment (a quiet server's
    compresses to about 1 KB)."""
    data_classes: list[Name] | None = None
    """The data classes it covers; defaults to all of its system's."""
    timeout: Duration | None = None
    """Abandon a run that takes longer than this."""
    compression_level: Annotated[StrictInt, Field(ge=1, le=22)] | None = None
    """zstd level for this job's data; defaults to the repository's."""
    incremental_fallback: Literal["full", "wal", "fail"] = "full"
    """When an incremental backup is impossible (PostgreSQL before 17, `summarize_wal`
    off): take a full instead (`full`), take nothing and rely on the WAL archive since the
    last base backup (`wal`), or fail (`fail`)."""
