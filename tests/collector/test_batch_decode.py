"""SampleDecoder: remembered name and labels never give a sample another series' labels."""

from __future__ import annotations

import math

import pytest

from collector.errors import InvalidRequest
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


def reference(message: agent_pb2.MetricBatch) -> list[tuple[str, dict[str, str], float]]:
    return [(s.name, dict(s.labels), s.value) for s in message.samples]


def as_tuples(samples: list[StoredSample]) -> list[tuple[str, dict[str, str], float]]:
    return [(s.name, dict(s.labels), s.value) for s in samples]


def layout_batch(values: list[float], mount: str = "/") -> agent_pb2.MetricBatch:
    message = batch(
        ("cpu_seconds_total", {"cpu": "0", "mode": "idle"}, values[0]),
        ("disk_free_bytes", {"mount": mount}, values[1]),
        ("load1", {}, values[2]),
    )
    message.sequence = 7
    message.collected_unix_ms = 1_700_000_000_000
    return message


def test_a_source_sending_the_same_series_takes_the_layout_path() -> None:
    decoder = SampleDecoder()
    decoder.decode(layout_batch([1.0, 2.0, 3.0]), "ag-1")
    assert "ag-1" in decoder._layouts
    calls = decoder._decode_each
    decoder._decode_each = None  # type: ignore[assignment,method-assign]  # must not be used
    message = layout_batch([4.5, -2.0, 1e300])
    samples, _ = decoder.decode(message, "ag-1")
    decoder._decode_each = calls  # type: ignore[method-assign]
    assert as_tuples(list(samples)) == reference(message)


def test_the_layout_path_gives_what_the_message_holds_whatever_changes() -> None:
    """Every kind of change between two batches of one source: the answer always
    equals a plain reading of the message (a wrong layout would give another sample's
    labels or a misread value)."""
    changes: list[agent_pb2.MetricBatch] = [
        layout_batch([1.0, 2.0, 3.0]),
        layout_batch([0.0, 2.0, 3.0]),  # a value becomes zero: not serialised
        layout_batch([0.0, 0.0, 0.0]),
        layout_batch([5.0, 0.0, 7.0]),  # and non-zero again
        layout_batch([-0.0, math.inf, -math.inf]),
        layout_batch([1.0, 2.0, 3.0], mount="/srv"),  # another label value
        layout_batch([1.0, 2.0, 3.0], mount="/sr"),  # a shorter one
        batch(("cpu_seconds_total", {"cpu": "0", "mode": "idle"}, 1.0), ("x", {}, 2.0)),
        layout_batch([1.0, 2.0, 3.0]),
    ]
    more = layout_batch([1.0, 2.0, 3.0])
    more.samples.add(name="extra", value=9.0)  # one sample more than the layout
    changes.append(more)
    changes.append(layout_batch([8.0, 9.0, 10.0]))
    failing = layout_batch([1.0, 2.0, 3.0])
    failing.failures.add(check="disks", error="timed out")
    changes.append(failing)
    decoder = SampleDecoder()
    for message in changes:
        samples, failures = decoder.decode(message, "ag-1")
        assert as_tuples(list(samples)) == reference(message)
        assert [(f.check, f.error) for f in failures] == [
            (f.check, f.error) for f in message.failures
        ]


def test_a_sample_with_unknown_fields_is_read_one_by_one() -> None:
    decoder = SampleDecoder()
    known = agent_pb2.Sample(name="x", labels={"k": "v"}, value=3.0).SerializeToString()
    message = layout_batch([1.0, 2.0, 3.0])
    message.samples.add().MergeFromString(known + b"\x22\x03abc")
    decoder.decode(message, "ag-1")
    assert "ag-1" not in decoder._layouts
    message.samples[-1].value = 4.0
    samples, _ = decoder.decode(message, "ag-1")
    assert as_tuples(list(samples)) == reference(message)


def test_layouts_are_kept_per_source_and_bounded() -> None:
    decoder = SampleDecoder(max_sources=2)
    for n in range(5):
        message = layout_batch([1.0, float(n), 3.0], mount=f"/m{n}")
        decoder.decode(message, f"ag-{n}")
        samples, _ = decoder.decode(layout_batch([2.0, 2.0, 2.0], mount=f"/m{n}"), f"ag-{n}")
        assert samples[1].labels == {"mount": f"/m{n}"}
    assert len(decoder._layouts) <= 2


@pytest.mark.parametrize("name", ["", "n" * 1025])
def test_a_sample_name_that_is_empty_or_over_long_is_refused(name: str) -> None:
    decoder = SampleDecoder()
    good = batch(("disk_free", {"mount": "/"}, 1.5), ("load", {}, 2.0))
    decoder.decode(good, "ag-1")  # the layout the bad batch is compared with
    bad = batch(("disk_free", {"mount": "/"}, 1.5), (name, {}, 2.0))
    with pytest.raises(InvalidRequest, match="empty or over-long name"):
        decoder.decode(bad, "ag-1")
    with pytest.raises(InvalidRequest, match="empty or over-long name"):
        decoder.decode(bad)  # not the layout path either
    assert decoded(decoder, batch(("n" * 1024, {}, 1.0)))[0].name == "n" * 1024
