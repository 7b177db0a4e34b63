"""kill -9 of ``drplan wal stream`` (and its pg_receivewal) under a commit load.

A real PostgreSQL 18 takes one row per transaction all the while. Each trial starts the
stream, lets it run a random while, and kills it with everything it started, as a
crash would; the replication slot keeps what was not received yet. At the end the
stream runs once more to a clean stop, the archive must hold every segment from the
base backup on (no gap), and the archive restored to its latest point must hold every
row committed: a kill may delay shipping, never lose a segment.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import psycopg

from drplan.sources.postgres.scratch import free_port
from testbed.postgres import (
    give_to_server,
)
from torture.pgsource import PgSource
from torture.world import TrialFailed, World

STOP_WAIT = 60.0


class StreamKill:
    name = "wal stream"

    def __init__(self, world: World, where: str, rng: random.Random) -> None:
        self.world, self.where = world, where
        self.label = f"kill -9 wal stream ({where}, PostgreSQL 18 under load)"
        self.source = PgSource(world, where, "stream", _streaming)
        self.cluster = self.source.cluster
        self.cluster.sql("create table orders (id bigserial primary key)")
        self.env = self.source.env
        self.committed = 0
        self.stop = threading.Event()
        self.load = threading.Thread(target=self._load, daemon=True)
        # The stream first (a base backup is rolled forward only by WAL received after
        # it), then the base backup, then the load.
        self._stream_until(self._received, 60)
        self.source.drplan("backup", "db-full")
        self.load.start()

    def _load(self) -> None:
        with contextlib.suppress(psycopg.Error), self.cluster.connect() as conn:
            while not self.stop.is_set():
                row = conn.execute("insert into orders default values returning id").fetchone()
                self.committed = int(str(row[0])) if row else self.committed
                self.stop.wait(0.005)

    def _spawn(self) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            self.source.argv("wal", "stream", "--password-file", str(self.source.password)),
            env=self.env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip

    def _received(self) -> bool:
        spool = Path(self.env["DRPLAN_STATE_DIR"]) / "wal-stream" / "db"
        return spool.is_dir() and any(spool.glob("*.partial"))

    def _stream_until(self, condition: Any, timeout: float) -> None:
        """Run the stream until ``condition``, then stop it cleanly."""
        proc = self._spawn()
        deadline = time.monotonic() + timeout
        try:
            while not condition():
                if proc.poll() is not None:
                    raise TrialFailed(f"wal stream ended (exit {proc.returncode})")
                if time.monotonic() > deadline:
                    raise TrialFailed("wal stream did not get going")
                time.sleep(0.1)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(STOP_WAIT)

    def trial(self, rng: random.Random) -> bool:
        proc = self._spawn()
        try:
            proc.wait(timeout=rng.uniform(0.3, 4.0))
            raise TrialFailed(f"wal stream ended on its own (exit {proc.returncode})")
        except subprocess.TimeoutExpired:
            pass
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        return True

    def finish(self) -> None:
        self.stop.set()
        self.load.join(30)
        last = self.committed
        marker = self.cluster.sql("select pg_current_wal_lsn()::text")[0][0]
        self.cluster.sql("select pg_switch_wal()")
        shipped_after = time.time()
        self._stream_until(lambda: self._shipped_since(shipped_after), 120)
        self.source.drplan("wal", "status")  # exit 1 on a gap in any location
        recovered = self._restore_count()
        if recovered < last:
            raise TrialFailed(
                f"segments lost: {last - recovered} of {last} committed rows not in the"
                f" archive (WAL up to {marker} was written before the last clean stop)"
            )

    def _shipped_since(self, since: float) -> bool:
        wal = Path(self.source.repos[0]) / "wal"
        return any(p.stat().st_mtime > since for p in wal.rglob("*") if p.is_file())

    def _restore_count(self) -> int:
        target = self.source.dir / "restored"
        port = free_port()
        give_to_server(Path(self.source.repos[0]))  # written by the stream, as us
        self.source.drplan("restore", "postgres", "db", "--to", "latest", "--target-dir", str(target),
                     "--start", "--port", str(port))  # fmt: skip
        try:
            dsn = f"host=127.0.0.1 port={port} user=postgres dbname=postgres"
            with psycopg.connect(dsn, password=self.cluster.password, autocommit=True) as conn:
                row = conn.execute("select coalesce(max(id), 0) from orders").fetchone()
            return int(str(row[0])) if row else 0
        finally:
            subprocess.run(
                [*self.cluster.run_as, str(self.cluster.bin_dir / "pg_ctl"), "-D", str(target),
                 "stop", "-m", "immediate"], capture_output=True, check=False, timeout=120,
            )  # fmt: skip
            self.source.close()


def _streaming(plan: dict[str, Any], _: PgSource) -> None:
    plan["jobs"]["db-wal"] |= {"stream": True, "partial_every": "1s"}
