"""One authenticated engineer connection: its tunnel to the agent, channels, window.

The tunnel is opened when the first channel starts and shared by every channel of
the connection. A reader thread hands the host's frames to the channels. A watchdog
thread warns the engineer before the access window ends and ends the connection at
its end — the agent enforces the same end on its own; a channel opened when less
than the warning time is left gets the warning as it opens. Bytes are counted as
they are relayed (``count``), so the disconnection reports every byte even while
channels are still finishing. ``end`` (terminate, window
over, the host ended the login) closes everything with the reason shown to the
engineer; ``closed`` (the transport is gone) reports the disconnection once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import paramiko

from collector.errors import CollectorError, format_ms
from collector.gateway.access import GatewayAccess, Login
from collector.gateway.bridge import ThreadTunnel
from collector.gateway.relay import ChannelRelay
from collector.gateway.tunnels import TunnelUnavailable

log = logging.getLogger(__name__)


class EngineerConnection:
    """State of one SSH connection after authentication. Thread-safe."""

    def __init__(
        self,
        transport: paramiko.Transport,
        login: Login,
        access: GatewayAccess,
        on_closed: Callable[[EngineerConnection], None],
    ) -> None:
        self.transport = transport
        self.login = login
        self.access = access
        self._on_closed = on_closed
        self._lock = threading.Lock()
        self._tunnel: ThreadTunnel | None = None
        self._relays: dict[int, ChannelRelay] = {}
        self._ended = threading.Event()
        self._end_reason = ""
        self._logged_in = False
        self._warned: set[int] = set()  # channels shown the window warning
        self.bytes_to_host = 0
        self.bytes_to_engineer = 0
        self.channels_opened = 0

    # -- the tunnel --------------------------------------------------------------------

    def tunnel(self) -> ThreadTunnel:
        """The connection's tunnel, opened on first use. Raises TunnelUnavailable."""
        with self._lock:
            if self._ended.is_set():
                raise TunnelUnavailable(self._end_reason)
            if self._tunnel is None:
                self._tunnel = self.access.open_tunnel(self.login)
                threading.Thread(
                    target=self._read_frames, name=f"tunnel-{self.login.session_id}", daemon=True
                ).start()
                threading.Thread(
                    target=self._watch_window, name=f"window-{self.login.session_id}", daemon=True
                ).start()
            return self._tunnel

    def current_tunnel(self) -> ThreadTunnel | None:
        return self._tunnel

    def logged_in(self, relay: ChannelRelay | None = None) -> None:
        """A channel (``relay``) is open on the host: the engineer is logged in
        (reported once). Warns on that channel if the window ends soon."""
        with self._lock:
            first, self._logged_in = not self._logged_in, True
        if first:
            try:
                self.access.connected(self.login)
            except CollectorError as exc:  # e.g. the window ended this very moment
                self.end(str(exc))
                return
        if relay is not None and self.access.clock_ms() >= self._warn_at_ms():
            self._warn([relay])

    def count(self, to_host: int = 0, to_engineer: int = 0) -> None:
        """Bytes relayed on one of the channels (called as they pass)."""
        with self._lock:
            self.bytes_to_host += to_host
            self.bytes_to_engineer += to_engineer

    def _read_frames(self) -> None:
        tunnel = self._tunnel
        assert tunnel is not None
        while True:
            frame = tunnel.receive()
            if frame is None:
                self.end("the connection to the host closed")
                return
            kind = frame.WhichOneof("kind")
            if kind == "end":
                self.end(f"the host ended the session: {frame.end.reason or 'no reason given'}")
                return
            channel = getattr(frame, kind).channel if kind else None
            relay = self._relays.get(channel) if channel is not None else None
            if relay is not None:
                try:
                    relay.on_frame(frame)
                except (OSError, EOFError, paramiko.SSHException):
                    relay.abort("the engineer's channel closed")

    # -- channels ----------------------------------------------------------------------

    def register(self, relay: ChannelRelay) -> None:
        with self._lock:
            self._relays[relay.number] = relay
            self.channels_opened += 1

    def unregister(self, relay: ChannelRelay) -> None:
        with self._lock:
            if self._relays.get(relay.number) is relay:
                del self._relays[relay.number]

    def relay(self, number: int) -> ChannelRelay | None:
        return self._relays.get(number)

    def notice(self, text: str) -> None:
        """Show ``text`` on every open channel."""
        for relay in list(self._relays.values()):
            relay.notice(text)

    # -- the window and the end --------------------------------------------------------

    def _warn_at_ms(self) -> int:
        return self.login.window_end_ms - self.access.settings.warning_ms

    def _warn(self, relays: list[ChannelRelay]) -> None:
        """Tell these channels (once each) that the window ends soon."""
        end_ms = self.login.window_end_ms
        minutes = max(1, round((end_ms - self.access.clock_ms()) / 60_000))
        text = (
            f"this session's access window ends at {format_ms(end_ms)} (in about {minutes} "
            f"min); the connection will then close"
        )
        for relay in relays:
            with self._lock:
                if relay.number in self._warned:
                    continue
                self._warned.add(relay.number)
            relay.notice(text)

    def _watch_window(self) -> None:
        end_ms = self.login.window_end_ms
        warn_ms = self._warn_at_ms()
        now = self.access.clock_ms()
        if now < warn_ms and self._ended.wait((warn_ms - now) / 1000):
            return
        self._warn(list(self._relays.values()))
        remaining = (end_ms - self.access.clock_ms()) / 1000
        if remaining > 0 and self._ended.wait(remaining):
            return
        self.end(f"the access window ended at {format_ms(end_ms)}")

    def end(self, reason: str) -> None:
        """End every channel and the connection, telling the engineer why. Idempotent."""
        with self._lock:
            if self._ended.is_set():
                return
            self._end_reason = reason
            self._ended.set()
            relays = list(self._relays.values())
            tunnel = self._tunnel
        log.info("session %s connection ended: %s", self.login.session_id, reason)
        for relay in relays:
            relay.abort(reason)
        if tunnel is not None:
            tunnel.close()
        self.transport.close()

    def closed(self) -> None:
        """The transport ended (called once by the server)."""
        self.end("the engineer disconnected")
        if self._logged_in:
            try:
                self.access.disconnected(
                    self.login,
                    bytes_to_host=self.bytes_to_host,
                    bytes_to_engineer=self.bytes_to_engineer,
                    channels=self.channels_opened,
                    reason=self._end_reason,
                )
            except Exception:
                log.exception("could not record the disconnection of %s", self.login.session_id)
        self._on_closed(self)
