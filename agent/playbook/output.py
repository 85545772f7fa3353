"""A step's output on its way out: pipes, per-stream redaction, the cap, ordered delivery.

``StepOutput`` takes raw bytes of one step (from ``Pipes`` or a builtin), redacts
each stream with its own ``StreamRedactor`` and passes the result to ``on_output``
in chunks of at most ``CHUNK_SIZE`` bytes - one chunk at a time, in order, never
concurrently. Once ``limit`` bytes have been forwarded it sends one
``truncation_marker`` chunk and from then on only counts (and discards) what
arrives, reading in larger blocks so the program never blocks on a full pipe.
Memory stays bounded by a few chunks per stream plus the redactor's line buffer.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

from agent.playbook.redact import Redactor, StreamRedactor

__all__ = [
    "CHUNK_SIZE",
    "OnOutput",
    "OutputChunk",
    "Pipes",
    "StepOutput",
    "StreamName",
    "truncation_marker",
]

CHUNK_SIZE = 16 * 1024  # largest chunk passed to on_output
DRAIN_SIZE = 256 * 1024  # read size once output is only being discarded
StreamName = Literal["stdout", "stderr", "builtin"]


@dataclass(frozen=True)
class OutputChunk:
    """Redacted output of one step; ``stream`` says where it came from."""

    step: str
    stream: StreamName
    data: bytes


OnOutput = Callable[[OutputChunk], Awaitable[None]]


def truncation_marker(limit: int) -> bytes:
    """The chunk sent once a step's output reached its cap of ``limit`` bytes."""
    return f"\n[aftercare: output truncated after {limit} bytes]\n".encode()


class StepOutput:
    """One step's output path; counts what the step wrote and what was forwarded."""

    def __init__(self, step: str, limit: int, redactor: Redactor, on_output: OnOutput) -> None:
        self.step = step
        self._limit = limit
        self._redactor = redactor
        self._on_output = on_output
        self._streams: dict[StreamName, StreamRedactor] = {}
        self._lock = asyncio.Lock()
        self.forwarded = 0  # bytes passed to on_output, without the marker
        self.output_bytes = 0  # bytes the step wrote
        self.truncated = False

    @property
    def redactions(self) -> int:
        return sum(s.redactions for s in self._streams.values())

    async def pump(self, reader: asyncio.StreamReader, stream: StreamName) -> None:
        """Read ``reader`` to its end, forwarding (or, past the cap, discarding) output."""
        while data := await reader.read(DRAIN_SIZE if self.truncated else CHUNK_SIZE):
            await self.feed(stream, data)
        await self.close(stream)

    async def feed_all(self, stream: StreamName, data: bytes) -> None:
        """All of a builtin's output at once."""
        for start in range(0, len(data), CHUNK_SIZE):
            await self.feed(stream, data[start : start + CHUNK_SIZE])
        await self.close(stream)

    async def feed(self, stream: StreamName, data: bytes) -> None:
        self.output_bytes += len(data)
        if not self.truncated:
            await self._forward(stream, self._stream(stream).feed(data))

    async def close(self, stream: StreamName) -> None:
        """End of ``stream``: forward what its redactor still holds."""
        if not self.truncated:
            await self._forward(stream, self._stream(stream).finish())

    def _stream(self, stream: StreamName) -> StreamRedactor:
        if stream not in self._streams:
            self._streams[stream] = self._redactor.stream()
        return self._streams[stream]

    async def _forward(self, stream: StreamName, data: bytes) -> None:
        async with self._lock:
            if self.truncated:
                return
            room = self._limit - self.forwarded
            for start in range(0, min(len(data), room), CHUNK_SIZE):
                piece = data[start : min(start + CHUNK_SIZE, room)]
                self.forwarded += len(piece)
                await self._on_output(OutputChunk(self.step, stream, piece))
            if len(data) > room:
                self.truncated = True
                marker = truncation_marker(self._limit)
                await self._on_output(OutputChunk(self.step, stream, marker))


class Pipes:
    """A step's stdout and stderr pipes: write ends for the child, read ends for us.

    The executor owns the read ends (rather than letting asyncio create them with
    the process) so that it can close them itself when a process that escaped the
    group keeps the write end open, and so that ``Process.wait()`` waits for the
    program's exit only, not for its pipes.
    """

    def __init__(self) -> None:
        self._stdout = os.pipe()
        self._stderr = os.pipe()
        self._open = {*self._stdout, *self._stderr}
        self._transports: list[asyncio.BaseTransport] = []

    @property
    def child_stdout(self) -> int:
        return self._stdout[1]

    @property
    def child_stderr(self) -> int:
        return self._stderr[1]

    def close_child_ends(self) -> None:
        """Drop the parent's copies of the write ends (once the child has its own)."""
        self._close_fds(self._stdout[1], self._stderr[1])

    async def readers(self) -> tuple[asyncio.StreamReader, asyncio.StreamReader]:
        return await self._reader(self._stdout[0]), await self._reader(self._stderr[0])

    async def _reader(self, fd: int) -> asyncio.StreamReader:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=DRAIN_SIZE, loop=loop)
        pipe = os.fdopen(fd, "rb", buffering=0)
        self._open.discard(fd)  # the file object owns it now
        try:
            transport, _ = await loop.connect_read_pipe(
                lambda: asyncio.StreamReaderProtocol(reader, loop=loop), pipe
            )
        except BaseException:
            pipe.close()
            raise
        self._transports.append(transport)
        return reader

    def close(self) -> None:
        for transport in self._transports:
            transport.close()
        self._close_fds(*self._open)

    def _close_fds(self, *fds: int) -> None:
        for fd in fds:
            if fd in self._open:
                self._open.discard(fd)
                os.close(fd)
