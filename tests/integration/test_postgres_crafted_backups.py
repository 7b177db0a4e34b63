"""Crafted base backups: snapshots written with the repository's own key (a key holder gone
rogue, or a bug) whose records or trees would carry a restore out of its target. Each
is refused as damage (exit 13) before anything is written, nothing outside the target
is created, moved or deleted, and the location's other base backups still restore."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from drplan.repo.locks import RepositoryLock
from drplan.repo.repository import Repository
from drplan.repo.tree import Node
from tests.conftest import Result
from tests.fixtures.postgres import PgCluster
from tests.integration.conftest import open_repo
from tests.integration.test_postgres_full_backup import pg_plan

Run = Callable[..., Result]
Start = Callable[..., PgCluster]


def backed_up(
    run: Run, repo_dir: str, pg_cluster: Start, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[str, str]:
    """A real cluster's full backup in repo_dir: (the plan, the snapshot id)."""
    cluster = pg_cluster()
    cluster.sql("create table r as select generate_series(1, 100) id")
    pg_plan(cluster, repo_dir, tmp_path)
    monkeypatch.setenv("TEST_DB_PASSWORD", cluster.password)
    plan = str(tmp_path / "plan.yaml")
    full = run("--plan", plan, "backup", "db-full", "--json")
    assert full.code == 0, full.err
    return plan, str(json.loads(full.out)["snapshot"])


def craft(
    repo_dir: str,
    genuine: str,
    source: dict[str, Any],
    add: Callable[[Repository, list[Node]], None] = lambda repo, nodes: None,
) -> str:
    """A newer copy of base backup ``genuine`` with ``source`` recorded and ``add`` applied
    to its root directory: encrypted and authenticated like any snapshot."""
    repo = open_repo(repo_dir)
    with RepositoryLock(repo, exclusive=False, operation="backup"):
        original = repo.find_snapshot(genuine[:12])
        nodes = list(repo.load_tree(original.tree))
        add(repo, nodes)
        crafted = dataclasses.replace(
            original,
            id="",
            time=original.time + timedelta(seconds=1),
            tree=repo.save_tree(nodes),
            source={**original.source, **source},
        )
        return repo.save_snapshot(crafted)


def symlink(name: bytes, to: Path) -> Node:
    return Node(name=name, type="symlink", mode=0o777, uid=0, gid=0, mtime_ns=0,
                target=str(to).encode())  # fmt: skip


def tree_of(path: Path) -> list[tuple[str, str]]:
    """Everything below ``path``: (relative path, what it is or holds)."""
    return sorted(
        (str(p.relative_to(path)), "link" if p.is_symlink() else
         hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir")
        for p in path.rglob("*")
    )  # fmt: skip


@pytest.mark.parametrize("oid", ["../../canary", "absolute"])
def test_a_tablespace_oid_that_leaves_the_target_is_refused_and_nothing_moves(
    run: Run,
    repo_dir: str,
    pg_cluster: Start,
    tmp_path: Path,
    pg_scratch: Path,
    monkeypatch: pytest.MonkeyPatch,
    oid: str,
) -> None:
    plan, genuine = backed_up(run, repo_dir, pg_cluster, tmp_path, monkeypatch)
    area = pg_scratch / "area"
    canary = area / "canary"  # where ../../canary leads from the tablespace's held copy
    canary.mkdir(parents=True)
    (canary / "keep").write_text("mine")
    value = str(canary) if oid == "absolute" else oid

    def held(repo: Repository, nodes: list[Node]) -> None:  # where tablespaces are kept
        nodes.append(Node(name=b".drplan-tablespaces", type="dir", mode=0o700, uid=0, gid=0,
                          mtime_ns=0, subtree=repo.save_tree([])))  # fmt: skip

    spaces = [{"oid": value, "location": "/srv/ts"}]
    crafted = craft(repo_dir, genuine, {"tablespaces": spaces}, held)
    before = tree_of(pg_scratch)
    target = area / "restored"

    refused = run("--plan", plan, "restore", "postgres", "db", "--target-dir", str(target),
                  "--to", crafted[:12])  # fmt: skip
    assert not canary.is_symlink()
    assert (canary / "keep").read_text() == "mine"
    assert not (pg_scratch / "canary").exists()
    assert tree_of(pg_scratch) == before  # nothing created, moved or deleted anywhere
    assert refused.code == 13, refused.err
    assert f"base backup {crafted[:8]}" in refused.err
    assert f"tablespace oid is {value!r}" in refused.err
    assert len(refused.err.strip().splitlines()) == 1

    # The crafted backup is the newest, yet it neither restores nor stands in the way.
    latest = run("--plan", plan, "restore", "postgres", "db", "--target-dir", str(target),
                 "--json")  # fmt: skip
    assert latest.code == 0, latest.err
    assert json.loads(latest.out)["chain"] == [genuine]
    assert f"base backup {crafted[:8]}" in latest.err
    assert "not used" in latest.err
    assert (canary / "keep").read_text() == "mine"
    checked = run("--plan", plan, "check", "postgres", "db")
    assert checked.code == 13
    assert crafted[:8] in checked.out + checked.err


@pytest.mark.parametrize("layout", [".drplan-tablespaces", "pg_tblspc"])
def test_a_backup_whose_tree_links_out_of_the_target_is_refused_and_nothing_outside_changes(
    run: Run,
    repo_dir: str,
    pg_cluster: Start,
    tmp_path: Path,
    pg_scratch: Path,
    monkeypatch: pytest.MonkeyPatch,
    layout: str,
) -> None:
    plan, genuine = backed_up(run, repo_dir, pg_cluster, tmp_path, monkeypatch)
    elsewhere = pg_scratch / "elsewhere"  # someone's data, outside any target
    (elsewhere / "16384").mkdir(parents=True)
    (elsewhere / "16384" / "keep").write_text("mine")

    def add(repo: Repository, nodes: list[Node]) -> None:
        if layout == ".drplan-tablespaces":
            # The restore would move .drplan-tablespaces/16384, i.e. elsewhere/16384, into
            # its place, and remove it there when verification fails.
            nodes.append(symlink(b".drplan-tablespaces", elsewhere))
            return
        # A link PostgreSQL would follow, for a tablespace the backup does not record.
        at = next(i for i, n in enumerate(nodes) if n.name == b"pg_tblspc")
        inside = [*repo.load_tree(nodes[at].subtree or b""), symlink(b"99999", elsewhere)]
        nodes[at] = dataclasses.replace(nodes[at], subtree=repo.save_tree(inside))

    spaces = [{"oid": "16384", "location": "/srv/ts"}] if layout != "pg_tblspc" else []
    crafted = craft(repo_dir, genuine, {"tablespaces": spaces}, add)
    before = tree_of(pg_scratch)
    target = pg_scratch / "restored"

    refused = run("--plan", plan, "restore", "postgres", "db", "--target-dir", str(target),
                  "--to", crafted[:12])  # fmt: skip
    assert (elsewhere / "16384" / "keep").read_text() == "mine"
    assert tree_of(pg_scratch) == before  # nothing created, moved or deleted anywhere
    assert refused.code == 13, refused.err
    assert f"base backup {crafted[:8]}" in refused.err
    assert f"is a symlink to '{elsewhere}'" in refused.err
    assert len(refused.err.strip().splitlines()) == 1
