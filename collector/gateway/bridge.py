"""Blocking access to the event loop for the gateway's threads.

``LoopBridge.call`` runs a coroutine on the collector's loop and waits for it;
``ThreadTunnel`` is an agent tunnel seen from a thread: ``send`` blocks while the
tunnel's writes are backed up (gRPC flow control reaches the engineer's SSH window),
``receive`` blocks for the next frame and returns None once the tunnel is over.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import queue
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from collector.gateway.tunnels import Tunnel, TunnelUnavailable
from proto import agent_pb2

T = TypeVar("T")
log = logging.getLogger(__name__)

CALL_TIMEOUT_SECONDS = 60.0
MAX_WRITES_IN_FLIGHT = 8
READ_AHEAD = 64


class LoopBridge:
    """Run coroutines on ``loop`` from other threads."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop

    def call(self, coro: Coroutine[Any, Any, T], timeout: float | None = CALL_TIMEOUT_SECONDS) -> T:
        """Run ``coro`` on the loop and return its result (its exception is raised here)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def spawn(self, coro: Coroutine[Any, Any, Any], what: str) -> None:
        """Run ``coro`` on the loop without waiting; a failure is logged, naming ``what``."""

        def done(future: concurrent.futures.Future[Any]) -> None:
            if not future.cancelled() and future.exception() is not None:
                log.error("could not record %s: %s", what, future.exception())

        try:
            asyncio.run_coroutine_threadsafe(coro, self.loop).add_done_callback(done)
        except RuntimeError:  # the loop is closed: the collector is stopping
            coro.close()
            log.warning("could not record %s: the collector is stopping", what)

    def soon(self, fn: Any, *args: Any) -> None:
        """Schedule a plain callable on the loop without waiting."""
        self.loop.call_soon_threadsafe(fn, *args)


class ThreadTunnel:
    """An AgentTunnel used from gateway threads.

    ``send`` does not wait for each write: up to ``MAX_WRITES_IN_FLIGHT`` frames are
    queued on the loop (in order), so reading the engineer's next bytes overlaps with
    writing the last ones; beyond that it blocks. A failed write makes the next
    ``send`` raise. ``receive`` takes frames a loop task has read ahead. One thread
    receives; any thread may send.
    """

    def __init__(self, tunnel: Tunnel, bridge: LoopBridge) -> None:
        self._tunnel = tunnel
        self._bridge = bridge
        self._slots = threading.BoundedSemaphore(MAX_WRITES_IN_FLIGHT)
        self._failure: BaseException | None = None
        self._inbox: queue.Queue[agent_pb2.TunnelFrame | None] = queue.Queue(READ_AHEAD)
        self._reading = False

    def send(self, frame: agent_pb2.TunnelFrame) -> None:
        """Queue one frame; raises TunnelUnavailable once the tunnel is over."""
        if self._failure is not None:
            raise TunnelUnavailable(str(self._failure)) from self._failure
        self._slots.acquire()
        try:
            future = asyncio.run_coroutine_threadsafe(self._tunnel.write(frame), self._bridge.loop)
        except RuntimeError as exc:  # the loop is gone: the collector is stopping
            self._slots.release()
            raise TunnelUnavailable("the collector is stopping") from exc
        future.add_done_callback(self._written)

    def _written(self, future: concurrent.futures.Future[None]) -> None:
        self._slots.release()
        if not future.cancelled() and future.exception() is not None:
            self._failure = future.exception()

    def receive(self) -> agent_pb2.TunnelFrame | None:
        """The next frame from the agent (None once the tunnel is over). Frames are
        read ahead on the loop, at most ``READ_AHEAD`` waiting here."""
        if not self._reading:
            self._reading = True
            try:
                asyncio.run_coroutine_threadsafe(self._read_ahead(), self._bridge.loop)
            except RuntimeError:
                return None
        return self._inbox.get()

    async def _read_ahead(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            frame = await self._tunnel.read()
            if self._inbox.full():  # the engineer is slower: wait off the loop
                await loop.run_in_executor(None, self._inbox.put, frame)
            else:
                self._inbox.put_nowait(frame)
            if frame is None:
                return

    def close(self) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed
            self._bridge.soon(self._tunnel.close)
