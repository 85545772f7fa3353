"""Build the session endpoint from the agent's config and the customer's policy, at start.

Everything that can be wrong with ``[sessions]`` is found here, before the agent
connects: an unknown user, a user the agent cannot switch to, an unreadable key or
host key, a shell that cannot log in - each a ConfigError naming the key. The
backend modules are imported only when configured, so an agent without sessions
(or with the PTY backend) never loads paramiko.

An agent that serves no sessions (``backend = "none"``) builds its endpoint on the
first session message (``EndpointOnFirstMessage``): it only ever refuses, so there is
nothing to check at start, and an idle agent keeps none of the session modules in
memory (issue 17).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from agent.config import SessionsConfig
from agent.errors import ConfigError
from agent.playbook.policy import Policy

if TYPE_CHECKING:
    from agent.consent.verify import ConsentVerifier
    from agent.session.backend import Backend
    from agent.session.endpoint import OpenTunnel, Send, SessionEndpoint
    from proto import agent_pb2

__all__ = [
    "RECORDINGS_DIR",
    "EndpointOnFirstMessage",
    "build_backend",
    "build_session_endpoint",
    "session_approval_mode",
]

RECORDINGS_DIR = "recordings"


def session_approval_mode(config: SessionsConfig, policy: Policy) -> str:
    """``Hello.session_approval``: the policy's mode, or "disabled" without a backend."""
    return "disabled" if config.backend == "none" else policy.session_approval


def build_backend(config: SessionsConfig) -> Backend | None:
    """The configured backend (None for "none"); raises ConfigError naming the key."""
    if config.backend == "sshd":
        try:
            from agent.session import sshd_backend
        except ModuleNotFoundError as exc:  # paramiko: only in 'aftercare[agent-sshd]'
            raise ConfigError(
                f'"sshd" needs {exc.name}, which is not installed: install '
                '\'aftercare[agent-sshd]\', or use backend = "pty" or "none"',
                key="sessions.backend",
            ) from exc

        host_key_files = config.host_key_files or sshd_backend.default_host_key_files()
        return sshd_backend.SshdBackend(
            config.sshd_host,
            config.sshd_port,
            config.user,
            sshd_backend.load_client_key(config.key_file),
            sshd_backend.load_host_keys(host_key_files),
        )
    if config.backend == "pty":
        from agent.session import pty_backend

        return pty_backend.PtyBackend(
            pty_backend.pty_account(config.user, config.shell),
            pty_backend.find_sftp_server(config.sftp_server),
        )
    return None


def build_session_endpoint(
    state_dir: Path,
    config: SessionsConfig,
    policy: Policy,
    send: Send,
    open_tunnel: OpenTunnel,
    consent: ConsentVerifier,
) -> SessionEndpoint | EndpointOnFirstMessage:
    """The endpoint as configured. Raises ConfigError for a bad ``[sessions]``.

    Without a backend, an ``EndpointOnFirstMessage`` that builds it when needed.
    """

    def build() -> SessionEndpoint:
        return _endpoint(state_dir, config, policy, send, open_tunnel, consent)

    return EndpointOnFirstMessage(build) if config.backend == "none" else build()


def _endpoint(
    state_dir: Path,
    config: SessionsConfig,
    policy: Policy,
    send: Send,
    open_tunnel: OpenTunnel,
    consent: ConsentVerifier,
) -> SessionEndpoint:
    from agent.journal import SESSIONS_JOURNAL_FILE, Journal
    from agent.session.endpoint import SessionEndpoint
    from agent.session.recording import CustomerCopy
    from agent.session.requests import SessionRequests

    backend = build_backend(config)
    mode = session_approval_mode(config, policy)
    recordings = (
        Path(config.recordings_dir) if config.recordings_dir else state_dir / RECORDINGS_DIR
    )
    return SessionEndpoint(
        policy=policy.session_approval,
        backend=backend,
        requests=SessionRequests(state_dir, mode),
        send=send,
        open_tunnel=open_tunnel,
        copy=CustomerCopy(recordings, record_input=config.record_input),
        journal=Journal(state_dir / SESSIONS_JOURNAL_FILE),
        consent=consent,
    )


class EndpointOnFirstMessage:
    """The session endpoint of an agent without a backend, built on the first session
    message (``start``, ``on_message`` and ``close`` as ``SessionEndpoint``'s).

    Nothing is lost by waiting: without a backend the endpoint refuses every tunnel
    and remembers no request, and local approvals never count, so it has nothing to
    poll for before a message comes.
    """

    def __init__(self, build: Callable[[], SessionEndpoint]) -> None:
        self._build = build
        self._endpoint: SessionEndpoint | None = None

    @property
    def built(self) -> bool:
        """Whether a session message has come (and the endpoint was built)."""
        return self._endpoint is not None

    def start(self) -> None:
        """Nothing to start before the first message."""

    def on_message(self, message: agent_pb2.CollectorMessage) -> None:
        """Build the endpoint (first time) and hand it ``message``; call on the loop."""
        if self._endpoint is None:
            self._endpoint = self._build()
            self._endpoint.start()
        self._endpoint.on_message(message)

    async def close(self) -> None:
        if self._endpoint is not None:
            await self._endpoint.close()
