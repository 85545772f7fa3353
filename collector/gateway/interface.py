"""paramiko's ServerInterface for one transport: public-key auth and channel requests.

Only public-key authentication as a session id: the key must be registered to the
engineer who requested that session, which must be approved and inside its window.

A refused login is told why through SSH itself: a userauth banner (which stock
``ssh`` prints on stderr before "Permission denied") names the reason — pending,
denied, window ended, unknown key, ... — and another engineer's session reads
exactly like a session that does not exist. The reason is given only once the
client proved it holds the key: paramiko asks ``check_auth_publickey`` before it
checks the signature, so a refusal is first answered "go on" (a query gets PK_OK,
a signed request gets its signature checked) and turned into the failure, with the
banner, in ``GatewayAuthHandler._send_auth_result`` — after a good signature only.
Whoever offers someone's public key without the private key learns nothing.

Only "session" channels (shell, exec, subsystem) are allowed: no port, agent or X11
forwarding — the gateway reaches nothing but the one host of the session.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import paramiko
from paramiko.auth_handler import AuthHandler
from paramiko.common import (
    AUTH_FAILED,
    AUTH_SUCCESSFUL,
    OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED,
    OPEN_SUCCEEDED,
    cMSG_USERAUTH_BANNER,
)
from paramiko.message import Message

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
MAX_REASON_CHARS = 500


class GatewayAuthHandler(AuthHandler):
    """paramiko's server-side auth handler, letting the interface turn a provisional
    public-key success into a failure with its reason once the signature is good.

    It overrides paramiko's private ``_send_auth_result`` (paramiko 3.4 to 5.x; the
    gateway's end-to-end tests fail if a release changes it)."""

    def __init__(self, transport: paramiko.Transport, interface: GatewayInterface) -> None:
        super().__init__(transport)
        self._interface = interface

    def _send_auth_result(self, username: str, method: str, result: int) -> None:
        banner = ""
        if method == "publickey":
            result, banner = self._interface.settle(result)
        if banner:
            message = Message()
            message.add_byte(cMSG_USERAUTH_BANNER)
            message.add_string(banner)
            message.add_string("en-US")
            self.transport._send_message(message)  # type: ignore[attr-defined]
        super()._send_auth_result(username, method, result)  # type: ignore[misc]


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
        self._refusal: LoginRefused | None = None  # told once the signature is checked
        self.connection: EngineerConnection | None = None
        self._ptys: dict[int, Pty] = {}
        transport.auth_handler = GatewayAuthHandler(transport, self)

    # -- authentication ----------------------------------------------------------------

    def get_allowed_auths(self, username: str) -> str:
        return "publickey"

    def get_banner(self) -> tuple[str, str]:
        return BANNER, "en-US"

    def check_auth_publickey(self, username: str, key: paramiko.PKey) -> int:
        """Called by paramiko before it checks the signature (see the module doc):
        a refusal answers AUTH_SUCCESSFUL for now and is settled in ``settle``."""
        self._login = None
        self._refusal = None
        try:
            self._login = self._access.authorize(username, fingerprint(key.asbytes()))
        except LoginRefused as exc:
            self._refusal = exc
        except Exception:
            log.exception("gateway authorisation failed")
            return AUTH_FAILED
        return AUTH_SUCCESSFUL

    def settle(self, result: int) -> tuple[int, str]:
        """The final result of a public-key request whose signature paramiko checked
        (``result`` is AUTH_FAILED for a bad one), and the banner to send first."""
        refusal, self._refusal = self._refusal, None
        if result != AUTH_SUCCESSFUL:
            self._login = None
            return result, ""
        if refusal is None:
            return result, ""
        self._login = None
        self._access.metrics.gateway_logins.labels("refused").inc()
        log.info(
            "gateway login as %r by %s refused (%s): %s",
            refusal.session_id[:40],
            refusal.user or "an unregistered key",
            refusal.reason,
            refusal,
        )
        try:
            self._access.refused(refusal)
        except Exception:
            log.exception("could not audit a refused login")
        text = refusal.engineer_text[:MAX_REASON_CHARS]
        return AUTH_FAILED, f"aftercare: login refused: {text}\r\n"

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
