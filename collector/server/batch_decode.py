"""Agent batches into store records, with each series' name and labels remembered.

A host sends the same series (name and labels) in every batch; only the values change.
Reading a protobuf map into a dict (``dict(sample.labels)``) was the largest Python cost
of a batch, so ``SampleDecoder`` keys each sample by its serialised form without the
value and converts only samples it has not seen: the serialised ``Sample`` is its
fields in field-number order (name = 1, labels = 2, value = 3, unknown fields after
them), so when it ends with the value field (tag 0x19 and the 8 bytes of the value),
the bytes before it hold the complete name and labels, and equal bytes mean equal name
and labels. A zero value is not serialised; such a sample is keyed by all its bytes.
Map entries may come in another order; that costs a miss, never a wrong label.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence

from collector.store import StoredFailure, StoredSample
from collector.store.ingest_rows import LabelSet
from proto import agent_pb2

__all__ = ["SampleDecoder"]

_VALUE_TAG = b"\x19"  # field 3, wire type 1 (64-bit)
_ZERO = bytes(8)
_PACK_DOUBLE = struct.Struct("<d").pack
MAX_REMEMBERED = 100_000  # distinct (name, labels) kept; the table is emptied when full


class SampleDecoder:
    """Turns ``MetricBatch`` messages into store records. Not thread-safe: one caller
    (the store writer). The label mappings it returns (``LabelSet``: a dict carrying its
    canonical JSON for the store) are shared between batches and must not be changed."""

    def __init__(self, max_remembered: int = MAX_REMEMBERED) -> None:
        self._max = max_remembered
        self._series: dict[bytes, tuple[str, Mapping[str, str]]] = {}

    def decode(
        self, batch: agent_pb2.MetricBatch
    ) -> tuple[Sequence[StoredSample], Sequence[StoredFailure]]:
        """The batch's samples and failures as store records."""
        series = self._series
        samples = []
        for sample in batch.samples:
            value = sample.value
            wire = sample.SerializeToString()
            packed = _PACK_DOUBLE(value)
            key = wire[:-9] if packed != _ZERO and wire.endswith(_VALUE_TAG + packed) else wire
            known = series.get(key)
            if known is None:
                if len(series) >= self._max:
                    series.clear()  # label sets churn: start over rather than grow
                known = series[key] = (sample.name, LabelSet(sample.labels))
            samples.append(StoredSample(known[0], known[1], value))
        failures = [StoredFailure(f.check, f.error) for f in batch.failures]
        return samples, failures
