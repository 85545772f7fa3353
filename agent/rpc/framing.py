"""gRPC message framing on an HTTP/2 stream: a flag byte, a 4-byte length, the message.

Contract: ``frame`` wraps one serialized message; ``MessageBuffer`` takes DATA
payloads in whatever pieces they arrive and yields whole messages in order. It
refuses compressed messages (the agent never asks for compression) and messages
larger than its limit, raising ``RpcError`` (the call is then aborted).
"""

from __future__ import annotations

import struct

from agent.rpc.status import RpcError, StatusCode

__all__ = ["MessageBuffer", "frame"]

_PREFIX = struct.Struct(">BI")


def frame(message: bytes) -> bytes:
    """``message`` with its uncompressed length prefix."""
    return _PREFIX.pack(0, len(message)) + message


class MessageBuffer:
    """Reassembles length-prefixed messages from a stream's DATA frames."""

    def __init__(self, max_message_bytes: int) -> None:
        self._buffer = bytearray()
        self._max = max_message_bytes

    def feed(self, data: bytes) -> list[bytes]:
        """Append ``data``; return the messages it completed (possibly none)."""
        buffer = self._buffer
        buffer += data
        messages = []
        offset = 0
        while len(buffer) - offset >= _PREFIX.size:
            compressed, length = _PREFIX.unpack_from(buffer, offset)
            if compressed:
                raise RpcError(StatusCode.INTERNAL, "the server sent a compressed message")
            if length > self._max:
                raise RpcError(
                    StatusCode.RESOURCE_EXHAUSTED,
                    f"the server sent a {length}-byte message (limit {self._max})",
                )
            end = offset + _PREFIX.size + length
            if len(buffer) < end:
                break
            with memoryview(buffer) as view:  # one copy, not slice-then-bytes
                messages.append(view[offset + _PREFIX.size : end].tobytes())
            offset = end
        del buffer[:offset]
        return messages

    @property
    def buffered_bytes(self) -> int:
        """Bytes of an incomplete message held here."""
        return len(self._buffer)

    @property
    def partial(self) -> bool:
        """Whether an incomplete message is buffered (a stream must not end here)."""
        return bool(self._buffer)
