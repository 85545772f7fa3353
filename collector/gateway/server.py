"""The SSH gateway's listener: accepts engineer connections, one thread each.

``SshGateway.start`` binds and serves in background threads; ``end_session`` ends
every live connection of a session (terminate, window over) with the reason shown
to the engineer; ``stop`` closes the listener and all connections.

paramiko logs a failed handshake (a port scan, a load balancer's health check, a
bare TCP connect) as some twenty lines of traceback. The gateway's transports log
to their own channel (``PARAMIKO_LOG``), kept quiet (CRITICAL) by default; the
gateway writes one line per failed handshake or broken connection instead.
"""

from __future__ import annotations

import logging
import socket
import threading

import paramiko

from collector.gateway.access import GatewayAccess
from collector.gateway.connection import EngineerConnection
from collector.gateway.hostkey import host_key_line
from collector.gateway.interface import GatewayInterface

log = logging.getLogger(__name__)

WINDOW_SIZE = 8 * 1024 * 1024
MAX_PACKET_SIZE = 256 * 1024  # lets clients send bigger packets: fewer frames
HANDSHAKE_TIMEOUT_SECONDS = 30.0
# AES-GCM needs no separate MAC pass (paramiko's HMAC is per-packet Python work), so
# it is offered first; the client's order decides between the ones both sides have,
# hence CTR is left out while GCM is there (every OpenSSH since 6.2 has GCM).
CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com")
PARAMIKO_LOG = "collector.gateway.paramiko"  # lower its level to debug paramiko itself
logging.getLogger(PARAMIKO_LOG).setLevel(logging.CRITICAL)


class SshGateway:
    """Serves the gateway on ``host:port`` (port 0: any free port, see ``address``)."""

    def __init__(
        self, host: str, port: int, host_key: paramiko.PKey, access: GatewayAccess
    ) -> None:
        self._host_key = host_key
        self.host_key_line = host_key_line(host_key)
        self._access = access
        self._sock = socket.create_server((host, port), backlog=128, reuse_port=False)
        self.address: tuple[str, int] = self._sock.getsockname()[:2]
        self._lock = threading.Lock()
        self._live: dict[str, set[EngineerConnection]] = {}
        self._stopping = threading.Event()

    def start(self) -> None:
        threading.Thread(target=self._accept_loop, name="ssh-gateway", daemon=True).start()
        log.info("SSH gateway listening on %s:%d", *self.address)

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                conn, peer = self._sock.accept()
            except OSError:
                return
            threading.Thread(
                target=self._serve, args=(conn, peer), name="ssh-connection", daemon=True
            ).start()

    def _serve(self, conn: socket.socket, peer: tuple[str, int]) -> None:
        transport = paramiko.Transport(
            conn, default_window_size=WINDOW_SIZE, default_max_packet_size=MAX_PACKET_SIZE
        )
        transport.set_log_channel(PARAMIKO_LOG)
        transport.banner_timeout = HANDSHAKE_TIMEOUT_SECONDS
        transport.auth_timeout = HANDSHAKE_TIMEOUT_SECONDS
        transport.add_server_key(self._host_key)
        transport.get_security_options().ciphers = CIPHERS
        interface = GatewayInterface(transport, self._access, self._opened, self._closed)
        try:
            transport.start_server(server=interface)
        except (paramiko.SSHException, EOFError, OSError) as exc:
            log.info("SSH handshake with %s failed: %s", peer[0], str(exc)[:200] or type(exc))
            transport.close()
            return
        transport.join()  # until the engineer (or we) close it
        failure = transport.get_exception()
        if failure is not None and not isinstance(failure, EOFError):
            log.info("SSH connection from %s broke: %s", peer[0], str(failure)[:200])
        if interface.connection is not None:
            interface.connection.closed()

    def _opened(self, connection: EngineerConnection) -> None:
        with self._lock:
            self._live.setdefault(connection.login.session_id, set()).add(connection)
        self._access.metrics.gateway_connections.inc()

    def _closed(self, connection: EngineerConnection) -> None:
        with self._lock:
            live = self._live.get(connection.login.session_id, set())
            live.discard(connection)
            if not live:
                self._live.pop(connection.login.session_id, None)
        self._access.metrics.gateway_connections.dec()

    def is_live(self, session_id: str) -> bool:
        """Whether an engineer is connected through this gateway as ``session_id``."""
        with self._lock:
            return bool(self._live.get(session_id))

    def end_session(self, session_id: str, reason: str) -> None:
        """End every live connection of the session now."""
        with self._lock:
            connections = list(self._live.get(session_id, ()))
        for connection in connections:
            connection.end(reason)

    def stop(self) -> None:
        self._stopping.set()
        self._sock.close()
        with self._lock:
            connections = [c for live in self._live.values() for c in live]
        for connection in connections:
            connection.end("the collector is shutting down")
