"""One Tunnel RPC as the agent sees it: frames out, frames in, half-close, cancel.

``TunnelIO`` is what the tunnel relay needs, so tests can drive the relay with
frames of their own instead of a collector; ``GrpcTunnelIO`` is the real thing, an
``AgentStream.Tunnel`` call on the agent's mutual-TLS channel. gRPC errors are
mapped here: a broken RPC raises ConnectionError from ``read`` and ``write`` -
including a call cancelled under us (the channel closed when the control stream
reconnects), which grpc.aio reports as asyncio.CancelledError.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any, Protocol

import grpc

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
    """``TunnelIO`` over a grpc.aio stream-stream call of ``AgentStream.Tunnel``."""

    def __init__(self, call: Any) -> None:
        self._call = call

    async def write(self, frame: agent_pb2.TunnelFrame) -> None:
        try:
            with _rpc_errors():
                await self._call.write(frame)
        except ConnectionError:
            raise
        except Exception as exc:  # InvalidStateError etc.: the RPC already finished
            raise ConnectionError(f"the tunnel is closed: {exc!r}") from exc

    async def read(self) -> agent_pb2.TunnelFrame | None:
        with _rpc_errors():
            frame = await self._call.read()
        if isinstance(frame, agent_pb2.TunnelFrame):
            return frame
        code = await self._call.code()  # grpc.aio.EOF: the collector finished the RPC
        if code != grpc.StatusCode.OK:
            raise ConnectionError(f"{code.name}: {await self._call.details()}")
        return None

    async def done_writing(self) -> None:
        with contextlib.suppress(Exception):
            await self._call.done_writing()

    def cancel(self) -> None:
        self._call.cancel()


@contextlib.contextmanager
def _rpc_errors() -> Iterator[None]:
    """A broken or cancelled call raises ConnectionError (our own cancellation passes)."""
    try:
        yield
    except grpc.aio.AioRpcError as exc:
        raise ConnectionError(f"{exc.code().name}: {exc.details()}") from exc
    except asyncio.CancelledError:
        if _we_are_cancelled():
            raise
        raise ConnectionError("the tunnel RPC was cancelled") from None


def _we_are_cancelled() -> bool:
    """Whether a CancelledError is our own task being cancelled (not the call under us)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
