"""Serving one tunnel: frames from the collector to backend channels and back, until it ends.

``TunnelRelay.serve`` (after the endpoint sent ``attach`` and admitted the login):

1. logs in through the backend (failure: ``end{reason}``);
2. relays frames: ``open`` → a backend channel and ``opened{error}``; ``data``,
   ``eof``, ``resize``, ``close`` to the channel; the channel's output, EOF, exit
   and close back as frames (``data`` with ``stderr`` for extended data);
3. ends on the first of: the window's end (the agent's own timer: ``end{"access
   window ended at ..."}``), ``end(reason)`` (SessionClose, agent stopping), the
   collector closing the RPC, or the RPC breaking. The backend login is closed
   first, at once; then, unless the RPC is gone, the open channels get ``close``,
   the tunnel gets ``end{reason}`` and the agent closes its side.

Every frame to the collector goes through one queue and one writer task (frames
from several channels and threads never interleave). The queue is bounded for
channel output: a producer (a fast ``cat``) waits while it is full, which in turn
stops the backend reading, so memory stays bounded. Control frames never wait.
Input from the engineer is queued per channel (bounded too) and written by one
task per channel, so a program that does not read its input delays only its own
channel's data. The customer's copy is recorded here (``CustomerCopy``) and every
step is appended to the session journal.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agent.journal import Journal
from agent.session.backend import Backend, BackendChannel, ChannelRequest, Login
from agent.session.errors import ChannelRefused, LoginFailed
from agent.session.fifo import Fifo
from agent.session.recording import CustomerCopy
from agent.session.tunnel_io import TunnelIO
from agent.session.window import iso_time, window_ended
from common.asciicast import CastWriter
from common.clock import Clock
from proto import agent_pb2

__all__ = ["TunnelInfo", "TunnelRelay", "refuse_tunnel"]

log = logging.getLogger(__name__)

FRAME_QUEUE_LIMIT = 64  # output frames waiting for the RPC (about 2 MiB of 32 KiB chunks)
INPUT_QUEUE_LIMIT = 64  # chunks from the engineer waiting for one channel
OPEN_TIMEOUT_SECONDS = 30.0
CLOSE_TIMEOUT_SECONDS = 5.0  # closing the backend login or one channel
FLUSH_TIMEOUT_SECONDS = 5.0  # sending the last frames, then the collector's close
WINDOW_CHECK_SECONDS = 30.0  # longest sleep of the window timer (wall clock jumps)

Frame = agent_pb2.TunnelFrame


@dataclass(frozen=True)
class TunnelInfo:
    """The admitted login: ids, who, and when it must end (Unix seconds)."""

    session_id: str
    tunnel_id: str
    engineer: str
    approved_by: str
    window_end: float


class _Eof:
    """The engineer's end of input, queued behind its data."""


_EOF = _Eof()


@dataclass(eq=False)
class _Channel:
    number: int
    request: ChannelRequest
    inputs: Fifo[bytes | _Eof] = field(default_factory=lambda: Fifo(INPUT_QUEUE_LIMIT))
    opened: asyncio.Event = field(default_factory=asyncio.Event)
    backend: BackendChannel | None = None
    cast: CastWriter | None = None
    bytes_in: int = 0  # from the engineer
    bytes_out: int = 0  # to the engineer
    exit: str = ""
    finished: bool = False


class _Sink:
    """The ChannelSink of one channel: reports go to the relay."""

    def __init__(self, relay: TunnelRelay, channel: _Channel) -> None:
        self._relay = relay
        self._channel = channel

    async def output(self, data: bytes, stderr: bool) -> None:
        await self._relay._output(self._channel, data, stderr)

    async def eof(self) -> None:
        await self._relay._channel_eof(self._channel)

    async def exited(self, status: int | None, signal: str) -> None:
        await self._relay._exited(self._channel, status, signal)

    async def closed(self) -> None:
        await self._channel.opened.wait()
        self._relay._finish(self._channel, send_close=True)


class TunnelRelay:
    """One tunnel between the collector (``io``) and a login on this host."""

    def __init__(
        self,
        io: TunnelIO,
        info: TunnelInfo,
        backend: Backend,
        copy: CustomerCopy | None,
        journal: Journal,
        clock: Clock = time.time,
    ) -> None:
        self._io = io
        self.info = info
        self._backend = backend
        self._copy = copy
        self._journal = journal
        self._clock = clock
        self._frames: Fifo[Frame] = Fifo(FRAME_QUEUE_LIMIT)
        self._channels: dict[int, _Channel] = {}
        self._feeders: set[asyncio.Task[None]] = set()
        self._login: Login | None = None
        self._stopping = False
        self._end_reason = ""
        self._ending = asyncio.Event()

    def end(self, reason: str) -> None:
        """Ask the tunnel to end with ``reason`` (sent to the collector). Idempotent."""
        if not self._ending.is_set():
            self._end_reason = reason
            self._ending.set()

    async def serve(self) -> str:
        """Serve until the tunnel ends; returns why it ended. Always closes the login."""
        writer = asyncio.create_task(self._write_frames())
        reader: asyncio.Task[None] | None = None
        reason, graceful = "the agent stopped", False
        try:
            reason, graceful, reader = await self._run(writer)
        finally:
            await asyncio.shield(self._shutdown(reason, graceful, writer, reader))
        return reason

    # -- the tunnel's life ------------------------------------------------------------

    async def _run(self, writer: asyncio.Task[None]) -> tuple[str, bool, asyncio.Task[None] | None]:
        """Log in, relay, and return (why it ended, whether to say so, the reader task)."""
        timer = asyncio.create_task(self._window_timer())
        stop = asyncio.create_task(self._ending.wait())
        watched: set[asyncio.Task[Any]] = {timer, stop, writer}
        try:
            login = asyncio.create_task(self._backend.login(self.info.engineer))
            await asyncio.wait({login, *watched}, return_when=asyncio.FIRST_COMPLETED)
            if not login.done():
                login.cancel()
                return *self._why(timer, stop, writer), None
            try:
                self._login = login.result()
            except LoginFailed as exc:
                log.warning("session %s: %s", self.info.session_id, exc)
                return str(exc), True, None
            except Exception as exc:  # a backend bug must still end the tunnel with a reason
                log.exception("session %s: logging in failed", self.info.session_id)
                return f"cannot log in on this host: {exc!r}", True, None
            self._journal_tunnel("tunnel_opened", backend=self._backend.description)
            reader = asyncio.create_task(self._read_frames())
            await asyncio.wait({reader, *watched}, return_when=asyncio.FIRST_COMPLETED)
            if reader.done() and not (timer.done() or stop.done()):
                error = "cancelled" if reader.cancelled() else reader.exception()
                if error is None:
                    return "the collector closed the tunnel", False, reader
                return f"the tunnel broke: {error}", False, reader
            return *self._why(timer, stop, writer), reader
        finally:
            timer.cancel()
            stop.cancel()

    def _why(
        self, timer: asyncio.Task[None], stop: asyncio.Task[Any], writer: asyncio.Task[None]
    ) -> tuple[str, bool]:
        if stop.done():
            return self._end_reason, True
        if timer.done():
            return window_ended(self.info.window_end), True
        error = writer.exception() if writer.done() and not writer.cancelled() else None
        return f"the tunnel broke: {error}", False

    async def _window_timer(self) -> None:
        """Return at the window's end (checks the wall clock at least every 30 s)."""
        while (left := self.info.window_end - self._clock()) > 0:
            await asyncio.sleep(min(left, WINDOW_CHECK_SECONDS))

    async def _shutdown(
        self,
        reason: str,
        graceful: bool,
        writer: asyncio.Task[None],
        reader: asyncio.Task[None] | None,
    ) -> None:
        """Close the login at once; then close channels, send ``end``, close the RPC."""
        self._stopping = True
        self._frames.release_producers()  # output blocked on a full queue must not delay this
        if self._login is not None:
            try:
                await asyncio.wait_for(self._login.close(), CLOSE_TIMEOUT_SECONDS)
            except Exception:
                log.exception("session %s: closing the login failed", self.info.session_id)
        for channel in list(self._channels.values()):
            self._finish(channel, send_close=graceful)
        for task in self._feeders:
            task.cancel()
        self._journal_tunnel("tunnel_ended", reason=reason)
        log.info(
            "session %s tunnel %s ended: %s", self.info.session_id, self.info.tunnel_id, reason
        )
        if graceful and await self._flush(writer, reason):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._io.done_writing(), FLUSH_TIMEOUT_SECONDS)
            if reader is None:
                reader = asyncio.create_task(self._read_frames())
            with contextlib.suppress(Exception):  # the collector finishes the RPC in turn
                await asyncio.wait_for(asyncio.shield(reader), FLUSH_TIMEOUT_SECONDS)
        self._frames.close(drop=True)
        tasks = [t for t in (writer, reader, *self._feeders) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._io.cancel()

    async def _flush(self, writer: asyncio.Task[None], reason: str) -> bool:
        """Queue ``end{reason}`` after what is queued; True once all is written (bounded)."""
        self._frames.force(Frame(end=agent_pb2.TunnelEnd(reason=reason)))
        self._frames.close()
        try:
            await asyncio.wait_for(asyncio.shield(writer), FLUSH_TIMEOUT_SECONDS)
        except Exception:  # a stalled or broken RPC: give up on it
            return False
        return True

    # -- frames -----------------------------------------------------------------------

    async def _write_frames(self) -> None:
        """The only writer of the RPC: queued frames in order, until the queue is closed."""
        while (frame := await self._frames.get()) is not None:
            await self._io.write(frame)

    async def _read_frames(self) -> None:
        """Dispatch the collector's frames until it closes (ignored once stopping)."""
        while (frame := await self._io.read()) is not None:
            if not self._stopping:
                await self._dispatch(frame)

    async def _dispatch(self, frame: Frame) -> None:
        kind = frame.WhichOneof("kind")
        if kind == "open":
            await self._open(frame.open)
            return
        number = getattr(frame, kind).channel if kind in ("data", "eof", "resize", "close") else -1
        channel = self._channels.get(number)
        if channel is None or channel.finished:
            log.debug(
                "tunnel %s: %s frame for no open channel %d", self.info.tunnel_id, kind, number
            )
        elif kind == "data":
            channel.bytes_in += len(frame.data.data)
            if channel.cast is not None:
                self._record(channel, channel.cast.input, frame.data.data)
            await channel.inputs.put(frame.data.data)
        elif kind == "eof":
            channel.inputs.force(_EOF)
        elif kind == "resize":
            await self._resize(channel, frame.resize.cols, frame.resize.rows)
        elif kind == "close":
            self._finish(channel, send_close=True)
            if channel.backend is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(channel.backend.close(), CLOSE_TIMEOUT_SECONDS)

    async def _open(self, request: agent_pb2.ChannelOpen) -> None:
        number = request.channel
        known = self._channels.get(number)
        if known is not None and not known.finished:
            self._opened(number, f"channel {number} is already open")
            return
        channel = _Channel(number, _channel_request(request))
        self._channels[number] = channel
        assert self._login is not None
        try:
            channel.backend = await asyncio.wait_for(
                self._login.open_channel(channel.request, _Sink(self, channel)),
                OPEN_TIMEOUT_SECONDS,
            )
        except Exception as exc:
            error = _open_error(exc)
            channel.finished = True
            channel.opened.set()
            self._channels.pop(number, None)
            self._opened(number, error)
            self._journal_channel("channel_refused", channel, error=error)
            return
        if self._copy is not None:
            title = f"aftercare session {self.info.session_id} ({self.info.engineer})"
            channel.cast = self._copy.start(
                self.info.session_id, self.info.tunnel_id, number, channel.request, title
            )
        feeder = asyncio.create_task(self._feed(channel))
        self._feeders.add(feeder)
        feeder.add_done_callback(self._feeders.discard)
        self._opened(number, "")
        channel.opened.set()
        self._journal_channel(
            "channel_opened",
            channel,
            pty=channel.request.pty,
            recording=str(channel.cast.path) if channel.cast is not None else "",
        )

    def _opened(self, number: int, error: str) -> None:
        self._frames.force(Frame(opened=agent_pb2.ChannelOpened(channel=number, error=error)))

    async def _feed(self, channel: _Channel) -> None:
        """Write the engineer's input to the channel, in order, EOF included."""
        assert channel.backend is not None
        try:
            while (item := await channel.inputs.get()) is not None:
                if isinstance(item, _Eof):
                    await channel.backend.shutdown_write()
                else:
                    await channel.backend.write(item)
        except Exception as exc:  # the channel is gone: its close report follows
            log.debug("input to channel %d failed: %s", channel.number, exc)
            channel.inputs.close(drop=True)

    async def _resize(self, channel: _Channel, cols: int, rows: int) -> None:
        if channel.backend is None or cols <= 0 or rows <= 0:
            return
        try:
            await channel.backend.resize(cols, rows)
        except Exception as exc:
            log.debug("resize of channel %d failed: %s", channel.number, exc)
            return
        if channel.cast is not None and channel.request.pty:
            self._record(channel, channel.cast.resize, cols, rows)

    # -- what the backend reports (ChannelSink) -----------------------------------------

    async def _output(self, channel: _Channel, data: bytes, stderr: bool) -> None:
        await channel.opened.wait()
        if channel.finished or self._stopping or not data:
            return
        channel.bytes_out += len(data)
        if channel.cast is not None:
            self._record(channel, channel.cast.output, data)
        chunk = agent_pb2.ChannelData(channel=channel.number, data=data, stderr=stderr)
        await self._frames.put(Frame(data=chunk))

    async def _channel_eof(self, channel: _Channel) -> None:
        await channel.opened.wait()
        if not (channel.finished or self._stopping):
            self._frames.force(Frame(eof=agent_pb2.ChannelEof(channel=channel.number)))

    async def _exited(self, channel: _Channel, status: int | None, signal: str) -> None:
        await channel.opened.wait()
        if channel.finished or self._stopping:
            return
        channel.exit = f"signal {signal}" if signal else f"status {status}"
        exit_frame = agent_pb2.ChannelExit(
            channel=channel.number, status=status or 0, signal=signal
        )
        self._frames.force(Frame(exit=exit_frame))

    def _finish(self, channel: _Channel, *, send_close: bool) -> None:
        """The channel is gone: stop its input, close its recording, say so once."""
        if channel.finished:
            return
        channel.finished = True
        channel.inputs.close(drop=True)
        if self._channels.get(channel.number) is channel:
            del self._channels[channel.number]
        digest = ""
        if channel.cast is not None:
            with contextlib.suppress(OSError):
                digest = channel.cast.close().sha256
        if send_close:
            self._frames.force(Frame(close=agent_pb2.ChannelClose(channel=channel.number)))
        self._journal_channel(
            "channel_closed",
            channel,
            bytes_from_engineer=channel.bytes_in,
            bytes_to_engineer=channel.bytes_out,
            exit=channel.exit,
            recording_sha256=digest,
        )

    def _record(self, channel: _Channel, write: Callable[..., object], *args: Any) -> None:
        """Write to the customer's copy; a failing copy is closed, the channel goes on."""
        try:
            write(*args)
        except OSError as exc:
            log.error("recording of channel %d stopped: %s", channel.number, exc)
            cast, channel.cast = channel.cast, None
            if cast is not None:
                with contextlib.suppress(OSError):
                    cast.close()

    # -- journal ------------------------------------------------------------------------

    def _journal_tunnel(self, event: str, **fields: object) -> None:
        self._journal.write(
            event,
            session_id=self.info.session_id,
            tunnel_id=self.info.tunnel_id,
            engineer=self.info.engineer,
            approved_by=self.info.approved_by,
            window_end=iso_time(self.info.window_end),
            **fields,
        )

    def _journal_channel(self, event: str, channel: _Channel, **fields: object) -> None:
        self._journal.write(
            event,
            session_id=self.info.session_id,
            tunnel_id=self.info.tunnel_id,
            channel=channel.number,
            kind=channel.request.kind,
            command=channel.request.command,
            **fields,
        )


async def refuse_tunnel(io: TunnelIO, reason: str) -> None:
    """End an attached tunnel that is not admitted: ``end{reason}``, half-close, finish."""
    try:
        await io.write(Frame(end=agent_pb2.TunnelEnd(reason=reason)))
        await io.done_writing()
        async with asyncio.timeout(FLUSH_TIMEOUT_SECONDS):
            while await io.read() is not None:
                pass
    except (ConnectionError, TimeoutError):
        pass
    finally:
        io.cancel()


def _channel_request(request: agent_pb2.ChannelOpen) -> ChannelRequest:
    return ChannelRequest(
        kind=request.kind,
        command=request.command,
        pty=request.pty,
        term=request.term,
        cols=request.cols or 80,
        rows=request.rows or 24,
    )


def _open_error(exc: Exception) -> str:
    if isinstance(exc, ChannelRefused):
        return str(exc)
    if isinstance(exc, TimeoutError):
        return f"the channel did not open within {OPEN_TIMEOUT_SECONDS:g}s"
    log.exception("opening a channel failed")
    return f"cannot open the channel: {exc}"
