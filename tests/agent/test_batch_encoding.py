"""The cached wire encoding of a cycle parses to exactly the message ``cycle_to_batch`` builds."""

from __future__ import annotations

import pytest

from agent.batch_encoding import MAX_CACHED_SERIES, BatchEncoder, agent_message_with_sequence
from agent.main_loop import cycle_to_batch
from agent.sampler import CheckFailure, Cycle, Sample, Sampler
from proto import agent_pb2


def decoded(body: bytes, sequence: int) -> agent_pb2.MetricBatch:
    message = agent_pb2.AgentMessage.FromString(agent_message_with_sequence(body, sequence))
    assert message.WhichOneof("kind") == "batch"
    return message.batch


def expected(cycle: Cycle, sequence: int) -> agent_pb2.MetricBatch:
    batch = cycle_to_batch(cycle)
    batch.sequence = sequence
    return batch


CYCLE = Cycle(
    -5 + 1_700_000_000_000,
    [
        Sample("cpu_seconds_total", {"cpu": "0", "mode": "user"}, 12.5),
        Sample("memory_free_bytes", {}, 0.0),
        Sample("temperature_celsius", {"sensor": "coretemp", "label": "Package id 0 é"}, -3.25),
        Sample("x" * 300, {"long": "y" * 300}, 1e300),
    ],
    [CheckFailure("filesystems:/mnt/nfs", "timed out after 5.0s")],
)


@pytest.mark.parametrize("sequence", [1, 127, 128, 2**40])
def test_the_encoding_equals_the_message(sequence: int) -> None:
    assert decoded(BatchEncoder().encode(CYCLE), sequence) == expected(CYCLE, sequence)


def test_a_real_cycle_encodes_the_same_twice_with_new_values() -> None:
    encoder = BatchEncoder()
    with Sampler() as sampler:
        for sequence in (1, 2):
            cycle = sampler.collect()
            assert decoded(encoder.encode(cycle), sequence) == expected(cycle, sequence)


def test_a_value_is_never_served_from_the_cache() -> None:
    encoder = BatchEncoder()
    encoder.encode(CYCLE)
    changed = Cycle(CYCLE.collected_unix_ms, [Sample("memory_free_bytes", {}, 42.0)], [])
    assert decoded(encoder.encode(changed), 3).samples[0].value == 42.0


def test_the_cache_is_bounded() -> None:
    encoder = BatchEncoder()
    many = [Sample("s", {"i": str(i)}, float(i)) for i in range(MAX_CACHED_SERIES + 10)]
    cycle = Cycle(1, many, [])
    assert decoded(encoder.encode(cycle), 1) == expected(cycle, 1)
    assert len(encoder._series) <= MAX_CACHED_SERIES


def test_text_protobuf_refuses_is_refused_here_too() -> None:
    bad = Cycle(1, [Sample("s", {"path": "/mnt/\udcff"}, 1.0)], [])
    with pytest.raises(UnicodeEncodeError):
        BatchEncoder().encode(bad)
