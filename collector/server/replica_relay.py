"""The replica-to-replica relay: a session tunnel from the engineer's replica to the
replica holding the agent's control stream (docs/replicas.md).

Served (``ReplicaRelayServicer``) on ``serve --relay-listen`` with mutual TLS against
the collector CA; a caller must present a replica certificate (``pki.REPLICA_UNIT``),
so an agent's certificate -- also issued by the CA -- is refused. The caller's first
frame names the agent and the session (the ``SessionOpen`` fields); the serving
replica opens the tunnel with its own broker (local agents only: a relay never
relays again), answers with one empty frame once the agent attached, then copies
frames both ways until either side ends.

``RelayClient.open`` is the other end: the engineer's replica finds the agent's
replica (``Presence.locate``) and returns a ``RelayedTunnel`` that the gateway uses
like a local one.

``Watch`` serves a live session's recording events to a watcher on another replica,
from the replica whose gateway holds the engineer's connection (``LocalWatch``);
``RelayClient.watch`` asks each live replica until one has it.

``FollowRun`` serves a run's output live, from the replica holding the run's agent
(``RunService.output_pieces``) to a follower on another replica
(``RelayClient.follow_run``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from collector import limits
from collector.errors import InvalidRequest, NotFound, PermissionDenied, Unauthenticated
from collector.gateway.recording import WatchHub, WatchItem, replay_then_follow
from collector.gateway.tunnels import StreamTunnel, Tunnel, TunnelBroker, TunnelUnavailable
from collector.pki import REPLICA_NAME, is_replica_certificate
from collector.presence import Presence
from collector.runs.model import OutputPiece
from collector.runs.service import RunService
from collector.sessions.model import FINAL_SESSION_STATES
from collector.store.base import RecordingRecord
from collector.store.writer import StoreThread
from proto import agent_pb2, api_pb2, api_pb2_grpc

__all__ = ["RelayClient", "RelayedTunnel", "ReplicaRelayServicer"]

log = logging.getLogger(__name__)

OPEN_TIMEOUT_SECONDS = 30.0  # the agent's replica asks the agent and waits for it


def require_replica(context: grpc.aio.ServicerContext[Any, Any]) -> str:
    """The calling replica's certificate subject CN; PermissionDenied for any other
    certificate (an agent's), Unauthenticated without one."""
    auth = context.auth_context()
    pems: list[bytes] = list(auth.get("x509_pem_cert") or [])
    names = [n.decode(errors="replace") for n in auth.get("x509_common_name") or []]
    if not pems:
        raise Unauthenticated("the replica relay needs a replica's client certificate")
    if not is_replica_certificate(pems[0]):
        log.warning("replica relay refused a non-replica certificate %s", names)
        raise PermissionDenied("only collector replicas may use the replica relay")
    return names[0] if names else "?"


@dataclass(frozen=True)
class LocalWatch:
    """What serving ``Watch`` needs: the watch hub, the store, the data directory, and
    whether this replica's gateway holds a connection of a session."""

    hub: WatchHub
    db: StoreThread
    data_dir: Path
    is_live: Callable[[str], bool]


class ReplicaRelayServicer(api_pb2_grpc.ReplicaRelayServicer):
    """Opens tunnels to this replica's agents, and serves its live sessions' events,
    for other replicas."""

    def __init__(
        self,
        broker: TunnelBroker,
        watch: LocalWatch | None = None,
        runs: RunService | None = None,
    ) -> None:
        self._broker = broker
        self._watch = watch
        self._runs = runs

    async def FollowRun(
        self,
        request: api_pb2.RelayFollowRunRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[api_pb2.RelayRunOutput]:
        require_replica(context)
        limits.text("run_id", request.run_id, limits.NAME)
        if request.offset < 0:
            raise InvalidRequest("offset must not be negative")
        if self._runs is None:
            raise NotFound("this replica serves no playbook runs")
        async for piece in self._runs.output_pieces(request.run_id, request.offset):
            yield api_pb2.RelayRunOutput(offset=piece.offset, step=piece.step, data=piece.data)

    async def Watch(
        self,
        request: api_pb2.RelayWatchRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[api_pb2.WatchEvent]:
        require_replica(context)
        session_id = request.session_id
        watch = self._watch
        if watch is None or not watch.is_live(session_id):
            raise NotFound(f"no engineer is connected to session {session_id!r} here")
        db = watch.db

        async def load() -> tuple[list[RecordingRecord], bool]:
            session = await db.call(db.store.get_session, session_id)
            recordings = await db.call(db.store.list_recordings, session_id)
            return recordings, session is None or session.state in FINAL_SESSION_STATES

        async for item in replay_then_follow(watch.hub, session_id, load, watch.data_dir):
            yield api_pb2.WatchEvent(part=item.part, time=item.time, type=item.type, data=item.data)

    async def Tunnel(  # type: ignore[override]  # reader/writer style: returns no iterator
        self,
        request_iterator: AsyncIterator[api_pb2.RelayFrame],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> None:
        caller = require_replica(context)
        try:
            first = await asyncio.wait_for(context.read(), OPEN_TIMEOUT_SECONDS)
        except TimeoutError as exc:
            raise InvalidRequest("no RelayOpen frame in time") from exc
        if not isinstance(first, api_pb2.RelayFrame) or first.WhichOneof("kind") != "open":
            raise InvalidRequest("a relayed tunnel must start with a RelayOpen frame")
        opening = first.open
        log.info(
            "replica %s asks a tunnel to agent %s for session %s",
            caller,
            opening.agent_id,
            opening.session_id,
        )
        tunnel = await self._broker.open(
            opening.agent_id,
            opening.session_id,
            opening.engineer,
            opening.window_end_unix_ms,
            opening.approved_by,
            opening.signed_approval,
            local_only=True,
        )
        try:
            await context.write(agent_pb2.TunnelFrame())  # attached
            inbound = asyncio.create_task(_to_agent(context, tunnel))
            try:
                while (frame := await tunnel.read()) is not None:
                    await context.write(frame)
            finally:
                inbound.cancel()
        finally:
            tunnel.close()


async def _to_agent(context: grpc.aio.ServicerContext[Any, Any], tunnel: Tunnel) -> None:
    """Copy the calling replica's frames into the agent's tunnel; close it at the end."""
    try:
        while True:
            item = await context.read()
            if not isinstance(item, api_pb2.RelayFrame) or item.WhichOneof("kind") != "frame":
                break
            await tunnel.write(item.frame)
    except (grpc.aio.AioRpcError, grpc.aio.UsageError, RuntimeError, TunnelUnavailable):
        pass
    tunnel.close()


class RelayedTunnel(StreamTunnel):
    """A tunnel to an agent on another replica, over one ReplicaRelay.Tunnel call."""

    _name = "the relayed tunnel to the agent"

    def __init__(self, channel: grpc.aio.Channel, call: Any, session_id: str) -> None:
        super().__init__(session_id)
        self._channel = channel
        self._call = call

    async def _receive(self) -> object:
        try:
            return await self._call.read()
        except asyncio.CancelledError:  # the call was cancelled: the tunnel is over
            return None

    async def _send(self, frame: agent_pb2.TunnelFrame) -> None:
        await self._call.write(api_pb2.RelayFrame(frame=frame))

    def close(self) -> None:
        if self.closed.is_set():
            return
        self.closed.set()
        self._call.cancel()
        with contextlib.suppress(RuntimeError):  # no loop: the collector is stopping
            asyncio.get_running_loop().create_task(self._channel.close(None))


class RelayClient:
    """Dials other replicas' relays with this replica's certificate."""

    def __init__(self, presence: Presence, ca_pem: bytes, cert_pem: bytes, key_pem: bytes) -> None:
        self._presence = presence
        self._credentials = grpc.ssl_channel_credentials(
            root_certificates=ca_pem, private_key=key_pem, certificate_chain=cert_pem
        )

    async def open(self, agent_id: str, opening: agent_pb2.SessionOpen) -> Tunnel | None:
        """A tunnel to ``agent_id`` through the replica holding it; None if no other
        live replica does. Raises TunnelUnavailable if that replica cannot open it."""
        location = await self._presence.locate(agent_id)
        if location is None or location.replica == self._presence.replica:
            return None
        if not location.relay_address:
            raise TunnelUnavailable(
                f"the host's agent is connected to replica {location.replica}, which serves "
                "no replica relay (start it with --relay-listen)"
            )
        channel = self._channel(location.relay_address)
        call = api_pb2_grpc.ReplicaRelayStub(channel).Tunnel()  # type: ignore[call-arg]  # writer style
        tunnel = RelayedTunnel(channel, call, opening.session_id)
        try:
            await call.write(api_pb2.RelayFrame(open=_relay_open(agent_id, opening)))
            attached = await asyncio.wait_for(call.read(), OPEN_TIMEOUT_SECONDS)
        except TimeoutError as exc:
            tunnel.close()
            raise TunnelUnavailable(
                f"replica {location.replica} did not open the tunnel in time"
            ) from exc
        except grpc.aio.AioRpcError as exc:
            tunnel.close()
            raise TunnelUnavailable(
                f"replica {location.replica} could not open the tunnel: {exc.details()}"
            ) from exc
        if not isinstance(attached, agent_pb2.TunnelFrame):
            tunnel.close()
            raise TunnelUnavailable(f"replica {location.replica} ended the tunnel at once")
        log.info("session %s relayed to replica %s", opening.session_id, location.replica)
        return tunnel

    async def watch(self, session_id: str) -> AsyncIterator[WatchItem] | None:
        """The live events of ``session_id`` from the other replica whose gateway holds
        its engineer's connection; None if no live replica does."""
        for replica in await self._presence.other_replicas():
            if not replica.relay_address:
                continue
            channel = self._channel(replica.relay_address)
            call = api_pb2_grpc.ReplicaRelayStub(channel).Watch(
                api_pb2.RelayWatchRequest(session_id=session_id)
            )
            try:
                first = await asyncio.wait_for(call.read(), OPEN_TIMEOUT_SECONDS)
            except (grpc.aio.AioRpcError, TimeoutError) as exc:
                if not isinstance(exc, grpc.aio.AioRpcError) or (
                    exc.code() != grpc.StatusCode.NOT_FOUND
                ):
                    log.warning("watch of %s on replica %s failed: %s", session_id, replica, exc)
                call.cancel()
                await channel.close(None)
                continue
            if isinstance(first, api_pb2.WatchEvent):
                log.info("session %s watched through replica %s", session_id, replica.replica)
                return _remote_events(channel, call, first)
            await channel.close(None)
        return None

    async def follow_run(
        self, agent_id: str, run_id: str, offset: int
    ) -> AsyncIterator[OutputPiece] | None:
        """The live output of ``run_id`` from byte ``offset`` on, from the replica
        holding ``agent_id``; None if this replica holds it, or no other live replica
        with a relay does. The pieces end when the run finished there or the call
        broke (the follower then reads the rest from the shared copy)."""
        location = await self._presence.locate(agent_id)
        if location is None or location.replica == self._presence.replica:
            return None
        if not location.relay_address:
            log.info("run %s: replica %s serves no relay; output at the end", run_id, location)
            return None
        channel = self._channel(location.relay_address)
        call = api_pb2_grpc.ReplicaRelayStub(channel).FollowRun(
            api_pb2.RelayFollowRunRequest(run_id=run_id, offset=offset)
        )
        log.info("run %s followed through replica %s", run_id, location.replica)
        return _remote_pieces(channel, call, run_id)

    def _channel(self, address: str) -> grpc.aio.Channel:
        return grpc.aio.secure_channel(
            address,
            self._credentials,
            options=[("grpc.ssl_target_name_override", REPLICA_NAME)],
        )


async def _remote_events(
    channel: grpc.aio.Channel, call: Any, first: api_pb2.WatchEvent
) -> AsyncIterator[WatchItem]:
    """The events of a remote Watch call (``first`` already read); closes the channel."""
    try:
        event: Any = first
        while isinstance(event, api_pb2.WatchEvent):
            yield WatchItem(event.part, event.time, event.type, event.data)
            if event.type == "end":
                return
            event = await call.read()
        yield WatchItem(0, 0.0, "end")  # the other replica went away
    except grpc.aio.AioRpcError:
        yield WatchItem(0, 0.0, "end")
    finally:
        call.cancel()
        await channel.close(None)


async def _remote_pieces(
    channel: grpc.aio.Channel, call: Any, run_id: str
) -> AsyncIterator[OutputPiece]:
    """The output pieces of a remote FollowRun call; closes the channel at the end."""
    try:
        while isinstance(message := await call.read(), api_pb2.RelayRunOutput):
            yield OutputPiece(run_id, message.offset, message.step, message.data)
    except grpc.aio.AioRpcError as exc:
        log.warning("relayed output of run %s broke: %s", run_id, exc.details())
    finally:
        call.cancel()
        await channel.close(None)


def _relay_open(agent_id: str, opening: agent_pb2.SessionOpen) -> api_pb2.RelayOpen:
    return api_pb2.RelayOpen(
        agent_id=agent_id,
        session_id=opening.session_id,
        engineer=opening.engineer,
        window_end_unix_ms=opening.window_end_unix_ms,
        approved_by=opening.approved_by,
        signed_approval=opening.signed_approval,
    )
