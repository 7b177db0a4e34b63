"""kill -9 of ``drplan drill run`` at a random moment: while it restores, replays, starts
its scratch server or validates.

A killed drill cannot tear down: its scratch server may go on running, its lease on
the system stays held. The next drill must clear what it left (stop that server,
remove its directory), take the lease, and pass; after it no scratch directory and no
scratch server may remain.
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

from testbed.postgres import give_to_server, world_dir
from torture.pgsource import PgSource
from torture.world import TrialFailed, World

DRILL = "torture"


class DrillKill:
    name = "drill"

    def __init__(self, world: World, where: str, rng: random.Random) -> None:
        self.world, self.where = world, where
        self.label = f"kill -9 drill ({where}, PostgreSQL 18)"
        self.scratch: Path | None = None
        self.source = PgSource(world, where, "drill", self._drilled, archiving=True)
        assert self.scratch is not None
        give_to_server(self.scratch)
        cluster = self.source.cluster
        cluster.sql("create table meters (id int primary key, site text);"
                    " insert into meters select i, 'site-' || i % 7 from generate_series(1, 5000) i")  # fmt: skip
        self.source.drplan("backup", "db-full")
        cluster.sql("insert into meters select i, 'late' from generate_series(5001, 6000) i")
        switched = str(cluster.sql("select pg_walfile_name(pg_switch_wal())")[0][0])
        deadline = time.monotonic() + 120
        while (
            str(cluster.sql("select last_archived_wal from pg_stat_archiver")[0][0] or "")
            < switched
        ):
            if time.monotonic() > deadline:
                raise TrialFailed(f"{switched} was not archived within 120 s")
            time.sleep(0.1)
        self.opening: float = self._timed(lambda: world.drplan("--version"))
        started = time.monotonic()
        self._passes()
        self.duration: float = time.monotonic() - started

    def _drilled(self, plan: dict[str, Any], source: PgSource) -> None:
        self.scratch = world_dir(source.short, "drills")  # a socket path must stay short
        location = "l1" if self.where == "s3" else "l0"
        plan["drills"] = {DRILL: {
            "kind": "database", "systems": ["db"], "from_location": location,
            "scratch_dir": str(self.scratch),
            "validations": {"tables": [{"table": "public.meters"}]},
        }}  # fmt: skip

    @staticmethod
    def _timed(fn: Any) -> float:
        started = time.monotonic()
        fn()
        return time.monotonic() - started

    def _passes(self) -> None:
        done = self.source.drplan("drill", "run", DRILL, codes=(0, 21))
        if done.returncode != 0:
            raise TrialFailed(
                f"the drill after the kill did not pass: {done.stderr.strip()[-400:]}"
            )
        assert self.scratch is not None
        left = sorted(p.name for p in self.scratch.iterdir())
        if left:
            raise TrialFailed(f"scratch directories left after a drill that passed: {left}")
        servers = _servers_on(self.scratch)
        if servers:
            raise TrialFailed(f"scratch servers left running: {servers}")

    def trial(self, rng: random.Random) -> bool:
        delay = rng.uniform(self.opening * 0.5, self.opening + self.duration * 1.1)
        killed, ran = self.world.killed_at(
            delay, *self.source.argv("drill", "run", DRILL)[1:],
            "--password-file", str(self.source.password), env=self.source.env,
        )  # fmt: skip
        if ran is not None and ran.code != 0:
            raise TrialFailed(f"the drill exited {ran.code}: {ran.err.strip()[-300:]}")
        self._passes()  # clears what the killed one left, and passes
        return killed

    def finish(self) -> None:
        self.source.close()


def _servers_on(scratch: Path) -> list[str]:
    found = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if str(scratch) in cmdline and "postgres" in cmdline:
            found.append(cmdline)
    return found
