"""Decoded samples are compact rows (``SampleRow``) and the fleet keeps them as they are:
the same samples back, and a few objects per host for the garbage collector instead of
one per sample."""

from __future__ import annotations

import gc
import math

from collector.fleet import Fleet
from collector.server.batch_decode import SampleDecoder
from collector.store import AgentRecord, SampleRow, StoredSample
from proto import agent_pb2

SERIES = 150


def message(sequence: int, value: float) -> agent_pb2.MetricBatch:
    return agent_pb2.MetricBatch(
        sequence=sequence,
        collected_unix_ms=sequence * 1000,
        samples=[
            agent_pb2.Sample(name="cpu_seconds", labels={"core": str(k)}, value=value + k)
            for k in range(SERIES)
        ],
    )


def fleet_of(hosts: int) -> Fleet:
    fleet = Fleet()
    for n in range(hosts):
        fleet.connected(AgentRecord(f"a{n}", "acme", f"h{n}", 0, "s", 10**13), f"h{n}", "1", 0)
    return fleet


def test_a_row_gives_back_the_samples_it_was_made_of() -> None:
    samples = [
        StoredSample("load1", {}, 0.5),
        StoredSample("disk_free", {"mount": "/"}, math.inf),
        StoredSample("temp", {"zone": "0"}, -0.0),
    ]
    row = SampleRow.of(samples)
    assert list(row) == samples and len(row) == 3
    assert row[1] == samples[1] and list(row[1:]) == samples[1:]
    assert math.copysign(1, row[2].value) == -1  # every bit of the value kept
    assert SampleRow.of(row) is row


def test_decoded_batches_of_one_layout_share_their_series() -> None:
    decoder = SampleDecoder()
    rows = [SampleRow.of(decoder.decode(message(n, float(n)), "a1")[0]) for n in (1, 2, 3)]
    assert [s.value for s in rows[2]][:3] == [3.0, 4.0, 5.0]
    assert rows[2][7] == StoredSample("cpu_seconds", {"core": "7"}, 10.0)
    assert rows[1].names is rows[2].names and rows[1].labels is rows[2].labels  # per layout
    assert rows[2].layout is rows[1].layout is not None


def test_the_fleet_holds_a_few_tracked_objects_per_host_whatever_the_samples() -> None:
    """Replacing every host's samples must not leave one GC-tracked object per sample
    (those made young collections of a second at 10,000 hosts)."""
    hosts = 200
    decoder = SampleDecoder()
    fleet = fleet_of(hosts)

    def feed(sequence: int) -> None:
        for n in range(hosts):
            samples, _ = decoder.decode(message(sequence, float(sequence)), f"a{n}")
            fleet.observed(f"a{n}", sequence * 1000, samples, sequence * 1000)

    feed(1)  # each source's first batch teaches the decoder its layout
    gc.collect()
    gc.disable()  # what a batch leaves behind stays in the young generation
    try:
        feed(2)
        young = len(gc.get_objects(generation=0))
    finally:
        gc.enable()
    assert young < 5 * hosts  # was 150 sample tuples per host
    state = fleet.get("a5")
    assert state is not None and len(state.samples) == SERIES
    assert list(state.samples)[:2] == [
        StoredSample("cpu_seconds", {"core": "0"}, 2.0),
        StoredSample("cpu_seconds", {"core": "1"}, 3.0),
    ]
    assert isinstance(state.samples, SampleRow)
