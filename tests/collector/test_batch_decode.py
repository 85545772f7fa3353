"""SampleDecoder: remembered name and labels never give a sample another series' labels."""

from __future__ import annotations

import math

from collector.server.batch_decode import SampleDecoder
from collector.store import StoredSample
from proto import agent_pb2


def batch(*samples: tuple[str, dict[str, str], float]) -> agent_pb2.MetricBatch:
    return agent_pb2.MetricBatch(
        sequence=1,
        samples=[agent_pb2.Sample(name=n, labels=labels, value=v) for n, labels, v in samples],
    )


def decoded(decoder: SampleDecoder, message: agent_pb2.MetricBatch) -> list[StoredSample]:
    samples, _ = decoder.decode(message)
    return list(samples)


def test_values_change_while_name_and_labels_are_remembered() -> None:
    decoder = SampleDecoder()
    first = decoded(decoder, batch(("disk_free", {"mount": "/"}, 1.5)))
    second = decoded(decoder, batch(("disk_free", {"mount": "/"}, 2.5)))
    assert first == [StoredSample("disk_free", {"mount": "/"}, 1.5)]
    assert second == [StoredSample("disk_free", {"mount": "/"}, 2.5)]
    assert second[0].labels is first[0].labels  # converted once


def test_other_labels_or_names_are_other_series() -> None:
    decoder = SampleDecoder()
    samples = decoded(
        decoder,
        batch(
            ("disk_free", {"mount": "/"}, 1.0),
            ("disk_free", {"mount": "/srv"}, 1.0),
            ("disk_used", {"mount": "/"}, 1.0),
            ("disk_free", {"mount": "/", "fs": "ext4"}, 1.0),
            ("disk_free", {}, 1.0),
        ),
    )
    assert [(s.name, s.labels) for s in samples] == [
        ("disk_free", {"mount": "/"}),
        ("disk_free", {"mount": "/srv"}),
        ("disk_used", {"mount": "/"}),
        ("disk_free", {"mount": "/", "fs": "ext4"}),
        ("disk_free", {}),
    ]


def test_a_zero_value_and_special_values_keep_their_labels() -> None:
    """A zero value is not serialised: such a sample must not be taken for one whose
    labels end in bytes that look like a value field."""
    decoder = SampleDecoder()
    for value in (0.0, -0.0, 1.0, math.inf, -math.inf):
        (got,) = decoded(decoder, batch(("x", {"k": "v"}, value)))
        assert (got.name, got.labels, got.value) == ("x", {"k": "v"}, value)
    (nan,) = decoded(decoder, batch(("x", {"k": "v"}, math.nan)))
    assert nan.labels == {"k": "v"} and math.isnan(nan.value)
    # labels whose last bytes are a value-field tag and 8 bytes, sent with value 0
    tricky = "a" * 7 + "\x19" + "\x00" * 7
    (got,) = decoded(decoder, batch(("x", {"k": tricky}, 0.0)))
    assert got.labels == {"k": tricky}
    (other,) = decoded(decoder, batch(("x", {"k": "a" * 7 + "\x19" + "\x01" * 7}, 0.0)))
    assert other.labels == {"k": "a" * 7 + "\x19" + "\x01" * 7}


def test_unknown_fields_from_a_newer_agent_do_not_confuse_it() -> None:
    decoder = SampleDecoder()
    known = agent_pb2.Sample(name="x", labels={"k": "v"}, value=3.0).SerializeToString()
    extra = b"\x22\x03abc"  # field 4, length-delimited: unknown to this collector
    message = agent_pb2.MetricBatch()
    message.samples.add().MergeFromString(known + extra)
    (got,) = decoded(decoder, message)
    assert (got.name, got.labels, got.value) == ("x", {"k": "v"}, 3.0)
    (plain,) = decoded(decoder, batch(("x", {"k": "w"}, 3.0)))
    assert plain.labels == {"k": "w"}


def test_the_table_is_bounded() -> None:
    decoder = SampleDecoder(max_remembered=3)
    for n in range(10):
        (got,) = decoded(decoder, batch((f"m{n}", {"n": str(n)}, 1.0)))
        assert (got.name, got.labels) == (f"m{n}", {"n": str(n)})
    assert len(decoder._series) <= 3


def test_failures_are_decoded() -> None:
    message = batch(("x", {}, 1.0))
    message.failures.add(check="disks", error="timed out")
    _, failures = SampleDecoder().decode(message)
    assert [(f.check, f.error) for f in failures] == [("disks", "timed out")]
