"""Metric history and the host archive through the CLI, with a real agent: what the
host's customer and the engineers see, and what another customer cannot (attacks)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.support import Agent, Collector, wait_for


def history(collector: Collector, token: str, *args: str) -> Any:
    return collector.client_json(token, "host", "acme-db-1", "--json", *args)


def test_history_and_archive_of_a_real_agent(
    collector: Collector, make_agent: Callable[..., Agent]
) -> None:
    agent = make_agent("acme-db-1")
    assert agent.enroll(collector.join_command("acme")).returncode == 0
    agent.start()
    engineer = collector.add_user("erin", "engineer")
    acme = collector.add_user("ann", "customer", "acme")
    globex = collector.add_user("gus", "customer", "globex")

    def buckets() -> int:
        reply = history(collector, engineer, "--metric", "memory_total_bytes", "--since", "1h")
        return sum(b["count"] for s in reply["series"] for b in s["buckets"])

    wait_for(lambda: buckets() >= 2, what="two samples in the history")
    reply = history(collector, acme, "--metric", "memory_total_bytes", "--since", "90d")
    [series] = reply["series"]
    assert series["name"] == "memory_total_bytes" and series["labels"] == {}
    bucket = series["buckets"][-1]
    assert bucket["min"] == bucket["avg"] == bucket["max"] > 0
    assert reply["step_ms"] == 6 * 3_600_000  # 90 days in at most 1000 buckets

    # --label narrows to the series with that label
    every = history(collector, acme, "--metric", "cpu_mode_ratio")["series"]
    idle = history(collector, acme, "--metric", "cpu_mode_ratio", "--label", "mode=idle")
    assert {s["labels"]["mode"] for s in idle["series"]} == {"idle"}
    assert len(every) > len(idle["series"]) > 0

    table = collector.client(acme, "host", "acme-db-1", "--metric", "memory_total_bytes")
    assert table.returncode == 0, table.stderr
    assert "START (UTC)" in table.stdout and "memory_total_bytes" in table.stdout

    # the plain `host` command still shows the latest values
    plain = collector.client_json(acme, "host", "acme-db-1", "--json")
    assert any(s["name"] == "memory_total_bytes" for s in plain["samples"])
    misuse = collector.client(acme, "host", "acme-db-1", "--since", "1d")
    assert misuse.returncode == 2 and "need --metric" in misuse.stderr

    archive = collector.client_json(engineer, "archive", "acme-db-1", "--json")
    kinds = [e["kind"] for e in archive["entries"]]
    assert "enrolled" in kinds, archive
    assert archive["customer"] == "acme"
    text = collector.client(acme, "archive", "acme-db-1")
    assert text.returncode == 0 and "enrolled as acme-db-1" in text.stdout

    # attacks: another customer reaches neither the history nor the archive, by
    # hostname or by agent id, and learns nothing of the host
    for host in ("acme-db-1", agent.agent_id):
        refused = collector.client(globex, "host", host, "--metric", "memory_total_bytes")
        assert refused.returncode == 1 and f"no host {host!r}" in refused.stderr
        refused = collector.client(globex, "archive", host, "--json")
        assert refused.returncode == 1 and f"no host {host!r}" in refused.stderr
        assert "acme" not in refused.stdout


def test_history_holds_every_stored_batch_and_survives_a_collector_crash(
    collector: Collector, make_agent: Callable[..., Agent]
) -> None:
    agent = make_agent("acme-db-1")
    assert agent.enroll(collector.join_command("acme")).returncode == 0
    agent.start()
    engineer = collector.add_user("erin", "engineer")

    def counted() -> int:
        reply = history(collector, engineer, "--metric", "memory_total_bytes", "--since", "1h")
        return sum(b["count"] for s in reply["series"] for b in s["buckets"])

    wait_for(lambda: counted() >= 3, what="three samples in the history")
    agent.stop()
    stored = collector.client_json(engineer, "host", "acme-db-1", "--json")["batches_stored"]
    before = counted()
    assert before == stored  # one memory_total_bytes sample in every acknowledged batch

    assert collector.process is not None
    collector.process.kill()  # a crash: no clean shutdown
    collector.process.wait()
    collector.process = None
    collector.start()
    assert counted() == before
