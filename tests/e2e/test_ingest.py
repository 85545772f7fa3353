"""Ingest end to end: exactly-once delivery across collector outages, gaps, and bad input."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest

from proto import agent_pb2, agent_pb2_grpc
from tests.support import Agent, Collector, wait_for


def stored_sequences(collector: Collector, agent_id: str) -> list[int]:
    from collector.store import open_store

    store = open_store(collector.data_dir)
    try:
        return store.stored_sequences(agent_id)
    finally:
        store.close()


def spool_entries(agent: Agent) -> int:
    return int(agent.status()["spool"]["entries"])


def spool_drained(agent: Agent) -> bool:
    """At most the newest batch left: acked entries are deleted with the next append."""
    return spool_entries(agent) <= 1


def enrolled(
    collector: Collector,
    make_agent: Callable[..., Agent],
    host: str,
    customer: str = "acme",
    **config: object,
) -> Agent:
    agent = make_agent(host, **config)
    result = agent.enroll(collector.join_command(customer))
    assert result.returncode == 0, result.stderr
    return agent


def test_collector_restart_loses_nothing_and_duplicates_nothing(
    collector: Collector, make_agent: Callable[..., Agent]
) -> None:
    agent = enrolled(collector, make_agent, "web-1").start()
    wait_for(lambda: len(stored_sequences(collector, agent.agent_id)) >= 3, 20, "3 batches")
    collector.stop()
    time.sleep(6)  # the agent keeps sampling into its spool meanwhile
    assert spool_entries(agent) >= 3
    collector.start()
    wait_for(lambda: spool_drained(agent), 30, "spool drained after restart")
    agent.stop()  # freeze the sequence space before comparing
    sequences = stored_sequences(collector, agent.agent_id)
    last = int(agent.status()["spool"]["next_sequence"]) - 1
    assert sequences == list(range(1, last + 1)), "every batch exactly once, in order"
    detail = collector.client_json(collector.admin_token, "host", "web-1")
    assert detail["gaps"] == []
    assert detail["batches_stored"] == last


def test_spool_overflow_is_reported_as_a_gap(
    collector: Collector, make_agent: Callable[..., Agent]
) -> None:
    agent = enrolled(collector, make_agent, "web-1", spool={"max_size": "16KiB"}).start()
    wait_for(lambda: stored_sequences(collector, agent.agent_id), 20, "first batch")
    collector.stop()
    wait_for(lambda: agent.status()["spool"]["dropped_batches_total"] > 0, 40, "spool overflow")
    collector.start()
    wait_for(lambda: spool_drained(agent), 30, "spool drained")
    detail = collector.client_json(collector.admin_token, "host", "web-1")
    assert detail["gaps"], "the lost span must be visible to engineers"
    gap = detail["gaps"][0]
    assert gap["lost_batches"] >= 1
    assert gap["reason"] == "spool size limit"
    assert gap["start"] <= gap["end"]
    assert "aftercare_ingest_lost_batches_total" in collector.metrics()


@pytest.fixture
def agent_identity(collector: Collector, make_agent: Callable[..., Agent]) -> Agent:
    return enrolled(collector, make_agent, "raw-1")


def _channel(collector: Collector, state_dir: Path, with_cert: bool = True) -> grpc.Channel:
    ca = (state_dir / "ca.pem").read_bytes()
    if with_cert:
        creds = grpc.ssl_channel_credentials(
            ca, (state_dir / "key.pem").read_bytes(), (state_dir / "cert.pem").read_bytes()
        )
    else:
        creds = grpc.ssl_channel_credentials(ca)
    return grpc.secure_channel(collector.agent_address, creds)


def _raw_connect(
    channel: grpc.Channel, messages: list[bytes]
) -> Iterator[agent_pb2.CollectorMessage]:
    connect = channel.stream_stream(
        "/aftercare.v1.AgentStream/Connect",
        request_serializer=lambda b: b,
        response_deserializer=agent_pb2.CollectorMessage.FromString,
    )
    return connect(iter(messages), timeout=10)  # type: ignore[no-any-return]


HELLO = agent_pb2.AgentMessage(hello=agent_pb2.Hello(hostname="raw-1")).SerializeToString()


def _batch(sequence: int, samples: int = 1, name: str = "x_ratio") -> bytes:
    batch = agent_pb2.MetricBatch(sequence=sequence, collected_unix_ms=int(time.time() * 1000))
    for i in range(samples):
        batch.samples.add(name=name, labels={"i": str(i)}, value=0.5)
    return agent_pb2.AgentMessage(batch=batch).SerializeToString()


def _code(
    replies: Iterator[agent_pb2.CollectorMessage],
) -> tuple[list[str], grpc.StatusCode | None, str]:
    kinds: list[str] = []
    try:
        for reply in replies:
            kinds.append(str(reply.WhichOneof("kind")))
    except grpc.RpcError as exc:
        return kinds, exc.code(), exc.details() or ""  # type: ignore[attr-defined]
    return kinds, None, ""


def test_valid_raw_stream_is_acked_once_and_duplicate_flagged(
    collector: Collector, agent_identity: Agent
) -> None:
    with _channel(collector, agent_identity.state_dir) as channel:
        replies = list(_raw_connect(channel, [HELLO, _batch(1), _batch(1)]))
    assert replies[0].welcome.agent_id == agent_identity.agent_id
    assert [r.ack.sequence for r in replies[1:]] == [1, 1]
    assert [r.ack.duplicate for r in replies[1:]] == [False, True]


def test_malformed_message_ends_only_that_stream(
    collector: Collector, agent_identity: Agent
) -> None:
    with _channel(collector, agent_identity.state_dir) as channel:
        kinds, code, _ = _code(_raw_connect(channel, [HELLO, b"\xff\xff\xff\xff"]))
        assert code is not None and code != grpc.StatusCode.OK
        assert kinds == ["welcome"]
        # the collector keeps serving: a fresh stream works
        replies = list(_raw_connect(channel, [HELLO, _batch(1)]))
    assert replies[-1].ack.sequence == 1


def test_unknown_message_type_is_refused_with_a_clear_error(
    collector: Collector, agent_identity: Agent
) -> None:
    unknown_field_99 = b"\x98\x06\x01"  # field 99, varint 1: not a known AgentMessage kind
    with _channel(collector, agent_identity.state_dir) as channel:
        _, code, details = _code(_raw_connect(channel, [HELLO, unknown_field_99]))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "unknown or empty message type" in details


@pytest.mark.parametrize("name", ["", "n" * 1025])
def test_a_sample_without_a_usable_name_ends_the_stream_and_stores_nothing_of_its_batch(
    collector: Collector, agent_identity: Agent, name: str
) -> None:
    with _channel(collector, agent_identity.state_dir) as channel:
        kinds, code, details = _code(
            _raw_connect(channel, [HELLO, _batch(1, 3), _batch(2, 3, name=name)])
        )
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        assert "empty or over-long name" in details
        assert kinds == ["welcome", "ack"]  # batch 1 only
        replies = list(_raw_connect(channel, [HELLO, _batch(2, 3)]))
    assert replies[0].welcome.last_sequence == 1, "the refused batch was not stored"
    assert replies[-1].ack.sequence == 2 and not replies[-1].ack.duplicate


def test_stream_must_start_with_hello(collector: Collector, agent_identity: Agent) -> None:
    with _channel(collector, agent_identity.state_dir) as channel:
        _, code, details = _code(_raw_connect(channel, [_batch(1)]))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "Hello" in details


def test_oversized_message_is_refused(tmp_path: Path, make_agent: Callable[..., Agent]) -> None:
    small = Collector(tmp_path / "small", extra_args=["--max-message-size", "64KiB"]).start()
    try:
        agent = enrolled(small, make_agent, "raw-1")
        with _channel(small, agent.state_dir) as channel:
            _, code, _ = _code(_raw_connect(channel, [HELLO, _batch(1, samples=5000)]))
            assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
            replies = list(_raw_connect(channel, [HELLO, _batch(1, samples=10)]))
        assert replies[-1].ack.sequence == 1
    finally:
        small.stop()


def test_agent_port_requires_a_client_certificate(
    collector: Collector, agent_identity: Agent
) -> None:
    with _channel(collector, agent_identity.state_dir, with_cert=False) as channel:
        _, code, _ = _code(_raw_connect(channel, [HELLO]))
    assert code == grpc.StatusCode.UNAVAILABLE  # the TLS handshake fails


def test_agent_service_on_the_api_port_needs_a_certificate(
    collector: Collector, agent_identity: Agent
) -> None:
    creds = grpc.ssl_channel_credentials((agent_identity.state_dir / "ca.pem").read_bytes())
    with grpc.secure_channel(collector.api, creds) as channel:
        _, code, details = _code(_raw_connect(channel, [HELLO]))
    assert code == grpc.StatusCode.UNAUTHENTICATED
    assert "client certificate" in details


def test_revoked_agent_is_refused(collector: Collector, agent_identity: Agent) -> None:
    result = collector.admin("agent", "revoke", agent_identity.agent_id)
    assert result.returncode == 0, result.stderr
    with _channel(collector, agent_identity.state_dir) as channel:
        _, code, details = _code(_raw_connect(channel, [HELLO, _batch(1)]))
        assert code == grpc.StatusCode.PERMISSION_DENIED
        assert "revoked" in details
        stub = agent_pb2_grpc.AgentStreamStub(channel)
        with pytest.raises(grpc.RpcError) as renew:
            stub.RenewCertificate(agent_pb2.RenewRequest(csr_pem=b"x"), timeout=10)
        assert renew.value.code() == grpc.StatusCode.PERMISSION_DENIED  # type: ignore[attr-defined]
    assert stored_sequences(collector, agent_identity.agent_id) == []


def test_identity_comes_from_the_certificate_not_the_message(
    collector: Collector, make_agent: Callable[..., Agent]
) -> None:
    victim = enrolled(collector, make_agent, "victim", customer="globex")
    attacker = enrolled(collector, make_agent, "attacker", customer="acme")
    spoofed = agent_pb2.AgentMessage(hello=agent_pb2.Hello(hostname="victim")).SerializeToString()
    with _channel(collector, attacker.state_dir) as channel:
        replies = list(_raw_connect(channel, [spoofed, _batch(1)]))
    assert replies[0].welcome.agent_id == attacker.agent_id
    assert replies[0].welcome.customer == "acme"
    assert stored_sequences(collector, victim.agent_id) == []


def test_certificate_is_renewed_before_expiry(
    tmp_path: Path, make_agent: Callable[..., Agent]
) -> None:
    short = Collector(tmp_path / "short", extra_args=["--agent-cert-ttl", "12s"]).start()
    try:
        agent = enrolled(short, make_agent, "web-1").start()
        first_cert = (agent.state_dir / "cert.pem").read_bytes()
        wait_for(
            lambda: (agent.state_dir / "cert.pem").read_bytes() != first_cert,
            30,
            "certificate renewal",
        )
        time.sleep(8)  # past the first certificate's expiry
        count = len(stored_sequences(short, agent.agent_id))
        wait_for(
            lambda: len(stored_sequences(short, agent.agent_id)) > count + 2,
            15,
            "batches still flowing on the renewed certificate",
        )
        audit = json.loads(short.admin("audit", "list", "--json").stdout)
        assert "agent.certificate_renewed" in [e["action"] for e in audit]
    finally:
        short.stop()


def test_health_checking_and_reflection_are_served(collector: Collector) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    creds = grpc.ssl_channel_credentials((collector.data_dir / "ca.pem").read_bytes())
    with grpc.secure_channel(collector.api, creds) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        reply = health.Check(health_pb2.HealthCheckRequest(service="aftercare.v1.Api"), timeout=10)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        response = next(stub.ServerReflectionInfo(iter([request]), timeout=10))
        names = {s.name for s in response.list_services_response.service}
    assert {"aftercare.v1.Api", "aftercare.v1.AgentStream", "aftercare.v1.Enrollment"} <= names


def test_sqlite_store_uses_wal(collector: Collector) -> None:
    with sqlite3.connect(collector.data_dir / "aftercare.db") as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
