"""``drplan repo init``: create a repository at a location."""

from __future__ import annotations

import click

from drplan.cli.context import Settings, emit_json, pass_settings
from drplan.cli.repo_access import location_is_name, password, plan_or_none, resolve_storage
from drplan.repo.config import DEFAULT_COMPRESSION_LEVEL
from drplan.repo.crypto import CIPHERS
from drplan.repo.keys import KdfParams
from drplan.repo.repository import Repository

DEFAULT_KDF = KdfParams()


@click.group("repo")
def repo_group() -> None:
    """Create and inspect repositories."""


@repo_group.command("init", short_help="Create a repository at a path, an S3 URL or a location.")
@click.argument("location")
@click.option(
    "--password-file", metavar="FILE", help="Read the new repository's password from FILE."
)
@click.option(
    "--cipher",
    type=click.Choice(CIPHERS),
    help="Default: the plan's repository.encryption for a plan location, else aes-256-gcm.",
)
@click.option(
    "--compression-level",
    type=click.IntRange(1, 22),
    help=f"zstd level. Default: the plan's repository.compression, else {DEFAULT_COMPRESSION_LEVEL}.",
)
@click.option(
    "--kdf-memory",
    type=click.IntRange(8, 4 * 1024 * 1024),
    default=DEFAULT_KDF.memory_kib,
    show_default=True,
    help="argon2id memory in KiB.",
)
@click.option(
    "--kdf-time",
    type=click.IntRange(1, 100),
    default=DEFAULT_KDF.time_cost,
    show_default=True,
    help="argon2id passes.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for machines.")
@pass_settings
def init_command(
    settings: Settings,
    location: str,
    password_file: str | None,
    cipher: str | None,
    compression_level: int | None,
    kdf_memory: int,
    kdf_time: int,
    as_json: bool,
) -> None:
    """Create a repository at LOCATION: a path, s3://bucket/prefix, or a plan location name."""
    storage = resolve_storage(settings, location)
    plan = plan_or_none(settings) if location_is_name(location) else None
    if plan is not None and location in plan.locations:
        cipher = cipher or plan.repository.encryption
        compression_level = compression_level or plan.repository.compression.level
    repo = Repository.init(
        storage,
        password(settings, password_file),
        kdf=KdfParams(kdf_time, kdf_memory, DEFAULT_KDF.parallelism),
        cipher=cipher or "aes-256-gcm",  # type: ignore[arg-type]
        compression_level=compression_level or DEFAULT_COMPRESSION_LEVEL,
    )
    if as_json:
        emit_json(
            {
                "location": storage.url,
                "id": repo.config.id,
                "cipher": repo.cipher,
                "key": repo.key_id,
            }
        )
    else:
        click.echo(
            f"created repository {repo.config.id} at {storage.url} ({repo.cipher}); keep the password safe:"
            " without it the data cannot be read"
        )
