"""One gRPC call on an HTTP/2 stream, as its caller and the channel see it.

Contract for callers: ``write`` sends one serialized request message; ``read``
returns the next response message, None once the server ended the call with OK,
and raises ``RpcError`` once it ended otherwise (after the messages that came before
the error); ``done_writing`` half-closes; ``cancel`` aborts at once. Writes on one
call never interleave. Received bytes are acknowledged to the server (opening the
stream's flow-control window) only while no whole message waits unread, so a slow
reader holds back a fast sender instead of growing memory: an unread call buffers at
most its stream window plus one partly received message (``buffered_bytes``). The
connection's window is the channel's business and never waits for a reader.

The channel drives the other side: ``_on_headers``, ``_on_data``, ``_on_trailers``,
``_on_end`` and ``_fail`` are called from its reader task.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable, Mapping
from typing import Generic, Protocol, TypeVar

from agent.rpc.framing import MessageBuffer, frame
from agent.rpc.status import RpcError, StatusCode, status_from_headers, status_from_http

__all__ = ["StreamCall"]

R = TypeVar("R")


class Connection(Protocol):
    """What a call needs from its channel."""

    async def send(self, stream_id: int, data: bytes, end_stream: bool) -> None: ...

    def reset(self, stream_id: int) -> None: ...

    def acknowledge(self, stream_id: int, size: int) -> None: ...


class StreamCall(Generic[R]):
    """A client-side gRPC call (unary or streaming) on one HTTP/2 stream."""

    def __init__(
        self,
        connection: Connection,
        stream_id: int,
        decode: Callable[[bytes], R],
        max_message_bytes: int,
    ) -> None:
        self._connection = connection
        self._stream_id = stream_id
        self._decode = decode
        self._buffer = MessageBuffer(max_message_bytes)
        self._messages: collections.deque[bytes] = collections.deque()
        self._unacknowledged = 0
        self._readable = asyncio.Event()
        self._write_lock = asyncio.Lock()
        self._half_closed = False
        self._status: RpcError | None = None  # set once: the call's final status
        self._trailers: RpcError | None = None

    @property
    def buffered_bytes(self) -> int:
        """Bytes received on this call and not yet read (whole and partial messages)."""
        return sum(map(len, self._messages)) + self._buffer.buffered_bytes

    @property
    def finished(self) -> bool:
        """Whether the call has its final status (it may still hold unread messages)."""
        return self._status is not None

    async def write(self, message: bytes) -> None:
        """Send one serialized message. Raises RpcError once the call has ended."""
        async with self._write_lock:
            if self._status is not None:
                raise self._ended_error()
            if self._half_closed:
                raise RpcError(StatusCode.INTERNAL, "write after done_writing")
            try:
                await self._connection.send(self._stream_id, frame(message), False)
            except RpcError:
                if self._status is not None:  # the call ended meanwhile: report how
                    raise self._ended_error() from None
                raise

    async def done_writing(self) -> None:
        """Half-close: tell the server no more messages follow (idempotent)."""
        async with self._write_lock:
            if self._half_closed or self._status is not None:
                return
            self._half_closed = True
            await self._connection.send(self._stream_id, b"", True)

    async def read(self) -> R | None:
        """The next message; None after a clean end; RpcError after a failed one."""
        while not self._messages:
            if self._status is not None:
                if self._status.code == StatusCode.OK:
                    return None
                raise self._status
            self._readable.clear()
            await self._readable.wait()
        message = self._messages.popleft()
        if not self._messages and self._unacknowledged:
            self._connection.acknowledge(self._stream_id, self._unacknowledged)
            self._unacknowledged = 0
        return self._decode(message)

    def cancel(self) -> None:
        """Abort the call (RST_STREAM CANCEL); later reads and writes raise CANCELLED."""
        self._abort(RpcError(StatusCode.CANCELLED, "the call was cancelled"))

    # The channel's side.

    def _on_headers(self, headers: Mapping[bytes, bytes]) -> None:
        http_status = headers.get(b":status", b"")
        if http_status != b"200":
            self._abort(status_from_http(int(http_status or 0)))
            return
        content_type = headers.get(b"content-type", b"")
        if not content_type.startswith(b"application/grpc"):
            self._abort(RpcError(StatusCode.UNKNOWN, f"unexpected content-type {content_type!r}"))
            return
        self._trailers = status_from_headers(headers)  # a trailers-only response

    def _on_data(self, data: bytes, flow_controlled: int) -> None:
        if self._status is not None:
            self._connection.acknowledge(self._stream_id, flow_controlled)
            return
        try:
            messages = self._buffer.feed(data)
        except RpcError as error:
            self._connection.acknowledge(self._stream_id, flow_controlled)
            self._abort(error)
            return
        self._messages.extend(messages)
        if self._messages:
            self._unacknowledged += flow_controlled
            self._readable.set()
        else:  # only part of a message: take more at once, whatever its size
            self._connection.acknowledge(self._stream_id, flow_controlled)

    def _on_trailers(self, headers: Mapping[bytes, bytes]) -> None:
        self._trailers = status_from_headers(headers) or RpcError(
            StatusCode.INTERNAL, "the server's trailers carry no grpc-status"
        )

    def _on_end(self) -> None:
        """The server ended its side: the call's status is in its trailers."""
        if self._buffer.partial:
            self._fail(RpcError(StatusCode.INTERNAL, "the call ended inside a message"))
        else:
            self._fail(
                self._trailers
                or RpcError(StatusCode.INTERNAL, "the server ended the call without a status")
            )

    def _fail(self, status: RpcError) -> None:
        """Record the final status (the first one wins) and wake the reader."""
        if self._status is None:
            self._status = status
            self._readable.set()
            if self._unacknowledged:  # no more data comes on this stream: free the window
                self._connection.acknowledge(self._stream_id, self._unacknowledged)
                self._unacknowledged = 0

    def _abort(self, error: RpcError) -> None:
        """A client-side verdict: reset the stream and end the call with ``error``."""
        if self._status is None:
            self._connection.reset(self._stream_id)
            self._fail(error)

    def _ended_error(self) -> RpcError:
        assert self._status is not None
        if self._status.code == StatusCode.OK:
            return RpcError(StatusCode.INTERNAL, "write after the server ended the call")
        return self._status
