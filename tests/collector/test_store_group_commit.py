"""Group commit (``Store.store_batches``): many batches in one transaction, on every backend."""

from __future__ import annotations

from collections.abc import Sequence

from collector.errors import InvalidRequest, UnknownAgent
from collector.store import IncomingBatch, Store, StoredFailure, StoredSample
from tests.collector.test_store_contract import T0, make_agent, sample


class Decoder:
    """Counts how often each batch's samples were decoded."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []

    def batch(self, agent_id: str, sequence: int, value: float = 1.0) -> IncomingBatch:
        def decode() -> tuple[Sequence[StoredSample], Sequence[StoredFailure]]:
            self.calls.append((agent_id, sequence))
            return [sample("load1", value), sample("up", 1.0, unit="x")], []

        at = T0 + sequence * 10_000
        return IncomingBatch(agent_id, sequence, at, at + 5, decode)


def two_agents(store: Store) -> Store:
    store.add_agent(make_agent("a1"))
    store.add_agent(make_agent("a2", hostname="web2"))
    return store


def test_one_group_stores_batches_of_several_agents_in_order(store: Store) -> None:
    two_agents(store)
    decoder = Decoder()
    batches = [decoder.batch("a1", 1), decoder.batch("a2", 1), decoder.batch("a1", 2, 7.0)]
    outcomes = store.store_batches(batches)
    assert [o.stored for o in outcomes] == [True, True, True]
    assert [o.error for o in outcomes] == [None, None, None]
    assert outcomes[2].samples[0] == sample("load1", 7.0)
    assert store.stored_sequences("a1") == [1, 2]
    assert store.stored_sequences("a2") == [1]
    latest = store.latest("a1")
    assert latest is not None and latest.sequence == 2
    history = store.metric_history(
        "a1", ["load1"], since_ms=T0 - 3_600_000, until_ms=T0 + 3_600_000
    )
    assert sum(p.count for series in history for p in series.points) == 2


def test_duplicates_are_not_decoded(store: Store) -> None:
    two_agents(store)
    decoder = Decoder()
    assert store.store_batches([decoder.batch("a1", 1)])[0].stored
    outcomes = store.store_batches([decoder.batch("a1", 1), decoder.batch("a1", 2)])
    assert [o.stored for o in outcomes] == [False, True]
    assert decoder.calls == [("a1", 1), ("a1", 2)]  # the re-sent 1 cost no conversion


def test_a_sequence_twice_in_one_group_is_stored_once(store: Store) -> None:
    two_agents(store)
    decoder = Decoder()
    outcomes = store.store_batches([decoder.batch("a1", 3), decoder.batch("a1", 3, 9.0)])
    assert [o.stored for o in outcomes] == [True, False]
    assert store.stored_sequences("a1") == [3]


def test_a_bad_batch_fails_alone(store: Store) -> None:
    two_agents(store)
    decoder = Decoder()
    batches = [decoder.batch("a1", 1), decoder.batch("ghost", 1), decoder.batch("a2", 0)]
    batches.append(decoder.batch("a2", 1))
    outcomes = store.store_batches(batches)
    assert [o.stored for o in outcomes] == [True, False, False, True]
    assert isinstance(outcomes[1].error, UnknownAgent)
    assert isinstance(outcomes[2].error, InvalidRequest)
    assert store.stored_sequences("a1") == [1]
    assert store.stored_sequences("a2") == [1]


def test_the_group_is_one_transaction(store: Store) -> None:
    """Half a group is never visible: a failure rolls back every batch before the retry,
    and the retry stores each good batch exactly once."""
    two_agents(store)
    decoder = Decoder()
    outcomes = store.store_batches([decoder.batch("a1", 1), decoder.batch("ghost", 1)])
    assert [o.stored for o in outcomes] == [True, False]
    assert store.stored_sequences("a1") == [1]
    latest = store.latest("a1")
    assert latest is not None and latest.sequence == 1
    history = store.metric_history(
        "a1", ["load1"], since_ms=T0 - 3_600_000, until_ms=T0 + 3_600_000
    )
    assert sum(p.count for series in history for p in series.points) == 1  # not twice
