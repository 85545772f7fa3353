"""One engineer SSH channel relayed to one tunnel channel, recorded.

``ChannelRelay.run`` (its own thread) asks the connection for the tunnel, opens the
channel on the host, then copies the engineer's bytes to the host until EOF. Frames
from the host arrive through ``on_frame`` (the connection's reader thread): output
goes to the engineer, into the recording and to watchers. Shell and exec channels
are recorded; file transfers (sftp, scp, rsync) are not — their sizes are counted,
and the files copied by sftp and scp go onto the session's timeline (``transfers``).
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import paramiko

from collector.errors import CollectorError
from collector.gateway.access import GatewayAccess, Login
from collector.gateway.bridge import ThreadTunnel
from collector.gateway.recording import ChannelRecording
from collector.gateway.transfers import FileTransfer, TransferWatcher, watcher_for
from proto import agent_pb2

log = logging.getLogger(__name__)

CHUNK = 256 * 1024  # several SSH packets per tunnel frame when data is queued
OPEN_TIMEOUT_SECONDS = 30.0
FILE_TRANSFER_PREFIXES = ("scp ", "rsync --server", "sftp-server")


@dataclass(frozen=True)
class Pty:
    term: str
    cols: int
    rows: int


@dataclass(frozen=True)
class ChannelRequest:
    """What the engineer asked for on one channel."""

    kind: str  # shell | exec | subsystem
    command: str = ""  # exec: the command line; subsystem: its name
    pty: Pty | None = None

    @property
    def is_file_transfer(self) -> bool:
        return self.kind == "subsystem" or self.command.startswith(FILE_TRANSFER_PREFIXES)


def exit_status_of(exit_frame: agent_pb2.ChannelExit) -> int:
    """The exit status to give the engineer: 128 + signal number when killed."""
    if not exit_frame.signal:
        return exit_frame.status
    number = getattr(signal, f"SIG{exit_frame.signal.removeprefix('SIG')}", None)
    return 128 + int(number) if number is not None else 255


class RelayOwner(Protocol):
    """What a relay needs from its engineer connection (``connection.EngineerConnection``)."""

    login: Login
    access: GatewayAccess

    def tunnel(self) -> ThreadTunnel:
        """The connection's tunnel to the host, opened on first use."""

    def current_tunnel(self) -> ThreadTunnel | None:
        """The tunnel if it is open."""

    def register(self, relay: ChannelRelay) -> None:
        """Route the host's frames for ``relay.number`` to ``relay``."""

    def unregister(self, relay: ChannelRelay) -> None:
        """Stop routing frames to ``relay``."""

    def logged_in(self, relay: ChannelRelay | None = None) -> None:
        """The engineer is on the host (the first channel opened)."""

    def count(self, to_host: int = 0, to_engineer: int = 0) -> None:
        """Add relayed bytes to the connection's totals."""


class ChannelRelay:
    """Relays one SSH session channel; ``run`` is the thread body."""

    def __init__(
        self, connection: RelayOwner, channel: paramiko.Channel, request: ChannelRequest
    ) -> None:
        self.connection = connection
        self.channel = channel
        self.number = channel.get_id()
        self.request = request
        self._opened = threading.Event()
        self._open_error = ""
        self._done = threading.Event()
        self._recording: ChannelRecording | None = None
        self._lock = threading.Lock()
        self._transfers: TransferWatcher | None = (
            watcher_for(request.kind, request.command) if request.is_file_transfer else None
        )
        self._transfers_lock = threading.Lock()  # fed from the pump and the reader thread
        self.bytes_to_host = 0
        self.bytes_to_engineer = 0

    # -- thread body -------------------------------------------------------------------

    def run(self) -> None:
        try:
            tunnel = self.connection.tunnel()
            self.connection.register(self)
            if not self.request.is_file_transfer:  # before opening: the prompt is recorded too
                pty = self.request.pty
                cols, rows = (pty.cols, pty.rows) if pty else (80, 24)
                recording = self.connection.access.record(
                    self.connection.login, self.request.kind, self.request.command, cols, rows
                )
                with self._lock:
                    self._recording = recording
            tunnel.send(agent_pb2.TunnelFrame(open=self._open_frame()))
            if not self._opened.wait(OPEN_TIMEOUT_SECONDS):
                raise CollectorError("the host did not open the channel in time")
            if self._open_error:
                raise CollectorError(f"the host refused: {self._open_error}")
            self.connection.logged_in(self)
            self._pump_to_host(tunnel)
        except CollectorError as exc:
            self.abort(str(exc))
        except Exception:
            log.exception("relay of channel %d failed", self.number)
            self.abort("internal error in the gateway")
        finally:
            self._done.wait(5)
            self._finish()

    def _open_frame(self) -> agent_pb2.ChannelOpen:
        pty = self.request.pty
        return agent_pb2.ChannelOpen(
            channel=self.number,
            kind=self.request.kind,
            command=self.request.command,
            pty=pty is not None,
            term=pty.term if pty else "",
            cols=pty.cols if pty else 0,
            rows=pty.rows if pty else 0,
        )

    def _pump_to_host(self, tunnel: ThreadTunnel) -> None:
        metrics = self.connection.access.metrics.gateway_bytes.labels("to_host")
        while not self._done.is_set():
            data = self.channel.recv(CHUNK)
            if not data:
                break
            self.bytes_to_host += len(data)
            self.connection.count(to_host=len(data))
            metrics.inc(len(data))
            if self._transfers is not None:
                self._watch(self._transfers.from_engineer, data)
            with self._lock:
                if self._recording is not None:
                    self._recording.input(data)
            tunnel.send(
                agent_pb2.TunnelFrame(data=agent_pb2.ChannelData(channel=self.number, data=data))
            )
        if self._done.is_set():
            return
        end = (
            agent_pb2.TunnelFrame(close=agent_pb2.ChannelClose(channel=self.number))
            if self.channel.closed
            else agent_pb2.TunnelFrame(eof=agent_pb2.ChannelEof(channel=self.number))
        )
        tunnel.send(end)
        self._done.wait()

    # -- frames from the host (the connection's reader thread) -------------------------

    def on_frame(self, frame: agent_pb2.TunnelFrame) -> None:
        kind = frame.WhichOneof("kind")
        if kind == "opened":
            self._open_error = frame.opened.error
            self._opened.set()
        elif kind == "data":
            self._to_engineer(frame.data.data, frame.data.stderr)
        elif kind == "eof":
            self.channel.shutdown_write()
        elif kind == "exit":
            self.channel.send_exit_status(exit_status_of(frame.exit))
        elif kind == "close":
            self._done.set()
            self.channel.close()

    def _to_engineer(self, data: bytes, stderr: bool) -> None:
        self.bytes_to_engineer += len(data)
        self.connection.count(to_engineer=len(data))
        self.connection.access.metrics.gateway_bytes.labels("to_engineer").inc(len(data))
        if self._transfers is not None and not stderr:  # before the engineer can answer
            self._watch(self._transfers.to_engineer, data)
        with self._lock:
            if self._recording is not None:
                self._recording.output(data)
        if stderr:
            self.channel.sendall_stderr(data)
        else:
            self.channel.sendall(data)

    def resize(self, cols: int, rows: int) -> None:
        """The engineer's terminal changed size."""
        tunnel = self.connection.current_tunnel()
        if tunnel is None:
            return
        with self._lock:
            if self._recording is not None:
                self._recording.resize(cols, rows)
        with contextlib.suppress(CollectorError):
            tunnel.send(
                agent_pb2.TunnelFrame(
                    resize=agent_pb2.ChannelResize(channel=self.number, cols=cols, rows=rows)
                )
            )

    # -- ending ------------------------------------------------------------------------

    def notice(self, text: str) -> None:
        """Show the engineer a line from the gateway (on stderr, which a PTY displays)."""
        with contextlib.suppress(OSError, EOFError, paramiko.SSHException):
            self.channel.sendall_stderr(f"\r\n[aftercare] {text}\r\n".encode())

    def abort(self, reason: str) -> None:
        """End the channel from the gateway's side with ``reason`` shown to the engineer."""
        if self._done.is_set():
            return
        self.notice(reason)
        with contextlib.suppress(OSError, EOFError, paramiko.SSHException):
            self.channel.send_exit_status(255)
        self._done.set()
        self.channel.close()

    def _watch(self, feed: Callable[[bytes], list[FileTransfer]], data: bytes) -> None:
        """Feed the transfer watcher; put the files it completed onto the timeline."""
        with self._transfers_lock:
            try:
                done = feed(data)
            except Exception:  # watching must never break a copy
                log.exception("file transfer watcher of channel %d failed", self.number)
                self._transfers = None
                return
        if done:
            self.connection.access.file_transfers(self.connection.login, done)

    def _finish(self) -> None:
        watcher = self._transfers
        if watcher is not None:
            with self._transfers_lock:
                left = watcher.close()
            if left:
                self.connection.access.file_transfers(self.connection.login, left)
            if watcher.dropped:
                log.warning(
                    "session %s channel %d: %d more file transfers not listed",
                    self.connection.login.session_id,
                    self.number,
                    watcher.dropped,
                )
        with self._lock:
            recording, self._recording = self._recording, None
        if recording is not None:
            try:
                recording.close()
            except Exception:
                log.exception("could not finish the recording of channel %d", self.number)
        self.connection.unregister(self)
