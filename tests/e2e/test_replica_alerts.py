"""Two `serve` replicas on one PostgreSQL: alerts of a follower's agents, and the outbox.

- An agent streaming to the follower (B) with a real fault opens exactly one ticket
  (B evaluates its sample rules); its heartbeat is the leader's (A), from the stored
  last-seen: no heartbeat ticket while the agent reports, one once it stops.
- Kill -9 of the leader while notices wait in the outbox: a real webhook receiver
  gets every notice; a notice arriving twice carries the same delivery id both times
  (the documented window: death between the receiver's answer and the mark).

Harness as in test_replica_leader.py: B's data directory holds only the files
docs/replicas.md lists, copied from A.
"""

from __future__ import annotations

import json
import shutil
import signal
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psycopg
import pytest

from collector.outbox import CLAIM_MS, DELIVERY_HEADER
from tests.pg_cluster import PgCluster
from tests.support import Agent, Collector, wait_for

INTERVAL_S = 1.0
REPLICA_FILES = ("ca.pem", "ca-key.pem", "audit-key.pem", "store-url", "admin-token")
RULES = """
groups:
  - name: test
    rules:
      - name: memory_present
        condition: {metric: memory_total_bytes, op: ">", threshold: 0}
        for: 1s
        level: 2
        annotations:
          summary: "{{ host }} has memory ({{ value | bytes }})"
      - name: host_unreachable
        heartbeat: {grace: 8s}
        level: 1
        annotations:
          summary: "{{ host }} has not reported for {{ value | duration }}"
"""


class SlowReceiver:
    """A webhook receiver: records (delivery id, body) as a POST arrives, then takes
    ``delay`` seconds to answer (so a sender can die between the two)."""

    def __init__(self, delay: float) -> None:
        self.posts: list[tuple[str, dict[str, Any]]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                receiver.posts.append((self.headers.get(DELIVERY_HEADER, ""), body))
                time.sleep(delay)
                try:
                    self.send_response(204)
                    self.end_headers()
                except OSError:
                    pass  # the sender died meanwhile

            def log_message(self, *args: Any) -> None: ...

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def leader_pid(url: str) -> str | None:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT holder, expires_ms FROM leases WHERE name = 'evaluation'"
        ).fetchone()
    if row is None or row[1] < time.time() * 1000:
        return None
    return str(row[0]).split(":")[1]


def outbox_pending(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT COUNT(*) FROM outbox WHERE state = 'pending'").fetchone()
    return int(row[0]) if row else 0


@pytest.fixture
def start_replicas(
    pg_cluster: PgCluster, tmp_path: Path
) -> Iterator[Callable[[list[str]], tuple[Collector, Collector, str]]]:
    started: list[Collector] = []

    def start(extra: list[str]) -> tuple[Collector, Collector, str]:
        url = pg_cluster.new_database()
        args = ["--evaluation-interval", f"{INTERVAL_S}s", *extra]
        a = Collector(tmp_path / "a", extra_args=["--store", url, *args]).start()
        started.append(a)
        wait_for(lambda: leader_pid(url) == str(a.process.pid), 10, "a to lead")  # type: ignore[union-attr]
        (tmp_path / "b").mkdir(mode=0o700)
        for name in REPLICA_FILES:
            shutil.copy2(tmp_path / "a" / name, tmp_path / "b" / name)
        b = Collector(tmp_path / "b", extra_args=args).start()
        started.append(b)
        return a, b, url

    yield start
    for replica in started:
        replica.stop()
        print(f"--- {replica.data_dir.name} log ---\n" + replica.log_text()[-3000:])


def tickets(replica: Collector, token: str) -> list[dict[str, Any]]:
    return list(replica.client_json(token, "tickets", "--state", "open", "--state", "recovered"))


def test_an_agent_on_the_follower_with_a_fault_opens_exactly_one_ticket(
    start_replicas: Callable[[list[str]], tuple[Collector, Collector, str]],
    make_agent: Callable[..., Agent],
    tmp_path: Path,
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    a, b, url = start_replicas(["--rules", str(rules)])
    agent = make_agent("db-1")
    enrolled = agent.enroll(b.join_command("acme"))  # the agent streams to b, a follower
    assert enrolled.returncode == 0, enrolled.stderr
    agent.start()
    token = a.admin_token
    wait_for(lambda: tickets(a, token), 30, "the fault's ticket")
    time.sleep(10 * INTERVAL_S)  # both replicas keep evaluating; the heartbeat grace passes
    assert leader_pid(url) == str(a.process.pid)  # type: ignore[union-attr]
    [ticket] = tickets(b, token)
    assert ticket["hostname"] == "db-1" and ticket["source"] == "rule"
    assert ticket["state"] == "open"
    shown = b.client_json(token, "ticket", "show", str(ticket["id"]))
    assert [e["kind"] for e in shown["events"]] == ["opened"]

    agent.stop()  # silent: the leader's heartbeat rule opens one ticket
    wait_for(lambda: any(t["source"] == "heartbeat" for t in tickets(a, token)), 40, "heartbeat")
    time.sleep(3 * INTERVAL_S)
    sources = sorted(t["source"] for t in tickets(a, token))
    assert sources == ["heartbeat", "rule"]


def test_killing_the_leader_mid_send_delivers_every_notice_once_or_with_the_same_id(
    start_replicas: Callable[[list[str]], tuple[Collector, Collector, str]],
    tmp_path: Path,
) -> None:
    receiver = SlowReceiver(delay=0.7)
    try:
        config = tmp_path / "tickets.yaml"
        config.write_text(
            f"customer_notices:\n  customers:\n    acme: [{{webhook: {receiver.url}}}]\n"
        )
        a, b, url = start_replicas(["--tickets-config", str(config)])
        token = a.admin_token
        count = 8
        for number in range(count):  # through b: the follower writes, the leader notifies
            created = b.client(token, "ticket", "create", f"fault {number}", "--customer", "acme")
            assert created.returncode == 0, created.stderr
        wait_for(lambda: len(receiver.posts) >= 3, 30, "the leader to start sending")
        assert outbox_pending(url) > 0, "notices still wait when the leader dies"
        a.process.send_signal(signal.SIGKILL)  # type: ignore[union-attr]
        a.process.wait()  # type: ignore[union-attr]
        wait_for(lambda: leader_pid(url) == str(b.process.pid), 10, "b to lead")  # type: ignore[union-attr]
        wait_for(lambda: outbox_pending(url) == 0, CLAIM_MS / 1000 + 30, "every notice sent")
        time.sleep(2 * INTERVAL_S)
        sent = f'aftercare_outbox_notices{{state="sent"}} {float(count)}'
        wait_for(lambda: sent in b.metrics(), 10, "the new leader's outbox gauge")
        assert 'aftercare_outbox_notices{state="failing"} 0.0' in b.metrics()
    finally:
        receiver.close()

    by_ticket: dict[int, list[str]] = defaultdict(list)
    for delivery_id, body in receiver.posts:
        assert body["event"] == "customer_opened"
        by_ticket[body["ticket"]["id"]].append(delivery_id)
    assert len(by_ticket) == count, "every notice arrived"
    repeated = {t: ids for t, ids in by_ticket.items() if len(ids) > 1}
    print(f"deliveries per ticket: {dict(by_ticket)}")
    assert len(repeated) <= 1, f"only the notice in flight may arrive twice: {repeated}"
    for ids in by_ticket.values():
        assert len(set(ids)) == 1 and ids[0], "a repeat carries the same delivery id"
