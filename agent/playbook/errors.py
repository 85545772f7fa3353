"""The exception tree of the agent's playbook runner (``agent.playbook``).

Every class derives from ``agent.errors.AgentError``, so the agent's CLI and control
loop treat them like any other agent error. Third-party and OS errors are mapped to
these at the boundary with ``raise ... from exc``.

    AgentError                     (agent.errors)
    ├── ConfigError                (agent.errors)
    │   └── PolicyError            the customer's policy file is unreadable or invalid;
    │                              the message names the file and the dotted key
    └── PlaybookRunError           base of the errors below
        ├── ExecutorBusy           too many runs are running and waiting already
        ├── RedactPatternError     a playbook ``redact`` regex does not compile
        ├── ApprovalError          a local approval cannot be recorded (bad run id,
        │                          unwritable approvals directory)
        └── BuiltinError           a builtin function could not do its work; the
            │                      message becomes the step's ``error``
            └── BuiltinArgumentError   an argument has the wrong type or value

Step failures (a program that exits non-zero, times out, is not installed) are not
exceptions: the executor reports them in ``StepResult``.
"""

from __future__ import annotations

from pathlib import Path

from agent.errors import AgentError, ConfigError

__all__ = [
    "ApprovalError",
    "BuiltinArgumentError",
    "BuiltinError",
    "ExecutorBusy",
    "PlaybookRunError",
    "PolicyError",
    "RedactPatternError",
]


class PolicyError(ConfigError):
    """The customer's policy file is invalid; reads ``"<path>: <key>: <problem>"``."""

    def in_file(self, path: Path | None) -> PolicyError:
        """The same error, attributed to the policy file ``path``."""
        return PolicyError(self.problem, path=path, key=self.key)


class PlaybookRunError(AgentError):
    """Base of the errors raised by the playbook runner."""


class ExecutorBusy(PlaybookRunError):
    """The run was refused: ``max_concurrent_runs`` are running and the queue is full."""


class RedactPatternError(PlaybookRunError):
    """A playbook's ``redact`` regular expression does not compile as a bytes pattern."""


class ApprovalError(PlaybookRunError):
    """A local approval cannot be recorded or read (bad run id, unwritable directory)."""


class BuiltinError(PlaybookRunError):
    """A builtin function failed; the message is reported as the step's error."""


class BuiltinArgumentError(BuiltinError):
    """A builtin function was called with an argument of the wrong type or value."""
