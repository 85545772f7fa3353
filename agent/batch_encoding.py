"""A cycle's ``MetricBatch`` encoded straight to protobuf wire bytes, series cached.

Building a ``MetricBatch`` message sample by sample (a map of labels each) and then
copying it into an ``AgentMessage`` cost more CPU than sampling the cycle. Yet from one
cycle to the next only the values change: the series - name and labels - repeat. So
``BatchEncoder`` keeps each series' encoded bytes (field tag, length, name, labels) and a
cycle costs one cache look-up and an 8-byte double per sample.

Wire layout (proto/agent.proto): ``MetricBatch`` = 2: collected_unix_ms (varint),
3: samples, 4: failures, and the sequence (field 1) appended last by
``agent_message_with_sequence`` once the spool assigns it - a protobuf parser takes
fields in any order. The result parses to exactly the message ``cycle_to_batch`` builds
(tests/agent/test_batch_encoding.py checks it).
"""

from __future__ import annotations

import struct

from agent.sampler import Cycle, Sample

MAX_CACHED_SERIES = 4096  # beyond this, the cache starts afresh (labels that churn)

_DOUBLE = struct.Struct("<d")
_SAMPLE_TAG = b"\x1a"  # MetricBatch.samples: field 3, length-delimited
_FAILURE_TAG = b"\x22"  # MetricBatch.failures: field 4
_COLLECTED_TAG = b"\x10"  # MetricBatch.collected_unix_ms: field 2, varint
_VALUE_TAG = b"\x19"  # Sample.value: field 3, 64-bit
_BATCH_TAG = b"\x12"  # AgentMessage.batch: field 2, length-delimited
_SEQUENCE_TAG = b"\x08"  # MetricBatch.sequence: field 1, varint


def varint(value: int) -> bytes:
    """Protobuf base-128 varint of a non-negative int (negative int64: two's complement)."""
    value &= (1 << 64) - 1
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field(tag: bytes, data: bytes) -> bytes:
    return tag + varint(len(data)) + data


class BatchEncoder:
    """Encodes cycles as ``MetricBatch`` bytes without the sequence (see module doc).

    Raises UnicodeEncodeError for text that is not valid UTF-8 (lone surrogates), which
    protobuf refuses too.
    """

    def __init__(self) -> None:
        self._series: dict[tuple[str, tuple[tuple[str, str], ...]], bytes] = {}

    def encode(self, cycle: Cycle) -> bytes:
        """The cycle's batch body: collected time, samples, failures."""
        parts = [_COLLECTED_TAG, varint(cycle.collected_unix_ms)]
        append, pack = parts.append, _DOUBLE.pack
        for sample in cycle.samples:
            append(self._head(sample))
            append(pack(sample.value))
        for failure in cycle.failures:
            check = _field(b"\x0a", failure.check.encode())
            error = _field(b"\x12", failure.error.encode())
            append(_field(_FAILURE_TAG, check + error))
        return b"".join(parts)

    def _head(self, sample: Sample) -> bytes:
        """Tag, length, name, labels and the value's tag of ``sample``'s series."""
        key = (sample.name, tuple(sample.labels.items()))
        cached = self._series.get(key)
        if cached is None:
            if len(self._series) >= MAX_CACHED_SERIES:
                self._series.clear()
            body = _field(b"\x0a", sample.name.encode())
            for name, value in key[1]:
                entry = _field(b"\x0a", name.encode()) + _field(b"\x12", value.encode())
                body += _field(b"\x12", entry)
            body += _VALUE_TAG
            cached = _SAMPLE_TAG + varint(len(body) + _DOUBLE.size) + body
            self._series[key] = cached
        return cached


def agent_message_with_sequence(body: bytes, sequence: int) -> bytes:
    """``AgentMessage(batch=...)`` bytes for a batch ``body`` with its ``sequence`` set."""
    batch = body + _SEQUENCE_TAG + varint(sequence)
    return _BATCH_TAG + varint(len(batch)) + batch
