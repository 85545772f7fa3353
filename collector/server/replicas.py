"""Routing between collector replicas on one PostgreSQL store, wired together.

``ReplicaRouting`` owns this replica's part (docs/replicas.md):
- presence: heartbeat and the agents whose streams this replica holds
  (``collector.presence``), hooked into the agent stream;
- the agent outbox: messages for agents on other replicas (``agent_outbox``),
  woken by LISTEN/NOTIFY (``collector.store.pg_notify``) and polled;
- shared files: finished run outputs and recordings copied into the store
  (``collector.shared_files``);
- "session over" announcements: a session terminated or expired on one replica ends
  the engineer's connections on every replica's gateway (NOTIFY with the session id);
- the replica relay: a mutual-TLS gRPC port (``--relay-listen``) serving session
  tunnels to this replica's agents, and the client dialling other replicas'
  (``collector.server.replica_relay``), each with a certificate the CA issues to this
  replica at start.

With SQLite there is one process and none of this is built.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import socket
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

import grpc

from collector.config import split_host_port
from collector.errors import ConfigError, StoreError
from collector.fleet import Fleet
from collector.gateway.recording import WatchHub, WatchItem
from collector.gateway.tunnels import TunnelBroker
from collector.pki import CertificateAuthority
from collector.presence import Presence
from collector.runs.service import RunService
from collector.server.agent_outbox import AgentRouter
from collector.server.replica_relay import LocalWatch, RelayClient, ReplicaRelayServicer
from collector.server.status import ErrorStatusInterceptor
from collector.server.streams import Streams
from collector.shared_files import SharedFiles
from collector.store.pg_notify import SESSION_OVER_CHANNEL, PgWakeups
from collector.store.writer import StoreThread
from proto import api_pb2_grpc

__all__ = ["ReplicaRouting"]

log = logging.getLogger(__name__)

RELAY_CERT_VALIDITY = dt.timedelta(days=365)


class ReplicaRouting:
    """This replica's presence, outbox, shared files and relay."""

    def __init__(
        self,
        db: StoreThread,
        fleet: Fleet,
        streams: Streams,
        ca: CertificateAuthority,
        replica: str,
        store_url: str,
        data_dir: Path,
        interval_ms: int,
        clock_ms: Callable[[], int],
    ) -> None:
        self._streams = streams
        self._db = db
        self._data_dir = data_dir
        # whether this replica's gateway holds a connection of a session (SshGateway.is_live)
        self.gateway_is_live: Callable[[str], bool] = lambda _: False
        self.presence = Presence(
            db, fleet, replica, "", interval_ms, clock_ms, held=streams.agent_ids
        )
        self.wakeups = PgWakeups(store_url)
        self.router = AgentRouter(db, streams, self.presence, self.wakeups, clock_ms, interval_ms)
        self.files = SharedFiles(db, data_dir, clock_ms)
        self._replica = replica
        self.session_over = PgWakeups(store_url, SESSION_OVER_CHANNEL, self._on_session_over)
        # ends a session's connections on this replica (LiveSessionSignals.over_here)
        self.end_session_here: Callable[[str, str], None] | None = None
        cert_pem, key_pem = ca.issue_replica_certificate(replica, RELAY_CERT_VALIDITY)
        self._ca = ca
        self._cert = (cert_pem, key_pem)
        self.relay = RelayClient(self.presence, ca.cert_pem, cert_pem, key_pem)
        self._server: grpc.aio.Server | None = None
        self._pending: set[asyncio.Task[None]] = set()

    async def serve_relay(
        self,
        listen: str,
        advertise: str,
        broker: TunnelBroker,
        hub: WatchHub,
        runs: RunService | None = None,
    ) -> str:
        """Serve the relay on ``listen`` (mutual TLS, replica certificates only) and let
        ``broker`` reach other replicas' agents; the address other replicas dial.
        ``hub``: this replica's live session events, for watchers on other replicas;
        ``runs``: its runs' live output, for followers on other replicas."""
        broker.remote = self.relay.open
        if not listen:
            return ""
        cert_pem, key_pem = self._cert
        credentials = grpc.ssl_server_credentials(
            [(key_pem, cert_pem + self._ca.cert_pem)],
            root_certificates=self._ca.cert_pem,
            require_client_auth=True,
        )
        server = grpc.aio.server(interceptors=[ErrorStatusInterceptor()])
        watch = LocalWatch(hub, self._db, self._data_dir, lambda sid: self.gateway_is_live(sid))
        api_pb2_grpc.add_ReplicaRelayServicer_to_server(
            ReplicaRelayServicer(broker, watch, runs), server
        )
        try:
            port = server.add_secure_port(listen, credentials)
        except RuntimeError as exc:
            raise ConfigError(f"--relay-listen {listen}: cannot listen ({exc})") from exc
        if port == 0:
            raise ConfigError(f"--relay-listen {listen}: cannot listen; is the port in use?")
        await server.start()
        self._server = server
        host, _ = split_host_port(listen, "--relay-listen")
        public = socket.getfqdn() if host in ("0.0.0.0", "::", "") else host
        self.presence.relay_address = advertise or f"{public}:{port}"
        return f"{host}:{port}"

    def tasks(self) -> list[Coroutine[Any, Any, None]]:
        """The loops to run while serving: heartbeat, LISTEN, outbox drain."""
        return [
            self.presence.run_forever(),
            self.wakeups.run_listener(),
            self.router.run_forever(),
            self.session_over.run_listener(),
        ]

    async def remote_watch(self, session_id: str) -> AsyncIterator[WatchItem] | None:
        """A live session's events from the replica holding its engineer's connection;
        None when this replica holds it, or no replica does."""
        if self.gateway_is_live(session_id):
            return None
        return await self.relay.watch(session_id)

    # -- sessions over ---------------------------------------------------------------------

    async def announce_session_over(self, session_id: str, reason: str) -> None:
        """Tell the other replicas' gateways to end the session's connections."""
        payload = {"replica": self._replica, "session_id": session_id, "reason": reason[:500]}
        await self.session_over.notify(json.dumps(payload))

    def _on_session_over(self, payload: str) -> None:
        try:
            note = json.loads(payload)
            replica, session_id, reason = note["replica"], note["session_id"], note["reason"]
        except (ValueError, KeyError, TypeError):
            log.warning("ignored a malformed session-over notification %r", payload[:200])
            return
        if replica != self._replica and self.end_session_here is not None:
            self.end_session_here(str(session_id), str(reason))

    # -- agent stream hooks (agent_stream.PresenceHooks) ---------------------------------

    @property
    def replica(self) -> str:
        return self.presence.replica

    async def agent_connected(self, agent_id: str) -> None:
        """Hand the agent what waited for it in the outbox (its hello claimed it here:
        ``Store.record_hellos``)."""
        await self.router.drain_connected(agent_id)

    def agent_disconnected(self, agent_id: str) -> None:
        """Release the agent (in the background: the stream is ending)."""
        task = asyncio.get_running_loop().create_task(self._release(agent_id))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _release(self, agent_id: str) -> None:
        if self._streams.connected(agent_id):  # it reconnected here meanwhile
            return
        try:
            await self.presence.agent_disconnected(agent_id)
        except StoreError as exc:  # its row lapses with this replica's heartbeat
            log.warning("could not record agent %s as gone: %s", agent_id, exc)

    async def stop(self) -> None:
        """Stop the relay and drop this replica's rows (its agents reconnect elsewhere)."""
        if self._server is not None:
            await self._server.stop(1.0)
        for task in list(self._pending):
            with contextlib.suppress(Exception):
                await task
        with contextlib.suppress(StoreError):
            await self.presence.stop()
        await self.wakeups.close()
        await self.session_over.close()
