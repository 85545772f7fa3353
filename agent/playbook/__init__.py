"""The agent's playbook runner: executes signed, policy-allowed playbooks on this host.

The control stream (agent/stream.py) verifies a run request with the ``playbooks``
package, asks ``Policy.decide`` (and, for approvals given on the host, the
``ApprovalBook``), renders the steps into ``RenderedExec`` / ``RenderedBuiltin`` and
hands them to ``Executor.run``, which streams redacted ``OutputChunk`` values and
returns a ``RunResult``. Modules, one concern each:

    executor    runs steps in order: timeouts, cancel, results, concurrency limit
    process     a step's environment, user switch and process group
    output      a step's pipes, redaction per stream, output cap, ordered delivery
    builtins    the read-only builtin functions (imported lazily: it needs psutil)
    redact      secret redaction applied to output before it leaves the host
    redact_rules  the built-in secret rules: keys, program options, token formats
    policy      the customer's policy file and its decisions
    approvals   approvals given on the host (``aftercare-agent approve``)
    errors      the package's exception tree

The names below are loaded on first use (PEP 562 ``__getattr__``): importing
``agent.playbook.policy`` at start-up does not load the executor, its output and
process modules or the redaction rules, which stay out of the agent's memory until
a run needs them (issue 17, the agent's footprint).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agent.playbook.approvals import ApprovalBook
    from agent.playbook.errors import (
        ApprovalError,
        BuiltinArgumentError,
        BuiltinError,
        ExecutorBusy,
        PlaybookRunError,
        PolicyError,
        RedactPatternError,
    )
    from agent.playbook.executor import (
        BuiltinFn,
        Executor,
        OutputChunk,
        RenderedBuiltin,
        RenderedExec,
        RenderedStep,
        RunResult,
        StepResult,
        truncation_marker,
    )
    from agent.playbook.policy import DEFAULT_POLICY_PATH, Decision, Policy, load_policy
    from agent.playbook.redact import Redactor, secret_values

_HOME = {
    "ApprovalBook": "approvals",
    "ApprovalError": "errors",
    "BuiltinArgumentError": "errors",
    "BuiltinError": "errors",
    "ExecutorBusy": "errors",
    "PlaybookRunError": "errors",
    "PolicyError": "errors",
    "RedactPatternError": "errors",
    "BuiltinFn": "executor",
    "Executor": "executor",
    "OutputChunk": "executor",
    "RenderedBuiltin": "executor",
    "RenderedExec": "executor",
    "RenderedStep": "executor",
    "RunResult": "executor",
    "StepResult": "executor",
    "truncation_marker": "executor",
    "DEFAULT_POLICY_PATH": "policy",
    "Decision": "policy",
    "Policy": "policy",
    "load_policy": "policy",
    "Redactor": "redact",
    "secret_values": "redact",
}


def __getattr__(name: str) -> Any:
    """The exported ``name`` from its module, imported on first use."""
    module = _HOME.get(name)
    if module is None:
        raise AttributeError(f"module 'agent.playbook' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"agent.playbook.{module}"), name)
    globals()[name] = value
    return value


__all__ = [
    "DEFAULT_POLICY_PATH",
    "ApprovalBook",
    "ApprovalError",
    "BuiltinArgumentError",
    "BuiltinError",
    "BuiltinFn",
    "Decision",
    "Executor",
    "ExecutorBusy",
    "OutputChunk",
    "PlaybookRunError",
    "Policy",
    "PolicyError",
    "RedactPatternError",
    "Redactor",
    "RenderedBuiltin",
    "RenderedExec",
    "RenderedStep",
    "RunResult",
    "StepResult",
    "load_policy",
    "secret_values",
    "truncation_marker",
]
