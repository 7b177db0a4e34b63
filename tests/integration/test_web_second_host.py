"""Several hosts on one PostgreSQL catalog: `drplan web` on a second host serves the
incidents the first journals, and a change made there follows every event of the first
host in the one timeline; the first host, at its next change, takes it in before its own,
so each host's journal, and the catalog, hold one unbroken chain."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import yaml

from drplan import clock
from drplan.catalog.store import Catalog
from drplan.sources.postgres.scratch import free_port
from drplan.web.accounts import Accounts
from testbed.plans import clean_plan
from tests.conftest import minutes_ago, wait_until
from tests.fixtures.postgres import PgCluster


def test_a_second_host_serves_and_extends_the_first_hosts_timeline(
    tmp_path: Path, pg_cluster: Callable[..., PgCluster]
) -> None:
    cluster = pg_cluster()
    url = f"postgresql://postgres:{cluster.password}@127.0.0.1:{cluster.port}/postgres"
    plan = tmp_path / "plan.yaml"
    plan.write_text(yaml.safe_dump(clean_plan()))

    def host(name: str) -> dict[str, str]:
        return {**os.environ, "DRPLAN_CATALOG": url, "DRPLAN_STATE_DIR": str(tmp_path / name),
                "TEST_DB_PASSWORD": "x"}  # fmt: skip

    def cli(on: str, *args: str) -> Any:
        done = subprocess.run([sys.executable, "-m", "drplan", "--plan", str(plan), *args],
                              env=host(on), capture_output=True, text=True, check=False)  # fmt: skip
        assert done.returncode == 0, done.stderr
        return done.stdout

    inc = json.loads(cli("a", "incident", "declare", "db-loss", "--since", minutes_ago(10),
                         "--json"))["id"]  # fmt: skip
    cli("a", "incident", "note", inc, "seen on host a")
    catalog = Catalog.open(url)
    try:
        accounts = Accounts(catalog)
        accounts.add_user("ann", None, None, ["ic"], "responder", clock.now())
        token = accounts.create_token("ann", "t", ["read", "incidents:write"], None, clock.now())[0]
    finally:
        catalog.close()
    port = free_port()
    log = (tmp_path / "web.log").open("wb")
    web = subprocess.Popen([sys.executable, "-m", "drplan", "--plan", str(plan), "web",
                            "--listen", f"127.0.0.1:{port}"], env=host("b"), stdout=log,
                           stderr=log)  # fmt: skip
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30,
                          headers={"Authorization": f"Bearer {token}"})  # fmt: skip

    def up() -> bool:
        try:
            return client.get("/healthz").status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(up, "drplan web on the second host", 60, (tmp_path / "web.log").read_text)
        shown = client.get(f"/api/v1/incidents/{inc}/timeline").json()["items"]
        assert [e["kind"] for e in shown] == ["declared", "note"]  # host a's, from the catalog
        noted = client.post(f"/api/v1/incidents/{inc}/notes",
                            json={"text": "seen on host b", "role": "ic"})  # fmt: skip
        assert noted.status_code == 200, noted.text
        after = client.get(f"/api/v1/incidents/{inc}/timeline").json()["items"]
        assert [e["data"].get("text") for e in after][1:] == ["seen on host a", "seen on host b"]
        assert after[2]["prev"] == after[1]["hash"]  # it goes on from host a's last
    finally:
        web.terminate()
        web.wait(30)
        log.close()
    cli("a", "incident", "note", inc, "host a again")  # takes host b's note in first
    timeline = [
        json.loads(line) for line in cli("a", "incident", "timeline", inc, "--json").splitlines()
    ]
    assert [e["data"].get("text") for e in timeline][1:] == [
        "seen on host a", "seen on host b", "host a again"]  # fmt: skip
    assert [e["seq"] for e in timeline] == [1, 2, 3, 4]
    verified = subprocess.run([sys.executable, "-m", "drplan", "incident", "verify", inc],
                              env=host("a"), capture_output=True, text=True, check=False)  # fmt: skip
    assert verified.returncode == 0, verified.stdout + verified.stderr
