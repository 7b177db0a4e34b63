"""The repository is the truth: a damaged SQLite catalog stops the daemon with one line
(exit 20) naming the file and the fix; `drplan catalog rebuild` moves it aside and makes
the history again from the repositories, after which `drplan status` shows each job's
newest backup and last run as before the damage, and the daemon runs its slots again
(and not the ones already run)."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from drplan import clock
from drplan.catalog.paths import sqlite_url
from drplan.catalog.store import SUCCEEDED, Catalog
from tests.integration.test_serve import files_plan, in_process, prepared
from tests.unit.catalog.test_sqlite_file import (
    header_overwritten,
    runs_page_flipped,
    truncated,
)


def hour(at: datetime) -> datetime:
    return at.replace(minute=0, second=0, microsecond=0)


def status(drplan: list[str], env: dict[str, str]) -> dict[str, Any]:
    shown = subprocess.run([*drplan, "status", "--json"], env=env, capture_output=True,
                           text=True, check=False, timeout=120)  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    return {name: {"newest": job["newest"], "last_run": (job["last_run"] or {}).get("status")}
            for name, job in json.loads(shown.stdout)["jobs"].items()}  # fmt: skip


@pytest.mark.parametrize(
    "damage", [truncated, header_overwritten, runs_page_flipped], ids=lambda d: d.__name__
)
def test_a_damaged_catalog_is_exit_20_and_a_rebuild_brings_status_and_the_daemon_back(
    tmp_path: Path, source: Path, password: str, damage: Callable[[Path], None]
) -> None:
    plan = files_plan(tmp_path, source, "1h")
    path = tmp_path / "catalog.db"
    drplan, env = prepared(plan, sqlite_url(str(path)))
    start = hour(datetime.now(UTC)) - timedelta(hours=4)
    daemon = in_process(plan, tmp_path, start)
    for slot in (1, 2):  # two hourly slots run, each a real `drplan backup web`
        daemon.now[0] = start + timedelta(hours=slot, seconds=1)
        assert daemon.daemon.env is not None
        daemon.daemon.env[clock.NOW_ENV] = clock.rfc3339(daemon.now[0])  # the backup's time
        daemon.settle()
    assert [r.status for r in daemon.catalog.runs("web")] == [SUCCEEDED, SUCCEEDED]
    daemon.catalog.close()
    before = status(drplan, env)
    assert before["web"]["last_run"] == SUCCEEDED
    assert before["web"]["newest"] is not None

    damage(path)
    damaged = path.read_bytes()
    serve = subprocess.run([*drplan, "serve", "--listen", "127.0.0.1:0"], env=env,
                           capture_output=True, text=True, check=False, timeout=60)  # fmt: skip
    assert serve.returncode == 20, serve.stderr
    assert serve.stderr.count("\n") == 1, serve.stderr
    assert serve.stderr.startswith(f"drplan: catalog {path} is damaged ("), serve.stderr
    assert f"run `drplan catalog rebuild --catalog sqlite:///{path}`" in serve.stderr
    report = subprocess.run([*drplan, "drill", "report"], env=env, capture_output=True,
                            text=True, check=False, timeout=120)  # fmt: skip
    assert (report.returncode, report.stderr) == (20, serve.stderr)
    # What the repositories tell is still told, with the fix for what the catalog held.
    shown = subprocess.run([*drplan, "status"], env=env, capture_output=True, text=True,
                           check=False, timeout=120)  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert "catalog unavailable" in shown.stdout
    assert "drplan catalog rebuild" in shown.stdout

    rebuilt = subprocess.run([*drplan, "catalog", "rebuild"], env=env, capture_output=True,
                             text=True, check=False, timeout=120)  # fmt: skip
    assert rebuilt.returncode == 0, rebuilt.stderr
    aside = [
        p for p in tmp_path.glob("catalog.db.damaged-*") if not p.name.endswith(("-wal", "-shm"))
    ]
    assert [p.read_bytes() for p in aside] == [damaged]  # kept, whole, never deleted
    assert f"moved aside to {aside[0]}" in rebuilt.stdout
    assert "2 runs added from the snapshots of primary (2 of web)" in rebuilt.stdout
    assert "not rebuilt (no repository records them): runs that saved no snapshot" in rebuilt.stdout
    assert status(drplan, env) == before

    # The daemon works again, on the rebuilt history: the slots run before the damage are
    # not run again; the next one is.
    daemon = in_process(plan, tmp_path, start + timedelta(hours=2, minutes=30))
    daemon.daemon.tick()
    assert not daemon.daemon.running
    daemon.now[0] = start + timedelta(hours=3, seconds=1)
    assert daemon.daemon.env is not None
    daemon.daemon.env[clock.NOW_ENV] = clock.rfc3339(daemon.now[0])
    daemon.settle()
    runs = daemon.catalog.runs("web")
    assert [r.status for r in runs] == [SUCCEEDED] * 3
    assert runs[0].slot == start + timedelta(hours=3)
    daemon.catalog.close()
    catalog = Catalog.open(sqlite_url(str(path)))
    assert len(catalog.runs("web")) == 3
    catalog.close()
    assert os.path.exists(aside[0])
