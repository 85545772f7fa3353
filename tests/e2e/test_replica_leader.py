"""Two `serve` replicas on one PostgreSQL: one leads; kill -9 of the leader hands over.

The second replica's data directory holds only the files docs/replicas.md lists
(copied from the first), which checks that list too.
"""

from __future__ import annotations

import shutil
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from tests.pg_cluster import PgCluster
from tests.support import Agent, Collector, wait_for

INTERVAL_S = 1.0
REPLICA_FILES = ("ca.pem", "ca-key.pem", "audit-key.pem", "store-url", "admin-token")


def leader(url: str) -> str | None:
    """The pid part of the evaluation lease's holder, if the lease is held and current."""
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT holder, expires_ms FROM leases WHERE name = 'evaluation'"
        ).fetchone()
    if row is None or row[1] < time.time() * 1000:
        return None
    return str(row[0]).split(":")[1]


@pytest.fixture
def replicas(pg_cluster: PgCluster, tmp_path: Path) -> Iterator[tuple[Collector, Collector, str]]:
    url = pg_cluster.new_database()
    args = ["--evaluation-interval", f"{INTERVAL_S}s"]
    a = Collector(tmp_path / "a", extra_args=["--store", url, *args]).start()
    (tmp_path / "b").mkdir(mode=0o700)
    for name in REPLICA_FILES:
        shutil.copy2(tmp_path / "a" / name, tmp_path / "b" / name)
    b = Collector(tmp_path / "b", extra_args=args).start()  # the URL comes from store-url
    yield a, b, url
    for replica in (a, b):
        replica.stop()
        print(f"--- {replica.data_dir.name} log ---\n" + replica.log_text()[-3000:])


def test_one_replica_leads_and_a_killed_leader_hands_over(
    replicas: tuple[Collector, Collector, str],
) -> None:
    a, b, url = replicas
    assert a.process is not None and b.process is not None
    wait_for(lambda: leader(url) is not None, 10, "a leader")
    first = leader(url)
    assert first == str(a.process.pid)  # a started first and keeps renewing
    time.sleep(3 * INTERVAL_S)
    assert leader(url) == first  # b does not take a live leader's lease
    assert b.client_json(b.admin_token, "agents") is not None  # b answers the API

    a.process.send_signal(signal.SIGKILL)
    a.process.wait()
    killed = time.monotonic()
    wait_for(lambda: leader(url) == str(b.process.pid), 10, "b to take over")  # type: ignore[union-attr]
    # lease 1.5 intervals + b's next check within 1 interval (+ slack for a slow machine)
    assert time.monotonic() - killed < 2.5 * INTERVAL_S + 2.0

    b.stop()  # a clean stop releases the lease at once
    assert leader(url) is None


def test_an_agent_on_replica_a_is_seen_through_replica_b(
    replicas: tuple[Collector, Collector, str], make_agent: Callable[..., Agent]
) -> None:
    a, b, _ = replicas
    agent = make_agent("db-1")
    result = agent.enroll(a.join_command("acme"))
    assert result.returncode == 0, result.stderr
    agent.start()
    engineer = b.add_user("erin", "engineer")  # a user made on b signs in on a too
    other = b.add_user("olga", "customer", "globex")
    wait_for(lambda: b.client_json(engineer, "agents") != [], 30, "the host listed by b")
    assert [h["hostname"] for h in b.client_json(engineer, "agents")] == ["db-1"]
    assert [h["hostname"] for h in a.client_json(engineer, "agents")] == ["db-1"]
    assert b.client_json(other, "agents") == []  # another customer's host stays hidden on b
    wait_for(lambda: b.client_json(engineer, "host", "db-1")["samples"], 30, "samples via b")
    for replica in (a, b):  # entries appended by both replicas form one intact chain
        verified = replica.admin("audit", "verify")
        assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "audit checkpoints stopped" not in a.log_text() + b.log_text()
