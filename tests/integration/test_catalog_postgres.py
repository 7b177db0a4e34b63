"""The catalog on a real PostgreSQL, as daemons on several hosts share it: of many
racing for one lease exactly one wins, and a dead holder's lease passes on once it
has expired; an unreachable server is one clear error."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from drplan.catalog.store import Catalog
from drplan.errors import CatalogError
from tests.fixtures.postgres import PgCluster, free_port

T0 = datetime(2026, 11, 26, 10, 15, tzinfo=UTC)


def url(cluster: PgCluster) -> str:
    return f"postgresql://postgres:{cluster.password}@127.0.0.1:{cluster.port}/postgres"


def race(catalogs: list[Catalog], name: str, now: datetime, until: datetime) -> list[str]:
    """Every catalog (a daemon each) asks for ``name`` at the same instant; who got it."""
    start, won = threading.Barrier(len(catalogs)), []

    def ask(catalog: Catalog, holder: str) -> None:
        start.wait()
        if catalog.acquire(name, holder, now, until):
            won.append(holder)

    threads = [threading.Thread(target=ask, args=(c, f"host-{i}")) for i, c in enumerate(catalogs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return won


def test_of_daemons_racing_for_a_lease_exactly_one_wins(
    pg_cluster: Callable[..., PgCluster],
) -> None:
    cluster = pg_cluster()
    catalogs = [Catalog.open(url(cluster)) for _ in range(6)]
    try:
        for round_ in range(5):  # several rounds: a race lost by luck once proves little
            won = race(catalogs, f"job:db-full:{round_}", T0, T0 + timedelta(minutes=1))
            assert len(won) == 1, won
        # The winner dies; once its lease expires another host takes over.
        assert catalogs[0].acquire("job:x", "host-0", T0, T0 + timedelta(seconds=20))
        assert not catalogs[1].acquire("job:x", "host-1", T0 + timedelta(seconds=5), T0)
        later = T0 + timedelta(seconds=21)
        assert catalogs[1].acquire("job:x", "host-1", later, later + timedelta(seconds=20))
    finally:
        for catalog in catalogs:
            catalog.close()


def test_an_unreachable_catalog_server_is_one_clear_error_without_its_password() -> None:
    dead = f"postgresql://drplan:s3cret-catalog-pw@127.0.0.1:{free_port()}/catalog"
    with pytest.raises(CatalogError) as info:
        Catalog.open(dead)
    assert info.value.exit_code == 20
    assert "cannot be used" in info.value.message
    assert "s3cret-catalog-pw" not in info.value.message
