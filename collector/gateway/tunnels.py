"""Session tunnels: pairs the gateway's request for a tunnel with the agent's Tunnel RPC.

The gateway asks ``TunnelBroker.open``: the broker sends ``SessionOpen`` (with a
fresh ``tunnel_id``) on the agent's control stream and waits for that agent to call
``AgentStream.Tunnel`` with a ``TunnelAttach`` naming the id. Only the agent the
tunnel was asked of can attach it (its identity comes from its certificate), only
once, and only before the wait times out. The attached RPC is then an
``AgentTunnel``: frames in both directions until either side closes it.
``close_agent`` closes every tunnel of an agent (revoked), attached or awaited.
When the agent is not connected here, ``remote`` (if set: the replica relay,
``collector.server.replica_relay``) may reach it on another replica; the tunnel it
returns behaves the same (``Tunnel``).

Everything here runs on the event loop; the gateway's threads use
``collector.gateway.bridge`` to reach it.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import grpc

from collector.errors import CollectorError, NotFound, PermissionDenied
from proto import agent_pb2

log = logging.getLogger(__name__)

ATTACH_TIMEOUT_SECONDS = 20.0


class TunnelUnavailable(CollectorError):
    """The agent could not be reached, or did not open the tunnel in time."""


class Tunnel(Protocol):
    """Frames to and from an agent's tunnel, wherever the agent is connected."""

    session_id: str

    async def read(self) -> agent_pb2.TunnelFrame | None:
        """The next frame from the agent; None once the tunnel is over."""

    async def write(self, frame: agent_pb2.TunnelFrame) -> None:
        """Send a frame to the agent; raises TunnelUnavailable once the tunnel is over."""

    def close(self) -> None:
        """End the tunnel (idempotent)."""


# Opens a tunnel to an agent connected to another replica; None if none holds it.
RemoteOpener = Callable[[str, agent_pb2.SessionOpen], Awaitable[Tunnel | None]]


class StreamTunnel:
    """A tunnel's frames over one gRPC stream: ``read`` returns None once the other
    side closed it (or the stream broke); writes are serialised; a write after the
    end raises TunnelUnavailable. Subclasses say how a frame is received and sent."""

    _name = "the tunnel to the agent"  # for errors

    def __init__(self, session_id: str) -> None:
        self.session_id = session_id
        self.closed = asyncio.Event()
        self._write_lock = asyncio.Lock()

    async def _receive(self) -> object:
        raise NotImplementedError

    async def _send(self, frame: agent_pb2.TunnelFrame) -> None:
        raise NotImplementedError

    async def read(self) -> agent_pb2.TunnelFrame | None:
        if self.closed.is_set():
            return None
        try:
            frame = await self._receive()
        except (grpc.aio.AioRpcError, grpc.aio.UsageError, RuntimeError):  # the RPC is over
            frame = None
        if not isinstance(frame, agent_pb2.TunnelFrame):
            self.close()
            return None
        return frame

    async def write(self, frame: agent_pb2.TunnelFrame) -> None:
        if self.closed.is_set():
            raise TunnelUnavailable(f"{self._name} is closed")
        try:
            async with self._write_lock:
                await self._send(frame)
        except (grpc.aio.AioRpcError, grpc.aio.UsageError, RuntimeError) as exc:
            self.close()
            raise TunnelUnavailable(f"{self._name} broke: {exc}") from exc

    def close(self) -> None:
        """End the tunnel. Idempotent."""
        self.closed.set()


class AgentTunnel(StreamTunnel):
    """One attached Tunnel RPC of an agent connected here; ``close`` ends the RPC (the
    servicer returns once ``closed`` is set)."""

    def __init__(self, context: grpc.aio.ServicerContext[Any, Any], session_id: str) -> None:
        super().__init__(session_id)
        self._context = context

    async def _receive(self) -> object:
        return await self._context.read()

    async def _send(self, frame: agent_pb2.TunnelFrame) -> None:
        await self._context.write(frame)


@dataclass
class _Waiting:
    agent_id: str
    session_id: str
    attached: asyncio.Future[AgentTunnel] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class AgentSender(Protocol):
    """Where SessionOpen goes: the agents' control streams (``collector.server.streams``)."""

    def send(self, agent_id: str, message: agent_pb2.CollectorMessage) -> bool:
        """Queue ``message`` on the agent's newest stream; False if it has none."""


class TunnelBroker:
    """Open tunnels to agents through their control streams."""

    def __init__(
        self, streams: AgentSender, attach_timeout: float = ATTACH_TIMEOUT_SECONDS
    ) -> None:
        self._streams = streams
        self._attach_timeout = attach_timeout
        self._waiting: dict[str, _Waiting] = {}
        self._attached: dict[str, set[AgentTunnel]] = {}
        self.remote: RemoteOpener | None = None  # reaches agents on other replicas

    async def open(
        self,
        agent_id: str,
        session_id: str,
        engineer: str,
        window_end_ms: int,
        approved_by: str,
        signed_approval: bytes = b"",
        *,
        local_only: bool = False,
    ) -> Tunnel:
        """Ask the agent for a tunnel (SessionOpen carries the customer's signed
        approval, if any) and wait for it; if the agent is not connected here, ask
        ``remote`` unless ``local_only`` (the relay's own requests). Raises
        TunnelUnavailable."""
        tunnel_id = "tun-" + secrets.token_hex(8)
        waiting = _Waiting(agent_id, session_id)
        opening = agent_pb2.SessionOpen(
            session_id=session_id,
            tunnel_id=tunnel_id,
            engineer=engineer,
            window_end_unix_ms=window_end_ms,
            approved_by=approved_by,
            signed_approval=signed_approval,
        )
        self._waiting[tunnel_id] = waiting
        try:
            if not self._streams.send(agent_id, agent_pb2.CollectorMessage(session_open=opening)):
                elsewhere = None
                if self.remote is not None and not local_only:
                    elsewhere = await self.remote(agent_id, opening)
                if elsewhere is not None:
                    return elsewhere
                raise TunnelUnavailable(
                    "the host's agent is not connected to the collector; the session can "
                    "be used once it reconnects (`aftercare agents` shows its state)"
                )
            return await asyncio.wait_for(waiting.attached, self._attach_timeout)
        except TimeoutError as exc:
            raise TunnelUnavailable(
                f"the host's agent did not open the tunnel within {self._attach_timeout:g}s"
            ) from exc
        finally:
            del self._waiting[tunnel_id]

    def attach(
        self,
        agent_id: str,
        attach: agent_pb2.TunnelAttach,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AgentTunnel:
        """The agent's Tunnel RPC arrived. Raises NotFound (unknown or already used
        tunnel id) or PermissionDenied (asked of another agent)."""
        waiting = self._waiting.get(attach.tunnel_id)
        if waiting is None or waiting.attached.done():
            raise NotFound(f"no tunnel {attach.tunnel_id!r} is waiting for this agent")
        if waiting.agent_id != agent_id or waiting.session_id != attach.session_id:
            log.warning("agent %s tried to attach another agent's tunnel", agent_id)
            raise PermissionDenied("this tunnel was not asked of this agent")
        tunnel = AgentTunnel(context, waiting.session_id)
        waiting.attached.set_result(tunnel)
        self._attached.setdefault(agent_id, set()).add(tunnel)
        return tunnel

    def detach(self, agent_id: str, tunnel: AgentTunnel) -> None:
        """The tunnel's RPC is over: forget it."""
        tunnels = self._attached.get(agent_id)
        if tunnels is not None:
            tunnels.discard(tunnel)
            if not tunnels:
                del self._attached[agent_id]

    def close_agent(self, agent_id: str, reason: str) -> int:
        """Close every tunnel of the agent and fail those it was asked for; how many."""
        closed = 0
        for waiting in self._waiting.values():
            if waiting.agent_id == agent_id and not waiting.attached.done():
                waiting.attached.set_exception(TunnelUnavailable(reason))
                closed += 1
        for tunnel in self._attached.pop(agent_id, set()):
            tunnel.close()
            closed += 1
        return closed
