"""The Store contract for replica routing (presence, agent outbox, shared files):
every backend passes it unchanged."""

from __future__ import annotations

import pytest

from collector.errors import InvalidRequest
from collector.store import Store
from collector.store.routing_base import AgentLocation, LiveReplica
from tests.collector.conftest import StoreBackend

T0 = 1_700_000_000_000
TTL = 5_000


def test_presence_counts_only_while_the_replica_beats(store: Store) -> None:
    store.beat_replica("r-a", "10.0.0.1:7450", T0, TTL)
    store.set_presence("agent-1", "r-a", T0)
    assert store.agent_location("agent-1", T0 + 1) == AgentLocation(
        "agent-1", "r-a", "10.0.0.1:7450"
    )
    assert store.live_presence(T0 + TTL - 1) == [AgentLocation("agent-1", "r-a", "10.0.0.1:7450")]
    # r-a died: its heartbeat lapsed, so its agents are nowhere
    assert store.agent_location("agent-1", T0 + TTL) is None
    assert store.live_presence(T0 + TTL) == []
    store.beat_replica("r-a", "10.0.0.1:7450", T0 + TTL, TTL)  # it came back: so do they
    assert store.agent_location("agent-1", T0 + TTL + 1) is not None


def test_newest_hello_wins_and_a_stale_disconnect_changes_nothing(store: Store) -> None:
    for replica in ("r-a", "r-b"):
        store.beat_replica(replica, f"{replica}:1", T0, TTL)
    store.set_presence("agent-1", "r-a", T0)
    store.set_presence("agent-1", "r-b", T0 + 10)  # reconnected to b
    store.clear_presence(["agent-1"], "r-a")  # a notices the old stream ended, later
    location = store.agent_location("agent-1", T0 + 20)
    assert location is not None and location.replica == "r-b"
    store.clear_presence(["agent-1"], "r-b")
    assert store.agent_location("agent-1", T0 + 20) is None


def test_live_replicas_are_those_whose_heartbeat_holds(store: Store) -> None:
    store.beat_replica("r-b", "b:1", T0, TTL)
    store.beat_replica("r-a", "a:1", T0 + 1000, TTL)
    assert store.live_replicas(T0 + 1) == [LiveReplica("r-a", "a:1"), LiveReplica("r-b", "b:1")]
    assert store.live_replicas(T0 + TTL) == [LiveReplica("r-a", "a:1")]
    store.drop_replica("r-a")
    assert store.live_replicas(T0 + 1) == [LiveReplica("r-b", "b:1")]


def test_dropping_a_replica_forgets_its_agents(store: Store) -> None:
    store.beat_replica("r-a", "a:1", T0, TTL)
    store.beat_replica("r-b", "b:1", T0, TTL)
    store.set_presence("agent-1", "r-a", T0)
    store.set_presence("agent-2", "r-b", T0)
    store.drop_replica("r-a")
    assert [loc.agent_id for loc in store.live_presence(T0 + 1)] == ["agent-2"]


def test_outbox_hands_each_message_out_once_in_order(store: Store) -> None:
    first = store.queue_agent_message("agent-1", b"one", T0)
    second = store.queue_agent_message("agent-1", b"two", T0 + 1)
    store.queue_agent_message("agent-2", b"other", T0 + 2)
    assert second > first
    taken = store.take_agent_messages(["agent-1"], T0 - 60_000)
    assert [(m.agent_id, m.message) for m in taken] == [("agent-1", b"one"), ("agent-1", b"two")]
    assert store.take_agent_messages(["agent-1"], T0 - 60_000) == []  # once only
    assert [m.message for m in store.take_agent_messages(["agent-2"], T0 - 60_000)] == [b"other"]


def test_outbox_drops_stale_messages(store: Store) -> None:
    store.queue_agent_message("agent-1", b"old", T0)
    store.queue_agent_message("agent-1", b"new", T0 + 10_000)
    taken = store.take_agent_messages(["agent-1"], T0 + 1)
    assert [m.message for m in taken] == [b"new"]
    assert store.take_agent_messages([], T0) == []


def test_outbox_is_shared_by_two_stores_on_one_database(store_backend: StoreBackend) -> None:
    a, b = store_backend.open(), store_backend.open()
    a.queue_agent_message("agent-1", b"\x00\xffbinary", T0)
    assert [m.message for m in b.take_agent_messages(["agent-1"], 0)] == [b"\x00\xffbinary"]
    assert a.take_agent_messages(["agent-1"], 0) == []


def test_shared_files_round_trip_and_replace(store: Store) -> None:
    assert store.get_shared_file("runs/run-1.out") is None
    store.put_shared_file("runs/run-1.out", b"\x00output", "h1", T0)
    assert store.get_shared_file("runs/run-1.out") == b"\x00output"
    store.put_shared_file("runs/run-1.out", b"again", "h2", T0 + 1)
    assert store.get_shared_file("runs/run-1.out") == b"again"


@pytest.mark.parametrize("path", ["", "/etc/passwd", "runs/../../etc/passwd"])
def test_shared_file_paths_stay_inside_the_data_dir(store: Store, path: str) -> None:
    with pytest.raises(InvalidRequest, match="relative path"):
        store.put_shared_file(path, b"x", "h", T0)


def test_bad_routing_input_is_refused(store: Store) -> None:
    with pytest.raises(InvalidRequest):
        store.beat_replica("", "a:1", T0, TTL)
    with pytest.raises(InvalidRequest):
        store.beat_replica("r-a", "a:1", T0, 0)
    with pytest.raises(InvalidRequest):
        store.set_presence("", "r-a", T0)
    with pytest.raises(InvalidRequest):
        store.queue_agent_message("agent-1", b"", T0)
    assert store.live_presence(T0) == []  # nothing half-written
