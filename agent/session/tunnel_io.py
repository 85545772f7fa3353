"""One Tunnel RPC as the agent sees it: frames out, frames in, half-close, cancel.

``TunnelIO`` is what the tunnel relay needs, so tests can drive the relay with
frames of their own instead of a collector; ``GrpcTunnelIO`` is the real thing, an
``AgentStream.Tunnel`` call on the agent's mutual-TLS channel. RPC errors are
mapped here: a broken, ended or cancelled call (the channel closes when the control
stream reconnects) raises ConnectionError from ``read`` and ``write``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Protocol

from agent.rpc import RpcError, StreamCall
from proto import agent_pb2

__all__ = ["GrpcTunnelIO", "TunnelIO"]


class TunnelIO(Protocol):
    """The agent's end of one tunnel."""

    async def write(self, frame: agent_pb2.TunnelFrame) -> None:
        """Send ``frame``; raises ConnectionError once the RPC is broken or finished."""
        ...

    async def read(self) -> agent_pb2.TunnelFrame | None:
        """The next frame; None when the collector closed the tunnel cleanly.

        Raises ConnectionError when the RPC broke.
        """
        ...

    async def done_writing(self) -> None:
        """Close the agent's side (no more frames); never raises."""
        ...

    def cancel(self) -> None:
        """Abort the RPC at once (idempotent)."""
        ...


class GrpcTunnelIO:
    """``TunnelIO`` over an ``AgentStream.Tunnel`` call (``agent.rpc``)."""

    def __init__(self, call: StreamCall[agent_pb2.TunnelFrame]) -> None:
        self._call = call

    async def write(self, frame: agent_pb2.TunnelFrame) -> None:
        with _rpc_errors():
            await self._call.write(frame.SerializeToString())

    async def read(self) -> agent_pb2.TunnelFrame | None:
        with _rpc_errors():
            return await self._call.read()

    async def done_writing(self) -> None:
        with contextlib.suppress(RpcError):
            await self._call.done_writing()

    def cancel(self) -> None:
        self._call.cancel()


@contextlib.contextmanager
def _rpc_errors() -> Iterator[None]:
    """A broken, finished or cancelled call raises ConnectionError."""
    try:
        yield
    except RpcError as exc:
        raise ConnectionError(str(exc)) from exc
