"""Shared fixtures: a real collector process and factories for real agent processes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.pg_cluster import NO_POSTGRESQL, PgCluster, find_bin_dir
from tests.support import Agent, Collector


@pytest.fixture
def collector(tmp_path: Path) -> Iterator[Collector]:
    """A running collector with a fresh data dir; its log is printed if the test fails."""
    server = Collector(tmp_path / "collector").start()
    yield server
    server.stop()
    print("--- collector log ---\n" + server.log_text()[-6000:])


@pytest.fixture
def make_agent(tmp_path: Path) -> Iterator[Callable[..., Agent]]:
    """Factory: ``make_agent(hostname, **config)`` returns an (unenrolled) Agent."""
    agents: list[Agent] = []

    def make(hostname: str, **config: object) -> Agent:
        agent = Agent(tmp_path / f"agent-{hostname}", hostname, {"interval": "1s", **config})
        agents.append(agent)
        return agent

    yield make
    for agent in agents:
        agent.stop()
        print(f"--- agent {agent.hostname} log ---\n" + agent.log_text()[-4000:])


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    """One throwaway PostgreSQL cluster for the test session (skips where none is installed)."""
    bin_dir = find_bin_dir()
    if bin_dir is None:
        pytest.skip(NO_POSTGRESQL)
    cluster = PgCluster(bin_dir).start()
    yield cluster
    cluster.stop()
