"""A recovered cluster switched into production, as an incident's restore does.

The recovery goes into a new directory beside the production data directory (same file
system: the switch is two renames), and is verified there (pg_verifybackup) before
production is touched. Then the damaged server is stopped, its data directory moved
aside as ``DATA.damaged-TIME`` (evidence: drplan never deletes it), the recovered one
moved into its place and started with production's own configuration (its port, its
sockets, its archive_command), archiving as the backed-up cluster did. It recovers to
the target, promotes on a new timeline, and is production again.

A failure before the damaged server is stopped leaves production as it was (the
recovered directory is kept for a look, and named); one after says exactly where each
directory is.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from drplan import clock
from drplan.errors import DrplanError, UsageError
from drplan.plan.model import PostgresSystem
from drplan.recovery.pitr import Reached, wait_for_recovery
from drplan.recovery.postgres import as_owner, become_production, server_running

STOP_TIMEOUT = 600  # seconds for the damaged server to stop (fast shutdown)
START_TIMEOUT = 3600  # seconds for pg_ctl to see the recovered one accept connections


@dataclass(frozen=True)
class Switched:
    data_dir: Path
    damaged: Path | None  # where the damaged data directory was moved (None: there was none)
    reached: Reached
    log: Path


def production_dirs(system_name: str, system: PostgresSystem, now: datetime) -> tuple[Path, Path]:
    """Production's data directory and the new one beside it that the recovery goes to."""
    if not system.data_dir:
        raise UsageError(
            f"system {system_name} has no data_dir in the plan: nothing says where production is",
            hint="set its data_dir, or restore into a directory of your own with --target-dir",
        )
    data = Path(system.data_dir).resolve()
    if not data.parent.is_dir():
        raise UsageError(f"{data.parent} does not exist here: production is not on this host",
                         hint="run the restore on the host of the system's data_dir")  # fmt: skip
    return data, data.with_name(f"{data.name}.drplan-recovered-{now:%Y%m%dT%H%M%SZ}")


def switch_in(
    recovered: Path, data: Path, pg_ctl: str, pg_controldata: str, env: dict[str, str],
    tell: Callable[[str], None], now: datetime | None = None,
) -> Switched:  # fmt: skip
    """Stop the server of ``data``, move it aside, put ``recovered`` in its place, start it
    and wait until it has recovered and promoted."""
    stamp = f"{(now or clock.now()):%Y%m%dT%H%M%SZ}"
    become_production(recovered)
    damaged = None
    if data.exists():
        if server_running(data):
            tell(f"stopping the damaged server of {data}")
            _pg_ctl(pg_ctl, data, ["stop", "-m", "fast", "-w", "-t", str(STOP_TIMEOUT)], env,
                    f"the damaged server of {data} did not stop; nothing was switched (the"
                    f" recovered cluster is in {recovered})")  # fmt: skip
        damaged = data.with_name(f"{data.name}.damaged-{stamp}")
        os.rename(data, damaged)
        tell(f"moved the damaged data directory aside: {damaged} (kept as evidence)")
    os.rename(recovered, data)
    log = data / f"drplan-switch-{stamp}.log"
    tell(f"starting the recovered cluster in {data}")
    _pg_ctl(pg_ctl, data, ["start", "-w", "-t", str(START_TIMEOUT), "-l", str(log)], env,
            f"the recovered cluster did not start in {data}"
            + (f" (the damaged one is in {damaged})" if damaged else ""))  # fmt: skip
    reached = wait_for_recovery(pg_controldata, data, log, lambda: server_running(data))
    return Switched(data, damaged, reached, log)


def _pg_ctl(pg_ctl: str, data: Path, args: list[str], env: dict[str, str], failure: str) -> None:
    proc = subprocess.run(
        [*as_owner(data), pg_ctl, "-D", str(data), *args],
        capture_output=True, text=True, check=False, env=env, start_new_session=True,
    )  # fmt: skip
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        raise DrplanError(f"{failure}: {lines[-1] if lines else f'exit {proc.returncode}'}",
                          hint="see the server's log")  # fmt: skip
