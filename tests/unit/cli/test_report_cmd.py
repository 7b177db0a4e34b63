"""``drplan report`` (the plan's recovery KPIs) and ``drplan drill report`` (every run as
well) as a user runs them: every format, over an empty catalog and over one holding
drill runs. Rows are recorded in the catalog as ``drplan drill run`` records them."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from drplan.catalog.paths import sqlite_url
from drplan.catalog.store import Catalog
from testbed.plans import clean_plan
from tests.conftest import Result

Run = Callable[..., Result]
NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
COMMANDS = {"report": ("report",), "drill report": ("drill", "report")}
TITLES = {"report": "Recovery KPI report", "drill report": "Drill report"}
KPI_HEADER = "| window | group | recoveries | within RTO | within RPO | integrity | criteria met |"
# The two runs below: in the last 30 days one recovery, passed; in 90 days also a failed one.
KPI_ROWS = {
    "empty": {"30d": ["0", "-", "-", "-", "-"], "90d": ["0", "-", "-", "-", "-"]},
    "with runs": {
        "30d": ["1", "100%", "100%", "100%", "yes"],
        "90d": ["2", "50%", "100%", "50%", "no: rto_achievement, data_integrity"],
    },
}


def drill_row(run: str, days_ago: int, passed: bool) -> dict[str, Any]:
    """A catalog row as ``drplan drill run`` writes it (drills.evidence.catalog_row)."""
    rto = 600.0 if passed else 20_000.0  # the critical tier's objective is 4h
    system = {
        "system": "db",
        "stage": "recovery",
        "error": None,
        "rto": {"seconds": rto, "objective_seconds": 14_400, "met": passed},
        "rpo": {"seconds": 0.0, "objective_seconds": 900, "met": True},
        "validations": [{"name": "pg_amcheck", "outcome": "passed" if passed else "failed"}],
    }
    started = NOW - timedelta(days=days_ago)
    return {
        "run": run,
        "drill": "monthly-database",
        "kind": "database",
        "started_at": started,
        "ended_at": started + timedelta(seconds=rto),
        "passed": int(passed),
        "rto_seconds": rto,
        "rto_met": int(passed),
        "rpo_seconds": 0.0,
        "rpo_met": 1,
        "integrity": int(passed),
        "evidence": f"/var/lib/drplan/drills/evidence/{run}.json",
        "sha256": "ab" * 32,
        "summary": "" if passed else "db: pg_amcheck failed: corrupt index",
        "result": json.dumps({"systems": [system]}),
    }


@pytest.fixture(params=["empty", "with runs"])
def catalog(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    """The catalog's URL, empty or holding a passed run (10 days ago) and a failed one (40)."""
    url = sqlite_url(str(tmp_path / "catalog.db"))
    store = Catalog.open(url)
    try:
        if request.param == "with runs":
            store.record_drill(drill_row("run-passed", 10, passed=True))
            store.record_drill(drill_row("run-failed", 40, passed=False))
    finally:
        store.close()
    return request.param, url


@pytest.fixture
def plan_file(write_plan: Callable[..., Path], monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TEST_DB_PASSWORD", "not-used")
    monkeypatch.setenv("DRPLAN_NOW", "2026-11-26T12:00:00Z")
    return write_plan(clean_plan())


class _Page(HTMLParser):
    """Checks a page is well formed: every element closed in order, nothing fetched."""

    VOID = frozenset({"meta", "br", "hr", "img", "link", "input", "col", "wbr"})

    def __init__(self) -> None:
        super().__init__()
        self.open: list[str] = []
        self.seen: list[str] = []
        self.title = ""
        self.cells: list[str] = []
        self.fetches: list[str] = []
        self.doctype = ""

    def handle_decl(self, decl: str) -> None:
        self.doctype = decl

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.seen.append(tag)
        self.fetches += [f"{tag} {name}" for name, _ in attrs if name in ("src", "href")]
        if tag not in self.VOID:
            self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        assert self.open, f"</{tag}> closes nothing"
        assert self.open[-1] == tag, f"</{tag}> closes <{self.open[-1]}>"
        self.open.pop()

    def handle_data(self, data: str) -> None:
        if self.open and self.open[-1] == "title":
            self.title += data
        elif self.open and self.open[-1] in ("td", "th"):
            self.cells.append(data)


def _kpi_cells(page: _Page, window: str) -> list[str]:
    """The cells of a window's `all` row of the KPI table, after window and group."""
    for i, cell in enumerate(page.cells):
        if cell == window and page.cells[i + 1] == "all":
            return page.cells[i + 2 : i + 7]
    raise AssertionError(f"no {window} row in {page.cells}")


@pytest.mark.parametrize("fmt", ["md", "html", "json"])
@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_report_renders_in_every_format(
    run: Run, plan_file: Path, catalog: tuple[str, str], command: str, fmt: str
) -> None:
    contents, url = catalog
    result = run("--plan", str(plan_file), *COMMANDS[command], "--format", fmt, "--catalog", url)
    assert result.code == 0, result.err
    assert result.err == ""
    runs_listed = command == "drill report"
    expected = KPI_ROWS[contents]
    if fmt == "json":
        data = json.loads(result.out)
        assert data["title"] == TITLES[command]
        assert data["kpis"]["30d"]["all"]["recoveries"] == int(expected["30d"][0])
        assert data["kpis"]["90d"]["all"]["recoveries"] == int(expected["90d"][0])
        if runs_listed:
            assert len(data["runs"]) == (2 if contents == "with runs" else 0)
        else:
            assert "runs" not in data  # the KPI report leaves the runs to `drill report`
    elif fmt == "md":
        lines = result.out.splitlines()
        assert lines[0] == f"# {TITLES[command]} (2026-11-26T12:00:00Z)"
        assert KPI_HEADER in lines
        for window, cells in expected.items():
            assert f"| {window} | all | {' | '.join(cells)} |" in lines
        assert ("## Runs" in lines) is runs_listed
        listed = [line for line in lines if "monthly-database" in line]
        assert len(listed) == (2 if runs_listed and contents == "with runs" else 0)
    else:
        page = _Page()
        page.feed(result.out)
        page.close()
        assert page.doctype.lower() == "doctype html"
        assert page.open == []  # every element closed
        assert page.seen[:2] == ["html", "head"]
        assert "body" in page.seen
        assert page.title.startswith(TITLES[command])
        assert page.fetches == []  # self-contained: no scripts, styles or images fetched
        assert "script" not in page.seen
        assert "within RTO" in page.cells
        for window, cells in expected.items():
            assert _kpi_cells(page, window) == cells
