"""Builtin steps in a child process: the function's output or its error, as in the agent."""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from agent.playbook import builtin_child
from agent.playbook.builtin_child import child_builtin, child_builtins, run_request
from agent.playbook.errors import BuiltinArgumentError, BuiltinError
from playbooks.builtins import BUILTIN_FUNCTIONS


def test_every_builtin_of_the_contract_has_a_child_entry() -> None:
    assert set(child_builtins()) == set(BUILTIN_FUNCTIONS)


def test_the_child_returns_the_functions_output() -> None:
    output = child_builtin("pressure_stall")(time.monotonic() + 20)
    assert output.startswith(b"cpu:"), output[:200]


def test_a_wrong_argument_is_an_argument_error_from_the_child() -> None:
    with pytest.raises(BuiltinArgumentError, match="bogus"):
        child_builtin("top_processes")(time.monotonic() + 20, bogus=1)


def test_a_bad_argument_value_keeps_the_functions_message() -> None:
    answer = run_request({"function": "top_processes", "args": {"limit": -5}, "seconds": 5})
    assert answer["ok"] is False and answer["kind"] == "arguments", answer


def test_an_unknown_function_is_refused() -> None:
    answer = run_request({"function": "format_disk", "args": {}, "seconds": 5})
    assert answer == {"ok": False, "kind": "arguments", "error": "unknown: 'format_disk'"}


@pytest.mark.parametrize(
    ("stdout", "stderr", "error"),
    [
        (b"", b"Traceback ...\nMemoryError\n", "exit 1: MemoryError"),
        (b"not json", b"", "exit 1: "),
        (json.dumps({"ok": True, "output": "%%%"}).encode(), b"", "exit 1"),
    ],
)
def test_a_child_that_cannot_answer_fails_the_step_with_a_reason(
    stdout: bytes, stderr: bytes, error: str
) -> None:
    child = subprocess.CompletedProcess(["child"], 1, stdout, stderr)
    with pytest.raises(BuiltinError, match="failed in its child process") as caught:
        builtin_child._answer(child)
    assert error in str(caught.value)


@pytest.mark.parametrize(
    ("kind", "raised", "message"),
    [
        ("arguments", BuiltinArgumentError, "limit must be positive"),
        ("builtin", BuiltinError, "limit must be positive"),
        ("other", BuiltinError, "failed: limit must be positive"),
    ],
)
def test_the_childs_errors_come_back_as_the_agents(
    kind: str, raised: type[BuiltinError], message: str
) -> None:
    answer = {"ok": False, "kind": kind, "error": "limit must be positive"}
    child = subprocess.CompletedProcess(["child"], 0, json.dumps(answer).encode(), b"")
    with pytest.raises(raised) as caught:
        builtin_child._answer(child)
    assert str(caught.value) == message
    if kind != "arguments":
        assert not isinstance(caught.value, BuiltinArgumentError)


def test_a_child_past_its_deadline_is_killed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(builtin_child, "CHILD_GRACE_SECONDS", 0.0)
    started = time.monotonic()
    with pytest.raises(BuiltinError, match="was killed"):
        child_builtin("pressure_stall")(time.monotonic() + 0.001)
    assert time.monotonic() - started < 5
