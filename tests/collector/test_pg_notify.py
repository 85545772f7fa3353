"""LISTEN/NOTIFY between two connections on a throwaway PostgreSQL: a notification
wakes the listener promptly and carries its payload; a listener that lost its
connection comes back."""

from __future__ import annotations

import asyncio

import psycopg

from collector.store.pg_notify import PgWakeups
from tests.pg_cluster import PgCluster


def test_a_notify_wakes_the_listener_with_its_payload(pg_cluster: PgCluster) -> None:
    url = pg_cluster.new_database()
    received: list[str] = []

    async def scenario() -> None:
        listener = PgWakeups(url, "test_channel", received.append)
        sender = PgWakeups(url, "test_channel")
        task = asyncio.create_task(listener.run_listener())
        await asyncio.wait_for(listener.woken.wait(), 10)  # set once listening
        listener.woken.clear()
        await sender.notify('{"session_id": "ses-1"}')
        await asyncio.wait_for(listener.woken.wait(), 2)  # far sooner than any poll
        assert received == ['{"session_id": "ses-1"}']
        other = PgWakeups(url, "another_channel")
        listener.woken.clear()
        await other.notify("elsewhere")
        await asyncio.sleep(0.3)
        assert not listener.woken.is_set() and received == ['{"session_id": "ses-1"}']
        task.cancel()
        await sender.close()
        await other.close()

    asyncio.run(scenario())


def test_the_listener_comes_back_after_its_connection_is_killed(pg_cluster: PgCluster) -> None:
    url = pg_cluster.new_database()
    received: list[str] = []

    async def scenario() -> None:
        listener = PgWakeups(url, "test_channel", received.append)
        task = asyncio.create_task(listener.run_listener())
        await asyncio.wait_for(listener.woken.wait(), 10)
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE query LIKE 'LISTEN%' AND pid <> pg_backend_pid()"
            )
        listener.woken.clear()
        await asyncio.wait_for(listener.woken.wait(), 10)  # reconnected: catches up
        sender = PgWakeups(url, "test_channel")
        await sender.notify("after")
        for _ in range(40):
            if received:
                break
            await asyncio.sleep(0.05)
        assert received == ["after"]
        task.cancel()
        await sender.close()

    asyncio.run(scenario())
