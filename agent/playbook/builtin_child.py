"""Builtin steps in a short-lived child process (``python -m agent.playbook.builtin_child``).

The builtin functions (``agent.playbook.builtins``) need psutil and a dozen modules of
their own: about 1.5 MiB that would stay resident in the long-running agent after its
first playbook run (issue 17). So the executor's default registry is
``child_builtins()``: each entry sends its function's name, arguments and time left to
a child that calls the real function and answers with its output - data only, as JSON;
nothing the child says is executed. When the child exits, its memory goes back to the
operating system.

Contract (that of a builtin, ``fn(deadline, **args) -> bytes``): the output bytes, or
BuiltinArgumentError / BuiltinError with the function's own message; any other failure
of the function, or of the child (crashed, killed, printed nonsense), is a
BuiltinError saying so. A child still running ``CHILD_GRACE_SECONDS`` after the
deadline is killed (the executor has by then reported the step as timed out).
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from agent.playbook.errors import BuiltinArgumentError, BuiltinError

__all__ = ["CHILD_GRACE_SECONDS", "child_builtin", "child_builtins", "main"]

CHILD_GRACE_SECONDS = 10.0
"""Beyond the deadline: the child's start-up (imports) and writing its answer."""


def child_builtins(names: frozenset[str] | None = None) -> dict[str, Callable[..., bytes]]:
    """The executor's builtin registry: every builtin (or ``names``), each in a child."""
    if names is None:
        from playbooks.builtins import BUILTIN_FUNCTIONS  # names only: no psutil

        names = BUILTIN_FUNCTIONS
    return {name: child_builtin(name) for name in sorted(names)}


def child_builtin(name: str) -> Callable[..., bytes]:
    """``fn(deadline, **args)`` running builtin ``name`` in a child process.

    Its arguments are checked in the child, against the function itself (a wrong
    one is a BuiltinArgumentError). Blocks until the child answers: call it from a
    worker thread, as the executor does.
    """

    def call(deadline: float, /, **args: str | int) -> bytes:
        return _call_in_child(name, deadline, args)

    call.__name__ = call.__qualname__ = name
    return call


def _call_in_child(name: str, deadline: float, args: dict[str, str | int]) -> bytes:
    remaining = max(0.0, deadline - time.monotonic())
    request = json.dumps({"function": name, "args": args, "seconds": remaining})
    try:
        child = subprocess.run(
            [sys.executable, "-m", "agent.playbook.builtin_child"],
            input=request.encode(),
            capture_output=True,
            timeout=remaining + CHILD_GRACE_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise BuiltinError(
            f"did not finish within {remaining + CHILD_GRACE_SECONDS:.0f}s; its process was killed"
        ) from None
    return _answer(child)


def _answer(child: subprocess.CompletedProcess[bytes]) -> bytes:
    """The output in the child's answer, or the error it reports, raised."""
    try:
        answer = json.loads(child.stdout)
        if answer["ok"]:
            return base64.b64decode(answer["output"], validate=True)
        kind, message = str(answer["kind"]), str(answer["error"])
    except (ValueError, KeyError, TypeError) as exc:
        detail = child.stderr.decode(errors="replace").strip().splitlines()[-1:] or [repr(exc)]
        raise BuiltinError(
            f"failed in its child process (exit {child.returncode}: {detail[0]})"
        ) from exc
    if kind == "arguments":
        raise BuiltinArgumentError(message)
    if kind == "builtin":
        raise BuiltinError(message)
    raise BuiltinError(f"failed: {message}")


def run_request(request: dict[str, Any]) -> dict[str, Any]:
    """The child's work: call the builtin the request names; the answer as JSON data."""
    import inspect

    from agent.playbook.builtins import default_builtins

    functions = default_builtins()
    function = functions.get(str(request["function"]))
    if function is None:
        return {"ok": False, "kind": "arguments", "error": f"unknown: {request['function']!r}"}
    deadline = time.monotonic() + float(request["seconds"])
    args = dict(request["args"])
    try:
        inspect.signature(function).bind(deadline, **args)
    except TypeError as exc:
        return {"ok": False, "kind": "arguments", "error": f"invalid arguments: {exc}"}
    try:
        output = function(deadline, **args)
    except BuiltinArgumentError as exc:
        return {"ok": False, "kind": "arguments", "error": str(exc)}
    except BuiltinError as exc:
        return {"ok": False, "kind": "builtin", "error": str(exc)}
    except Exception as exc:  # reported like a crash in the agent's own thread was
        return {"ok": False, "kind": "other", "error": f"{type(exc).__name__}: {exc}"}
    if isinstance(output, str):
        output = output.encode("utf-8", "surrogateescape")
    if not isinstance(output, bytes):
        return {"ok": False, "kind": "other", "error": f"returned {type(output).__name__}"}
    return {"ok": True, "output": base64.b64encode(output).decode("ascii")}


def main() -> int:
    """Read one request (JSON) on stdin, print the answer (JSON) on stdout."""
    answer = run_request(json.loads(sys.stdin.buffer.read()))
    sys.stdout.write(json.dumps(answer))
    return 0


if __name__ == "__main__":
    sys.exit(main())
