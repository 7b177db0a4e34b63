"""A real PostgreSQL 18 as a trial's source: the cluster, the plan that protects it, and
drplan run against that plan (for the WAL-stream and drill trials)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml

from testbed.plans import clean_plan
from testbed.postgres import (
    Cluster,
    binaries,
    give_to_server,
    new_cluster,
    server_can_run_drplan,
    world_dir,
)
from torture.kill9 import _location
from torture.world import DRPLAN, PASSWORD, TrialFailed, World

Adjust = Callable[[dict[str, Any], "PgSource"], None]


class PgSource:
    """A cluster, its repositories (local, and S3 when asked) and its plan, which
    ``adjust`` changes to the trial's needs."""

    def __init__(
        self, world: World, where: str, name: str, adjust: Adjust, archiving: bool = False
    ):
        self.dir = world_dir(world.root, f"{name}-{uuid.uuid4().hex[:6]}")
        server_can_run_drplan()  # archive_ and restore_command run drplan as the server
        # The server's socket sits beside its data directory: a path of a world under
        # pytest's temporary directories is too long for a socket (107 bytes).
        self.short = Path(tempfile.mkdtemp(prefix="drplan-torture-pg-"))
        self.plan = self.dir / "plan.yaml"
        self.password = self.dir / "password"
        self.password.write_text(PASSWORD + "\n")
        self.repos = [world.local_repo(str(self.dir / "local"))]
        if where == "s3":
            self.repos.append(world.s3_replica_of(self.repos[0]))
        give_to_server(self.dir / "local")
        give_to_server(self.password)
        command = f"{DRPLAN}-wal-push --plan {self.plan} --password-file {self.password} %p"
        settings = {"archive_command": f"'{command}'"} if archiving else {}
        # archive_command runs in the server's environment: the S3 endpoint and keys too.
        with _environment({k: v for k, v in world.env.items() if k.startswith("AWS_")}):
            self.cluster: Cluster = new_cluster(
                binaries(18), world_dir(self.short, "pg"), **settings
            )
        self.env = {**world.env, "TEST_DB_PASSWORD": self.cluster.password}
        plan = clean_plan()
        locations = {f"l{i}": _location(ref) for i, ref in enumerate(self.repos)}
        plan["locations"] = locations
        plan["data_classes"]["database"]["locations"] = list(locations)
        plan["systems"]["db"]["connection"] = self.cluster.dsn
        plan["systems"]["db"]["bin_dir"] = str(self.cluster.bin_dir)
        for job in plan["jobs"].values():
            job["locations"] = list(locations)
        plan["jobs"]["db-wal"].pop("archive_timeout", None)
        adjust(plan, self)
        self.plan.write_text(yaml.safe_dump(plan))
        self.plan.chmod(0o644)

    def argv(self, *args: str) -> list[str]:
        return [DRPLAN, "--plan", str(self.plan), *args]

    def drplan(self, *args: str, codes: tuple[int, ...] = (0,)) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [*self.argv(*args), "--password-file", str(self.password)],
            capture_output=True, text=True, env=self.env, timeout=600, check=False,
        )  # fmt: skip
        if proc.returncode not in codes or "internal error" in proc.stderr:
            raise TrialFailed(
                f"`drplan {' '.join(args)}` exited {proc.returncode}: {proc.stderr.strip()[-400:]}"
            )
        return proc

    def close(self) -> None:
        self.cluster.stop()
        shutil.rmtree(self.short, ignore_errors=True)


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    """``values`` in this process's environment while the block runs (a server started
    in it keeps them)."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
