"""Blocking access to the event loop for the gateway's threads.

``LoopBridge.call`` runs a coroutine on the collector's loop and waits for it;
``ThreadTunnel`` is an agent tunnel seen from a thread: ``send`` blocks while the
tunnel's writes are backed up (gRPC flow control reaches the engineer's SSH window),
``receive`` blocks for the next frame and returns None once the tunnel is over.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import Any, TypeVar

from collector.server.tunnels import AgentTunnel, TunnelUnavailable
from proto import agent_pb2

T = TypeVar("T")

CALL_TIMEOUT_SECONDS = 60.0


class LoopBridge:
    """Run coroutines on ``loop`` from other threads."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop

    def call(self, coro: Coroutine[Any, Any, T], timeout: float | None = CALL_TIMEOUT_SECONDS) -> T:
        """Run ``coro`` on the loop and return its result (its exception is raised here)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def soon(self, fn: Any, *args: Any) -> None:
        """Schedule a plain callable on the loop without waiting."""
        self.loop.call_soon_threadsafe(fn, *args)


class ThreadTunnel:
    """An AgentTunnel used from gateway threads."""

    def __init__(self, tunnel: AgentTunnel, bridge: LoopBridge) -> None:
        self._tunnel = tunnel
        self._bridge = bridge

    def send(self, frame: agent_pb2.TunnelFrame) -> None:
        """Write one frame; raises TunnelUnavailable once the tunnel is over."""
        try:
            self._bridge.call(self._tunnel.write(frame), timeout=None)
        except RuntimeError as exc:  # the loop is gone: the collector is stopping
            raise TunnelUnavailable("the collector is stopping") from exc

    def receive(self) -> agent_pb2.TunnelFrame | None:
        try:
            return self._bridge.call(self._tunnel.read(), timeout=None)
        except RuntimeError:
            return None

    def close(self) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed
            self._bridge.soon(self._tunnel.close)
