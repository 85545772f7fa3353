"""The sshd backend: each tunnel is one SSH login to this host's own sshd, as the support account.

Logging in through sshd means PAM, auditd, ``last`` and the host's own sshd policy
see the engineer's session like any other login. The agent connects with paramiko
to ``sessions.sshd_address`` as ``sessions.user`` with the private key
``sessions.key_file`` (no agent, no other keys) and verifies the sshd's host key
against ``sessions.host_key_files`` (never trust-on-first-use). One SSH transport
per tunnel; each ChannelOpen is one SSH session channel on it: ``get_pty`` when
asked, then ``invoke_shell`` / ``exec_command`` / ``invoke_subsystem``.

paramiko blocks, so it runs on threads, bridged to the event loop explicitly:
connecting, opening channels and writing run on a small per-login thread pool
(``run_in_executor``); each channel has a reader thread for stdout and one for
stderr (32 KiB reads) that hand chunks to the event loop with
``run_coroutine_threadsafe`` and wait for them to be queued - the tunnel's
backpressure thus stops reading, and the SSH window then stops sshd. paramiko
ignores ``exit-signal`` requests; this module watches for them on the transport so
a command killed by a signal is reported as such.

This module imports paramiko; the agent imports it only when ``sessions.backend =
"sshd"``, so agents without sessions do not carry paramiko in memory.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import concurrent.futures
import glob
import logging
import socket
import threading
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any

import paramiko
from paramiko.common import MSG_CHANNEL_REQUEST

from agent.errors import ConfigError
from agent.session.backend import ChannelRequest, ChannelSink
from agent.session.errors import ChannelRefused, LoginFailed

__all__ = [
    "DEFAULT_HOST_KEY_FILES",
    "SshdBackend",
    "default_host_key_files",
    "load_client_key",
    "load_host_keys",
]

log = logging.getLogger(__name__)

DEFAULT_HOST_KEY_FILES = "/etc/ssh/ssh_host_*_key.pub"
CHUNK_BYTES = 256 * 1024  # several SSH packets per tunnel frame when data is queued
CONNECT_TIMEOUT_SECONDS = 10.0
OPEN_TIMEOUT_SECONDS = 15.0
JOIN_TIMEOUT_SECONDS = 5.0
KEEPALIVE_SECONDS = 30
LOGIN_THREADS = 4


# -- configuration (checked when the agent starts) --------------------------------------


def load_client_key(path: str) -> paramiko.PKey:
    """The private key of ``sessions.key_file``; ConfigError if unreadable or not a key."""
    try:
        return paramiko.PKey.from_path(path)
    except (OSError, paramiko.SSHException, ValueError) as exc:
        raise ConfigError(
            f"cannot load the private key {path}: {exc}", key="sessions.key_file"
        ) from exc


def default_host_key_files() -> tuple[str, ...]:
    """The sshd's public host keys in /etc/ssh, when ``sessions.host_key_files`` is empty."""
    return tuple(sorted(glob.glob(DEFAULT_HOST_KEY_FILES)))


def load_host_keys(paths: Sequence[str]) -> list[paramiko.PKey]:
    """Public keys from OpenSSH ``.pub`` files ("TYPE BASE64 [comment]" lines).

    Raises ConfigError naming ``sessions.host_key_files`` if there are none or one
    cannot be read.
    """
    key = "sessions.host_key_files"
    if not paths:
        raise ConfigError(
            f"no sshd host keys found ({DEFAULT_HOST_KEY_FILES}); list the sshd's public "
            "host key files",
            key=key,
        )
    keys = []
    for path in paths:
        try:
            for line in Path(path).read_text(encoding="utf-8").splitlines():
                fields = line.split()
                if len(fields) >= 2 and not line.startswith("#"):
                    blob = base64.b64decode(fields[1], validate=True)
                    keys.append(paramiko.PKey.from_type_string(fields[0], blob))
        except (OSError, ValueError, binascii.Error, paramiko.SSHException) as exc:
            raise ConfigError(f"cannot read the host key {path}: {exc}", key=key) from exc
    if not keys:
        raise ConfigError(f"no public keys in {', '.join(paths)}", key=key)
    return keys


# -- the backend ---------------------------------------------------------------------------


class _UnknownHostKey(paramiko.SSHException):
    def __init__(self, key: paramiko.PKey) -> None:
        super().__init__(f"{key.get_name()} {key.fingerprint}")
        self.key = key


class _RejectUnknown(paramiko.MissingHostKeyPolicy):
    """Refuse any host key not configured (never AutoAddPolicy)."""

    def missing_host_key(
        self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey
    ) -> None:
        raise _UnknownHostKey(key)


class SshdBackend:
    """Logins to the sshd at ``host:port`` as ``user`` with ``key``."""

    def __init__(
        self,
        host: str,
        port: int,
        user: str,
        key: paramiko.PKey,
        host_keys: Sequence[paramiko.PKey],
        *,
        connect_timeout: float = CONNECT_TIMEOUT_SECONDS,
    ) -> None:
        self._host = host
        self._port = port
        self._user = user
        self._key = key
        self._host_keys = list(host_keys)
        self._connect_timeout = connect_timeout
        self.address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    @property
    def description(self) -> str:
        return f"this host's sshd at {self.address} as {self._user}"

    async def login(self, engineer: str) -> SshdLogin:
        """Connect and authenticate; raises LoginFailed with the reason and what to check."""
        loop = asyncio.get_running_loop()
        pool = concurrent.futures.ThreadPoolExecutor(LOGIN_THREADS, thread_name_prefix="sshd-login")
        connecting = loop.run_in_executor(pool, self._connect)
        try:
            client, signals = await asyncio.shield(connecting)
        except asyncio.CancelledError:
            connecting.add_done_callback(_close_late)
            pool.shutdown(wait=False)
            raise
        except BaseException:
            pool.shutdown(wait=False)
            raise
        return SshdLogin(client, signals, loop, pool)

    def _connect(self) -> tuple[paramiko.SSHClient, dict[int, str]]:
        client = paramiko.SSHClient()
        known = client.get_host_keys()
        for name in (self._host, f"[{self._host}]:{self._port}"):
            for key in self._host_keys:
                known.add(name, key.get_name(), key)
        client.set_missing_host_key_policy(_RejectUnknown())
        try:
            client.connect(
                self._host,
                self._port,
                username=self._user,
                pkey=self._key,
                look_for_keys=False,
                allow_agent=False,
                timeout=self._connect_timeout,
                banner_timeout=self._connect_timeout,
                auth_timeout=self._connect_timeout,
                transport_factory=_fast_transport,
            )
        except Exception as exc:
            client.close()
            raise LoginFailed(
                f"cannot log in to this host's sshd at {self.address} as {self._user}: "
                + self._why(exc)
            ) from exc
        transport = client.get_transport()
        assert transport is not None
        transport.set_keepalive(KEEPALIVE_SECONDS)
        signals: dict[int, str] = {}
        _watch_exit_signals(transport, signals)
        return client, signals

    def _why(self, exc: Exception) -> str:
        if isinstance(exc, paramiko.AuthenticationException):
            return (
                f"public key refused ({exc}); check sessions.key_file is in {self._user}'s "
                "authorized_keys"
            )
        if isinstance(exc, _UnknownHostKey | paramiko.BadHostKeyException):
            shown = exc.key
            return (
                f"its host key ({shown.get_name()} {shown.fingerprint}) is not among "
                "sessions.host_key_files; refusing to log in"
            )
        if isinstance(exc, socket.timeout | TimeoutError):
            return f"no answer within {self._connect_timeout:g}s"
        if isinstance(exc, paramiko.SSHException):
            return str(exc) or type(exc).__name__
        if isinstance(exc, OSError):
            return f"{exc.strerror or exc}; is sshd listening there (sessions.sshd_address)?"
        return repr(exc)


def _close_late(connecting: asyncio.Future[tuple[paramiko.SSHClient, dict[int, str]]]) -> None:
    """A login that completed after it was given up: close it (on a thread, it may block)."""
    if not connecting.cancelled() and connecting.exception() is None:
        client = connecting.result()[0]
        threading.Thread(target=client.close, name="sshd-close", daemon=True).start()


def _watch_exit_signals(transport: paramiko.Transport, signals: dict[int, str]) -> None:
    """Record ``exit-signal`` requests (paramiko ignores them) as chanid -> "TERM".

    Wraps the transport's channel-request handler for this transport only; on a
    paramiko without that table, signals are simply not reported.
    """
    table = getattr(transport, "_channel_handler_table", None)
    if not isinstance(table, dict) or MSG_CHANNEL_REQUEST not in table:
        return
    original = table[MSG_CHANNEL_REQUEST]

    def handle(channel: paramiko.Channel, message: paramiko.Message) -> None:
        start = message.packet.tell()
        if message.get_text() == "exit-signal":
            message.get_boolean()  # want reply
            signals[channel.chanid] = message.get_text()
            channel.status_event.set()
            return
        message.packet.seek(start)
        original(channel, message)

    setattr(transport, "_channel_handler_table", {**table, MSG_CHANNEL_REQUEST: handle})  # noqa: B010


class SshdLogin:
    """One SSH transport to sshd; its channels; closing it ends them all."""

    def __init__(
        self,
        client: paramiko.SSHClient,
        signals: dict[int, str],
        loop: asyncio.AbstractEventLoop,
        pool: concurrent.futures.ThreadPoolExecutor,
    ) -> None:
        self._client = client
        self._signals = signals
        self._loop = loop
        self._pool = pool
        self._channels: list[SshdChannel] = []
        self._closed = False

    async def open_channel(self, request: ChannelRequest, sink: ChannelSink) -> SshdChannel:
        if self._closed:
            raise ChannelRefused("the login is closed")
        raw = await self._loop.run_in_executor(self._pool, self._open, request)
        channel = SshdChannel(raw, sink, self._loop, self._pool, self._signals)
        self._channels.append(channel)
        channel.start()
        return channel

    def _open(self, request: ChannelRequest) -> paramiko.Channel:
        transport = self._client.get_transport()
        if transport is None or not transport.is_active():
            raise ChannelRefused("the login to sshd has ended")
        try:
            raw = transport.open_session(timeout=OPEN_TIMEOUT_SECONDS)
        except (paramiko.SSHException, OSError) as exc:
            raise ChannelRefused(f"sshd refused a new channel: {exc}") from exc
        try:
            if request.pty:
                raw.get_pty(term=request.term or "xterm", width=request.cols, height=request.rows)
            if request.kind == "shell":
                raw.invoke_shell()
            elif request.kind == "exec":
                raw.exec_command(request.command)
            elif request.kind == "subsystem":
                raw.invoke_subsystem(request.command)
            else:
                raise ChannelRefused(f"unknown channel kind {request.kind!r}")
        except (paramiko.SSHException, OSError) as exc:
            raw.close()
            what = f"{request.kind} {request.command}".strip()
            raise ChannelRefused(f"sshd refused {what}: {exc}") from exc
        except ChannelRefused:
            raw.close()
            raise
        return raw

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._loop.run_in_executor(None, self._client.close)
        for channel in self._channels:
            await self._loop.run_in_executor(None, channel.join, JOIN_TIMEOUT_SECONDS)
        self._pool.shutdown(wait=False, cancel_futures=True)


class SshdChannel:
    """One SSH session channel (BackendChannel) with its reader threads."""

    def __init__(
        self,
        raw: paramiko.Channel,
        sink: ChannelSink,
        loop: asyncio.AbstractEventLoop,
        pool: concurrent.futures.ThreadPoolExecutor,
        signals: dict[int, str],
    ) -> None:
        self._raw = raw
        self._sink = sink
        self._loop = loop
        self._pool = pool
        self._signals = signals
        self._thread = threading.Thread(
            target=self._pump, name=f"sshd-channel-{raw.chanid}", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    async def write(self, data: bytes) -> None:
        await self._loop.run_in_executor(self._pool, self._raw.sendall, data)

    async def shutdown_write(self) -> None:
        await self._loop.run_in_executor(self._pool, self._raw.shutdown_write)

    async def resize(self, cols: int, rows: int) -> None:
        await self._loop.run_in_executor(self._pool, self._raw.resize_pty, cols, rows)

    async def close(self) -> None:
        await self._loop.run_in_executor(self._pool, self._raw.close)

    # -- the reader threads -------------------------------------------------------------

    def _pump(self) -> None:
        """stdout here, stderr on a second thread; then EOF, exit, close - in that order."""
        errors = threading.Thread(
            target=self._read, args=(self._raw.recv_stderr, True), daemon=True
        )
        errors.start()
        self._read(self._raw.recv, False)
        errors.join()
        if not self._report(self._sink.eof()):
            return
        self._raw.status_event.wait()  # exit-status, exit-signal, or the channel closed
        signal = self._signals.pop(self._raw.chanid, "")
        if signal:
            self._report(self._sink.exited(None, signal))
        elif self._raw.exit_status != -1:
            self._report(self._sink.exited(self._raw.exit_status, ""))
        self._raw.close()
        self._report(self._sink.closed())

    def _read(self, receive: Any, stderr: bool) -> None:
        while True:
            try:
                data = receive(CHUNK_BYTES)
            except (OSError, EOFError, paramiko.SSHException):
                return
            if not data or not self._report(self._sink.output(data, stderr)):
                return

    def _report(self, report: Coroutine[Any, Any, None]) -> bool:
        """Run a sink coroutine on the event loop and wait for it; False if it cannot run."""
        try:
            done = asyncio.run_coroutine_threadsafe(report, self._loop)
        except RuntimeError:  # the event loop is closed: the agent is gone
            report.close()
            return False
        try:
            done.result()
        except (Exception, concurrent.futures.CancelledError):
            return False
        return True


# AES-GCM first: no separate per-packet HMAC pass in Python (CTR stays as a fallback).
_CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "aes128-ctr", "aes256-ctr")
WINDOW_BYTES = 8 * 1024 * 1024
MAX_PACKET_BYTES = 256 * 1024  # sshd may send bigger packets: fewer frames to relay


def _fast_transport(sock: Any, **kwargs: Any) -> paramiko.Transport:
    """The client transport to sshd: a large window and packets, AES-GCM preferred."""
    transport = paramiko.Transport(
        sock,
        default_window_size=WINDOW_BYTES,
        default_max_packet_size=MAX_PACKET_BYTES,
        **kwargs,
    )
    transport.get_security_options().ciphers = _CIPHERS
    return transport
