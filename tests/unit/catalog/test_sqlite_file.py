"""A damaged SQLite catalog is told when it is opened, by file and with the fix, however
it was damaged (cut short, its header overwritten, one page gone bad); moved aside, it is
kept whole; a catalog replaced under an open handle is opened anew."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from drplan.catalog.paths import sqlite_url
from drplan.catalog.sqlite_file import move_aside
from drplan.catalog.store import SUCCEEDED, Catalog
from drplan.errors import CatalogError

T0 = datetime(2026, 11, 26, 10, 15, tzinfo=UTC)
PAGE = 4096


def catalog_with_runs(path: Path, count: int = 200) -> None:
    """A catalog whose runs fill several pages, checkpointed into its main file."""
    catalog = Catalog.open(sqlite_url(str(path)))
    catalog.add_runs([
        {"job": "web", "slot": T0 + timedelta(hours=i), "attempt": 1, "host": "host:1",
         "started_at": T0 + timedelta(hours=i), "ended_at": T0 + timedelta(hours=i, seconds=9),
         "status": SUCCEEDED, "snapshot": f"{i:064x}", "location": "primary"}
        for i in range(count)
    ])  # fmt: skip
    assert len(catalog.runs(limit=count)) == count
    catalog.close()
    assert not Path(f"{path}-wal").exists()  # the last connection checkpointed it


def truncated(path: Path) -> None:
    """Cut to half its size, in the middle of a page (as a copy cut short would be)."""
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size // PAGE // 2 * PAGE + PAGE // 2)


def header_overwritten(path: Path) -> None:
    with open(path, "r+b") as f:
        f.write(os.urandom(100))


def runs_page_flipped(path: Path) -> None:
    """Every bit of the first page of the runs table inverted."""
    with sqlite3.connect(path) as db:
        (root,) = db.execute("select rootpage from sqlite_master where name = 'runs'").fetchone()
    db.close()
    with open(path, "r+b") as f:
        f.seek((root - 1) * PAGE)
        page = f.read(PAGE)
        f.seek((root - 1) * PAGE)
        f.write(bytes(b ^ 0xFF for b in page))


def last_page_flipped(path: Path) -> None:
    size = path.stat().st_size
    with open(path, "r+b") as f:
        f.seek(size - PAGE)
        page = f.read(PAGE)
        f.seek(size - PAGE)
        f.write(bytes(b ^ 0xFF for b in page))


DAMAGE = [truncated, header_overwritten, runs_page_flipped, last_page_flipped]


@pytest.mark.parametrize("damage", DAMAGE, ids=lambda d: d.__name__)
def test_a_damaged_catalog_is_one_error_naming_the_file_and_the_fix(
    tmp_path: Path, damage: Callable[[Path], None]
) -> None:
    path = tmp_path / "catalog.db"
    catalog_with_runs(path)
    damage(path)
    with pytest.raises(CatalogError) as info:
        Catalog.open(sqlite_url(str(path)))
    error = info.value
    assert error.exit_code == 20
    assert error.message.startswith(f"catalog {path} is damaged (")
    assert "\n" not in error.message + (error.hint or "")
    assert f"drplan catalog rebuild --catalog sqlite:///{path}" in (error.hint or "")


def test_moved_aside_a_damaged_catalog_is_kept_whole_and_a_new_one_opens(tmp_path: Path) -> None:
    path = tmp_path / "catalog.db"
    catalog_with_runs(path, 3)
    header_overwritten(path)
    Path(f"{path}-wal").write_bytes(b"what the log held")
    damaged = path.read_bytes()
    aside = move_aside(str(path), T0)
    assert aside == f"{path}.damaged-20261126T101500Z"
    assert Path(aside).read_bytes() == damaged
    assert Path(f"{aside}-wal").read_bytes() == b"what the log held"
    assert not path.exists()
    assert not Path(f"{path}-wal").exists()
    assert move_aside(str(path), T0) is None  # nothing there
    fresh = Catalog.open(sqlite_url(str(path)))
    assert fresh.runs() == []
    fresh.close()
    header_overwritten(path)
    assert move_aside(str(path), T0) == f"{aside}.2"  # the first one is not overwritten
    assert Path(aside).read_bytes() == damaged


def test_a_catalog_replaced_under_an_open_handle_is_opened_anew(tmp_path: Path) -> None:
    """A daemon keeps its catalog open: once `drplan catalog rebuild` has moved the file
    aside and made a new one, the daemon writes to the new one, not the old."""
    path = tmp_path / "catalog.db"
    daemon = Catalog.open(sqlite_url(str(path)))
    daemon.start_run("web", "host:1", T0, T0)
    aside = move_aside(str(path), T0)
    rebuilt = Catalog.open(sqlite_url(str(path)))
    rebuilt.start_run("web", "host:rebuilt", T0 - timedelta(hours=1), None)
    rebuilt.close()
    daemon.start_run("web", "host:1", T0 + timedelta(hours=1), T0 + timedelta(hours=1))
    assert [r.host for r in daemon.runs()] == ["host:1", "host:rebuilt"]
    daemon.close()
    assert aside is not None
    with sqlite3.connect(aside) as old:
        assert old.execute("select count(*) from runs").fetchone() == (1,)
    old.close()
