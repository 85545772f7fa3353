"""The exception tree of the agent's remote-session endpoint (``agent.session``).

Every class derives from ``agent.errors.AgentError``, so the CLI and the control
loop treat them like any other agent error. paramiko and OS errors are mapped to
these at the backend boundary with ``raise ... from exc``.

    AgentError                 (agent.errors)
    └── SessionError           base of the errors below
        ├── LoginFailed        the backend could not log in on this host; the message
        │                      is the reason sent to the collector in ``TunnelEnd``
        ├── ChannelRefused     one channel (shell, exec, subsystem) could not be opened;
        │                      the message becomes ``ChannelOpened.error``
        └── RequestError       ``approve-session``/``sessions``: an unknown or expired
                               request, a bad session id, an unreadable requests file
"""

from __future__ import annotations

from agent.errors import AgentError

__all__ = ["ChannelRefused", "LoginFailed", "RequestError", "SessionError"]


class SessionError(AgentError):
    """Base of the errors raised by the remote-session endpoint."""


class LoginFailed(SessionError):
    """The backend could not open a login on this host; the message says why and what to check."""


class ChannelRefused(SessionError):
    """A channel could not be opened; the message is sent as ``ChannelOpened.error``."""


class RequestError(SessionError):
    """A session request cannot be listed or approved on the host; the message says why."""
