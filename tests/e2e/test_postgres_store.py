"""A collector on PostgreSQL end to end: ``serve --store URL`` with a real agent.

The agent enrols (join token made by the admin CLI, which follows the data directory's
bound store), streams batches that land in PostgreSQL exactly once, and the console
API answers from there; a customer user still sees only its own hosts. Nothing is
written to the data directory's SQLite file.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from collector.store import PostgresStore
from tests.pg_cluster import PgCluster
from tests.support import Agent, Collector, wait_for


@pytest.fixture
def pg_collector(pg_cluster: PgCluster, tmp_path: Path) -> Iterator[tuple[Collector, str]]:
    url = pg_cluster.new_database()
    server = Collector(tmp_path / "collector", extra_args=["--store", url]).start()
    yield server, url
    server.stop()
    print("--- collector log ---\n" + server.log_text()[-6000:])


def stored_sequences(url: str, agent_id: str) -> list[int]:
    store = PostgresStore(url)
    try:
        return store.stored_sequences(agent_id)
    finally:
        store.close()


def test_agent_ingests_into_postgresql(
    pg_collector: tuple[Collector, str], make_agent: Callable[..., Agent]
) -> None:
    collector, url = pg_collector
    agent = make_agent("db-1")
    result = agent.enroll(collector.join_command("acme"))
    assert result.returncode == 0, result.stderr
    agent.start()
    wait_for(lambda: len(stored_sequences(url, agent.agent_id)) >= 3, 30, "3 batches in PostgreSQL")
    sequences = stored_sequences(url, agent.agent_id)
    assert sequences == list(range(1, len(sequences) + 1))  # in order, none twice
    assert not (collector.data_dir / "aftercare.db").exists()

    engineer = collector.add_user("erin", "engineer")
    other = collector.add_user("olga", "customer", "globex")
    hosts = collector.client_json(engineer, "agents")
    assert [h["hostname"] for h in hosts] == ["db-1"]
    assert collector.client_json(other, "agents") == []  # another customer's host stays hidden

    collector.stop()  # a restart finds everything in PostgreSQL again
    before = len(stored_sequences(url, agent.agent_id))
    collector.start()
    assert [h["hostname"] for h in collector.client_json(engineer, "agents")] == ["db-1"]
    wait_for(lambda: len(stored_sequences(url, agent.agent_id)) > before + 1, 30, "more batches")
    agent.stop()
    sequences = stored_sequences(url, agent.agent_id)
    assert sequences == list(range(1, len(sequences) + 1))  # the outage lost and doubled none
