"""What a session backend offers the tunnel: a login on this host, with channels.

A ``Backend`` (sshd or PTY) opens one ``Login`` per tunnel; each ``ChannelOpen``
from the engineer becomes one ``BackendChannel`` on that login. The backend reports
what happens on a channel through the ``ChannelSink`` the tunnel gives it, in this
order: ``output`` any number of times, then ``eof``, ``exited`` (if the program
reported a status or signal) and ``closed`` - each at most once, ``closed`` always
last. Sink methods are coroutines run on the event loop; ``output`` waits while the
tunnel's send queue is full, which is how a fast producer is slowed down.

Everything here is called on the event loop; backends that block (paramiko) run
their blocking work on their own threads and bridge back explicitly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

__all__ = ["Backend", "BackendChannel", "ChannelRequest", "ChannelSink", "Login"]


@dataclass(frozen=True)
class ChannelRequest:
    """One channel the engineer opened: ``kind`` shell | exec | subsystem."""

    kind: str
    command: str = ""  # exec: the command line; subsystem: its name ("sftp")
    pty: bool = False
    term: str = ""
    cols: int = 80
    rows: int = 24


class ChannelSink(Protocol):
    """Where a backend reports a channel's events (see the module docstring for the order)."""

    async def output(self, data: bytes, stderr: bool) -> None: ...

    async def eof(self) -> None: ...

    async def exited(self, status: int | None, signal: str) -> None:
        """The program ended: ``status``, or ``signal`` (e.g. "TERM") with status None."""
        ...

    async def closed(self) -> None: ...


class BackendChannel(Protocol):
    """One open channel: input, end of input, terminal size, close."""

    async def write(self, data: bytes) -> None:
        """Send ``data`` to the program; waits while the program does not read."""
        ...

    async def shutdown_write(self) -> None:
        """No more input (the engineer's EOF)."""
        ...

    async def resize(self, cols: int, rows: int) -> None: ...

    async def close(self) -> None:
        """Close the channel (stopping its program); the sink still gets ``closed``."""
        ...


class Login(Protocol):
    """One login on the host (one per tunnel)."""

    async def open_channel(self, request: ChannelRequest, sink: ChannelSink) -> BackendChannel:
        """Open a channel; raises ChannelRefused with the reason for the engineer."""
        ...

    async def close(self) -> None:
        """End the login and every channel on it at once. Idempotent."""
        ...


class Backend(Protocol):
    """Opens logins on this host; ``description`` is for logs and the journal."""

    @property
    def description(self) -> str: ...

    async def login(self, engineer: str) -> Login:
        """Log in for ``engineer``; raises LoginFailed with the reason sent to the collector."""
        ...
