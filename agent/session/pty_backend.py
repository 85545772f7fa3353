"""The PTY backend: sessions without sshd, as local processes of the support account.

Each channel is one process in its own session and process group, started as the
configured account (the agent must be root to start it as another user; checked
at start by ``pty_account``), in its home directory with a small login
environment:

* ``shell`` - the account's login shell as a login shell (``-bash``);
* ``exec``  - ``[shell, "-c", command]``;
* ``subsystem sftp`` - ``sftp_server`` (OpenSSH's sftp-server) on pipes; other
  subsystems are refused.

With ``pty`` the process gets a new pseudo-terminal as its controlling terminal
(sized by TIOCSWINSZ, resized likewise); without, three pipes (stderr separate).
All I/O is non-blocking on the event loop (``add_reader``/``add_writer``), read in
32 KiB chunks; the relay's backpressure stops the reading, which stops the program.
After the program exits, output still buffered is drained (until EOF, or half a
second without any), then EOF, the exit status or signal, and close are
reported. Closing a channel hangs up its whole session - every process group
the program's shell made for its jobs (SIGHUP, SIGTERM, SIGKILL two seconds
later); whatever is left in the session when the program exits is hung up too.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import os
import pwd
import signal
import struct
import sys
import termios
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.errors import ConfigError
from agent.playbook.process import session_members, signal_group
from agent.session.backend import ChannelRequest, ChannelSink
from agent.session.errors import ChannelRefused

__all__ = ["DEFAULT_SFTP_SERVER", "PtyAccount", "PtyBackend", "find_sftp_server", "pty_account"]

DEFAULT_SFTP_SERVER = "/usr/lib/openssh/sftp-server"
CHUNK_BYTES = 32 * 1024
EXIT_DRAIN_SECONDS = 0.5
STOP_GRACE_SECONDS = 2.0
_NO_LOGIN_SHELLS = ("nologin", "false")
# Runs between fork and the shell (as the agent's user, so it can always start this
# Python): make the PTY on stdin the controlling terminal, switch to the account if
# asked (uid gid groups; uid -1: stay), then exec the program with its argv.
_CTTY_HELPER = (
    "import fcntl,os,sys,termios\n"
    "fcntl.ioctl(0,termios.TIOCSCTTY,0)\n"
    "uid,gid,groups=int(sys.argv[1]),int(sys.argv[2]),sys.argv[3]\n"
    "if uid>=0:\n"
    " os.setgroups([int(g) for g in groups.split(',') if g]);os.setgid(gid);os.setuid(uid)\n"
    "os.execv(sys.argv[4],sys.argv[5:])\n"
)


@dataclass(frozen=True)
class PtyAccount:
    """Who the sessions run as; ``switch``: the agent (root) must change to this user."""

    name: str
    uid: int
    gid: int
    home: str
    shell: str
    switch: bool


def pty_account(user: str, shell: str) -> PtyAccount:
    """The account of ``sessions.user`` (empty: the agent's own) with its shell.

    Raises ConfigError (naming ``sessions.user`` or ``sessions.shell``) for an unknown
    user, another user while the agent is not root, or a shell that cannot log in.
    """
    euid = os.geteuid()
    try:
        entry = pwd.getpwnam(user) if user else pwd.getpwuid(euid)
    except KeyError as exc:
        raise ConfigError(f"no user {user!r} on this host", key="sessions.user") from exc
    switch = entry.pw_uid != euid
    if switch and euid != 0:
        agent = pwd.getpwuid(euid).pw_name
        raise ConfigError(
            f"the agent runs as {agent}, not root, so it cannot start sessions as {user}; "
            "run the agent as root or leave sessions.user empty",
            key="sessions.user",
        )
    login_shell = shell or entry.pw_shell or "/bin/sh"
    if not shell and Path(login_shell).name in _NO_LOGIN_SHELLS:
        raise ConfigError(
            f"the login shell of {entry.pw_name} is {login_shell}; set sessions.shell",
            key="sessions.shell",
        )
    if not os.access(login_shell, os.X_OK):
        raise ConfigError(f"{login_shell} is not an executable shell", key="sessions.shell")
    return PtyAccount(
        entry.pw_name, entry.pw_uid, entry.pw_gid, entry.pw_dir or "/", login_shell, switch
    )


def find_sftp_server(configured: str) -> str | None:
    """``sessions.sftp_server`` (must exist), else OpenSSH's if installed, else None."""
    if configured:
        if not os.access(configured, os.X_OK):
            raise ConfigError(f"{configured} is not an executable", key="sessions.sftp_server")
        return configured
    return DEFAULT_SFTP_SERVER if os.access(DEFAULT_SFTP_SERVER, os.X_OK) else None


class PtyBackend:
    """Logins as local processes of ``account``."""

    def __init__(self, account: PtyAccount, sftp_server: str | None) -> None:
        self.account = account
        self.sftp_server = sftp_server

    @property
    def description(self) -> str:
        return f"a PTY login as {self.account.name}"

    async def login(self, engineer: str) -> PtyLogin:
        return PtyLogin(self)


class PtyLogin:
    """The channels of one tunnel; closing it hangs them all up."""

    def __init__(self, backend: PtyBackend) -> None:
        self._backend = backend
        self._channels: set[PtyChannel] = set()
        self._closed = False

    async def open_channel(self, request: ChannelRequest, sink: ChannelSink) -> PtyChannel:
        if self._closed:
            raise ChannelRefused("the login is closed")
        command, program = self._command(request)
        channel = PtyChannel(sink)
        await channel.start(self._backend.account, request, command, program)
        self._channels.add(channel)
        return channel

    async def close(self) -> None:
        self._closed = True
        await asyncio.gather(*(c.close() for c in self._channels), return_exceptions=True)
        self._channels.clear()

    def _command(self, request: ChannelRequest) -> tuple[list[str], str]:
        """(argv with argv[0], program path) for the channel."""
        shell = self._backend.account.shell
        if request.kind == "shell":
            return ["-" + Path(shell).name], shell
        if request.kind == "exec":
            return [Path(shell).name, "-c", request.command], shell
        if request.kind == "subsystem":
            server = self._backend.sftp_server
            if request.command != "sftp" or server is None:
                raise ChannelRefused(f"subsystem {request.command!r} is not available on this host")
            return [Path(server).name], server
        raise ChannelRefused(f"unknown channel kind {request.kind!r}")


class PtyChannel:
    """One process with a PTY or pipes (BackendChannel)."""

    def __init__(self, sink: ChannelSink) -> None:
        self._sink = sink
        self._process: asyncio.subprocess.Process | None = None
        self._input = -1  # PTY master or stdin pipe
        self._outputs: list[tuple[int, bool]] = []  # (fd, is stderr)
        self._fds: set[int] = set()
        self._pty = False
        self._exited = asyncio.Event()
        self._supervisor: asyncio.Task[None] | None = None
        self._writers: set[asyncio.Future[None]] = set()  # writes waiting for room

    async def start(
        self, account: PtyAccount, request: ChannelRequest, command: list[str], program: str
    ) -> None:
        """Start ``program`` with argv ``command``; raises ChannelRefused if it cannot start."""
        self._pty = request.pty and request.kind != "subsystem"
        argv, executable, identity = command, program, _identity(account)
        child: list[int] = []
        try:
            if self._pty:
                master, slave = os.openpty()
                self._fds.add(master)
                child = [slave]
                _set_size(master, request.cols, request.rows)
                if account.switch:
                    os.fchown(slave, account.uid, -1)
                stdio = (slave, slave, slave)
                helper = [sys.executable, "-I", "-S", "-c", _CTTY_HELPER, *_switch(account)]
                argv, executable, identity = [*helper, program, *command], sys.executable, {}
                self._input, self._outputs = master, [(master, False)]
            else:
                (in_r, in_w), (out_r, out_w), (err_r, err_w) = os.pipe(), os.pipe(), os.pipe()
                self._fds.update((in_w, out_r, err_r))
                child = [in_r, out_w, err_w]
                stdio = (in_r, out_w, err_w)
                self._input, self._outputs = in_w, [(out_r, False), (err_r, True)]
            for fd in self._fds:
                os.set_blocking(fd, False)
            self._process = await asyncio.create_subprocess_exec(
                *argv,
                executable=executable,
                env=_environment(account, request),
                cwd=account.home if os.path.isdir(account.home) else "/",
                start_new_session=True,
                stdin=stdio[0],
                stdout=stdio[1],
                stderr=stdio[2],
                **identity,
            )
        except (OSError, ValueError) as exc:
            self._close_fds()
            raise ChannelRefused(f"cannot start {program}: {exc}") from exc
        finally:
            for fd in child:
                os.close(fd)
        self._supervisor = asyncio.create_task(self._supervise())

    async def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            if self._input < 0:
                raise ConnectionError("the channel is closed")
            try:
                view = view[os.write(self._input, view) :]
            except BlockingIOError:
                await self._ready(self._input, writing=True)
            except OSError as exc:
                raise ConnectionError(f"the program no longer reads its input: {exc}") from exc

    async def shutdown_write(self) -> None:
        if self._pty:
            with contextlib.suppress(ConnectionError):
                await self.write(b"\x04")  # the terminal's EOF character (VEOF)
        elif self._input >= 0:
            self._close_fd(self._input)
            self._input = -1

    async def resize(self, cols: int, rows: int) -> None:
        if self._pty and self._input >= 0:
            _set_size(self._input, cols, rows)

    async def close(self) -> None:
        """Hang up the process group and wait (briefly) for the channel to finish."""
        process = self._process
        if process is not None and process.returncode is None:
            for signum in (signal.SIGHUP, signal.SIGCONT, signal.SIGTERM):
                _signal_session(process.pid, signum)
            try:
                await asyncio.wait_for(process.wait(), STOP_GRACE_SECONDS)
            except TimeoutError:
                _signal_session(process.pid, signal.SIGKILL)
        if self._supervisor is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(self._supervisor), STOP_GRACE_SECONDS)

    # -- the process's life -----------------------------------------------------------

    async def _supervise(self) -> None:
        assert self._process is not None
        pumps = [asyncio.create_task(self._pump(fd, stderr)) for fd, stderr in self._outputs]
        try:
            code = await self._process.wait()
            self._exited.set()
            await asyncio.gather(*pumps, return_exceptions=True)
            await self._sink.eof()
            if code < 0:
                await self._sink.exited(None, _signal_name(-code))
            else:
                await self._sink.exited(code, "")
        finally:
            for pump in pumps:
                pump.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
            _signal_session(self._process.pid, signal.SIGHUP)  # what the program left behind
            self._close_fds()
            await self._sink.closed()

    async def _pump(self, fd: int, stderr: bool) -> None:
        """Forward output until EOF (or, after the exit, half a second of silence)."""
        while True:
            try:
                data = os.read(fd, CHUNK_BYTES)
            except BlockingIOError:
                try:
                    await self._ready(fd, writing=False)
                except TimeoutError:
                    return
                continue
            except OSError as exc:  # EIO: the PTY's last other end is closed
                if exc.errno != errno.EIO:
                    raise
                return
            if not data:
                return
            await self._sink.output(data, stderr)

    async def _ready(self, fd: int, *, writing: bool) -> None:
        """Wait until ``fd`` is readable/writable; TimeoutError when reading after the exit
        has been silent for EXIT_DRAIN_SECONDS."""
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()

        def wake() -> None:
            if not ready.done():
                ready.set_result(None)

        add, remove = (
            (loop.add_writer, loop.remove_writer)
            if writing
            else (loop.add_reader, loop.remove_reader)
        )
        add(fd, wake)
        try:
            if writing:
                self._writers.add(ready)
                await ready
            elif self._exited.is_set():
                await asyncio.wait_for(ready, EXIT_DRAIN_SECONDS)
            else:
                exited = asyncio.ensure_future(self._exited.wait())
                waiting: set[asyncio.Future[Any]] = {ready, exited}
                try:
                    await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    exited.cancel()
        finally:
            self._writers.discard(ready)
            if fd in self._fds:
                remove(fd)

    def _close_fd(self, fd: int) -> None:
        if fd in self._fds:
            loop = asyncio.get_running_loop()
            loop.remove_reader(fd)
            loop.remove_writer(fd)
            self._fds.discard(fd)
            os.close(fd)

    def _close_fds(self) -> None:
        for fd in list(self._fds):
            self._close_fd(fd)
        self._input = -1
        for waiting in self._writers:
            if not waiting.done():
                waiting.set_exception(ConnectionError("the channel is closed"))


def _signal_session(session: int, signum: signal.Signals) -> None:
    """Signal the process group ``session`` and every other process of that session."""
    signal_group(session, signum)
    for pid in session_members(session):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signum)


def _set_size(fd: int, cols: int, rows: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def _environment(account: PtyAccount, request: ChannelRequest) -> dict[str, str]:
    path = "/usr/local/bin:/usr/bin:/bin"
    if account.uid == 0:
        path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    env = {
        "HOME": account.home,
        "USER": account.name,
        "LOGNAME": account.name,
        "SHELL": account.shell,
        "PATH": path,
        "LANG": "C.UTF-8",
    }
    if request.pty:
        env["TERM"] = request.term or "xterm"
    return env


def _identity(account: PtyAccount) -> dict[str, Any]:
    """Keyword arguments of create_subprocess_exec that switch to ``account``."""
    if not account.switch:
        return {}
    return {
        "user": account.uid,
        "group": account.gid,
        "extra_groups": os.getgrouplist(account.name, account.gid),
    }


def _switch(account: PtyAccount) -> list[str]:
    """The helper's "uid gid groups" arguments ("-1" uid: no switch)."""
    if not account.switch:
        return ["-1", "-1", ""]
    groups = os.getgrouplist(account.name, account.gid)
    return [str(account.uid), str(account.gid), ",".join(str(g) for g in groups)]


def _signal_name(number: int) -> str:
    """ "TERM" for 15 (the SSH convention: no SIG prefix); the number for unknown ones."""
    try:
        return signal.Signals(number).name.removeprefix("SIG")
    except ValueError:
        return str(number)
