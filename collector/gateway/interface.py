"""paramiko's ServerInterface for one transport: public-key auth and channel requests.

Only public-key authentication as a session id: the key must be registered to the
engineer who requested that session, which must be approved and inside its window.
Only "session" channels (shell, exec, subsystem) are allowed: no port, agent or X11
forwarding — the gateway reaches nothing but the one host of the session.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import paramiko
from paramiko.common import (
    AUTH_FAILED,
    AUTH_SUCCESSFUL,
    OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED,
    OPEN_SUCCEEDED,
)

from collector.gateway.access import GatewayAccess, Login
from collector.gateway.connection import EngineerConnection
from collector.gateway.relay import ChannelRelay, ChannelRequest, Pty
from collector.sessions.errors import LoginRefused
from collector.sessions.pubkey import fingerprint

log = logging.getLogger(__name__)

BANNER = (
    "aftercare support gateway: this session is recorded, and the customer may "
    "watch or end it at any time.\r\n"
)
PROHIBITED = OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED


class GatewayInterface(paramiko.ServerInterface):
    """Callbacks paramiko runs on the transport's thread."""

    def __init__(
        self,
        transport: paramiko.Transport,
        access: GatewayAccess,
        on_connection: Callable[[EngineerConnection], None],
        on_closed: Callable[[EngineerConnection], None],
    ) -> None:
        self._transport = transport
        self._access = access
        self._on_connection = on_connection
        self._on_closed = on_closed
        self._login: Login | None = None
        self.connection: EngineerConnection | None = None
        self._ptys: dict[int, Pty] = {}

    # -- authentication ----------------------------------------------------------------

    def get_allowed_auths(self, username: str) -> str:
        return "publickey"

    def get_banner(self) -> tuple[str, str]:
        return BANNER, "en-US"

    def check_auth_publickey(self, username: str, key: paramiko.PKey) -> int:
        try:
            self._login = self._access.authorize(username, fingerprint(key.asbytes()))
        except LoginRefused as exc:
            self._access.metrics.gateway_logins.labels("refused").inc()
            log.info("gateway login as %r refused: %s", username[:40], exc)
            return AUTH_FAILED
        except Exception:
            log.exception("gateway authorisation failed")
            return AUTH_FAILED
        return AUTH_SUCCESSFUL

    # -- channels ----------------------------------------------------------------------

    def check_channel_request(self, kind: str, chanid: int) -> int:
        if kind != "session" or self._connection() is None:
            return PROHIBITED
        return OPEN_SUCCEEDED

    def _connection(self) -> EngineerConnection | None:
        if self.connection is None and self._login is not None:
            self.connection = EngineerConnection(
                self._transport, self._login, self._access, self._on_closed
            )
            self._access.metrics.gateway_logins.labels("accepted").inc()
            self._on_connection(self.connection)
        return self.connection

    def check_channel_pty_request(
        self,
        channel: paramiko.Channel,
        term: bytes,
        width: int,
        height: int,
        pixelwidth: int,
        pixelheight: int,
        modes: bytes,
    ) -> bool:
        name = term.decode("ascii", "replace") if isinstance(term, bytes) else str(term)
        self._ptys[channel.get_id()] = Pty(name[:64], width, height)
        return True

    def check_channel_shell_request(self, channel: paramiko.Channel) -> bool:
        return self._start(channel, "shell", "")

    def check_channel_exec_request(self, channel: paramiko.Channel, command: bytes) -> bool:
        return self._start(channel, "exec", command.decode("utf-8", "replace"))

    def check_channel_subsystem_request(self, channel: paramiko.Channel, name: str) -> bool:
        return self._start(channel, "subsystem", name)

    def _start(self, channel: paramiko.Channel, kind: str, command: str) -> bool:
        connection = self.connection
        if connection is None:
            return False
        request = ChannelRequest(kind, command, self._ptys.get(channel.get_id()))
        relay = ChannelRelay(connection, channel, request)
        threading.Thread(
            target=relay.run, name=f"channel-{connection.login.session_id}", daemon=True
        ).start()
        return True

    def check_channel_window_change_request(
        self,
        channel: paramiko.Channel,
        width: int,
        height: int,
        pixelwidth: int,
        pixelheight: int,
    ) -> bool:
        connection = self.connection
        relay = connection.relay(channel.get_id()) if connection else None
        if relay is None:
            return False
        relay.resize(width, height)
        return True

    def check_channel_env_request(
        self, channel: paramiko.Channel, name: bytes, value: bytes
    ) -> bool:
        return False

    def check_channel_forward_agent_request(self, channel: paramiko.Channel) -> bool:
        return False

    def check_channel_x11_request(self, *args: object) -> bool:
        return False

    def check_port_forward_request(self, address: str, port: int) -> int:
        return False  # paramiko: False refuses

    def check_channel_direct_tcpip_request(
        self, chanid: int, origin: tuple[str, int], destination: tuple[str, int]
    ) -> int:
        return PROHIBITED
