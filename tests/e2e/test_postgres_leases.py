"""Leases on PostgreSQL: two stores (two replicas) on one database elect one leader."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from collector.leadership import Leadership
from collector.store import PostgresStore
from tests.pg_cluster import PgCluster


def test_one_leader_among_replicas_on_one_database(pg_cluster: PgCluster) -> None:
    url = pg_cluster.new_database()
    stores = [PostgresStore(url) for _ in range(4)]
    clock = [1_000_000]
    try:
        replicas = [Leadership(s, f"r{i}", 3000, lambda: clock[0]) for i, s in enumerate(stores)]
        with ThreadPoolExecutor(len(replicas)) as pool:
            won = list(pool.map(lambda r: r.check(), replicas))
        assert won.count(True) == 1  # concurrent claims: exactly one winner
        leader = replicas[won.index(True)]
        others = [r for r in replicas if r is not leader]
        clock[0] += 2000
        assert leader.check() and not any(r.check() for r in others)  # renewed
        clock[0] += 3000  # the leader died: its lease expires
        taken = [r.check() for r in others]
        assert taken.count(True) == 1
        assert leader.check() is False  # the old leader stays out
    finally:
        for store in stores:
            store.close()
