"""A run request's verification in a short-lived child process (``python -m``).

Verifying a request needs the cryptography library (the manifest's Ed25519 signature)
and PyYAML (parsing the playbook): about 12 MiB that would otherwise stay resident in
the long-running agent after its first playbook run. So the agent hands the request's
exact bytes to ``python -m agent.playbook.verify_child`` and gets back the verified
playbook as JSON - data only, rebuilt here field by field into ``playbooks.model``
objects; nothing the child says is executed or unpickled.

Contract: ``verify_in_child`` raises ``PlaybookError`` with the child's message when the
request is refused, and ``PlaybookError`` too when the child could not answer (crashed,
timed out, printed nonsense): the run is refused either way, nothing runs.
"""

from __future__ import annotations

import asyncio
import base64
import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any, NamedTuple

from playbooks.errors import PlaybookError
from playbooks.model import BuiltinStep, ExecStep, Parameter, Playbook, Step

CHILD_TIMEOUT_SECONDS = 60.0


class Verified(NamedTuple):
    """What a verified request yields: the playbook, its parameter values, the versions."""

    playbook: Playbook
    values: dict[str, str | int]
    catalogue_version: int


async def verify_in_child(
    *,
    manifest: bytes,
    signature: bytes,
    name: str,
    playbook_yaml: bytes,
    params: Mapping[str, str],
    trusted_keys: Sequence[bytes],
    seen: Mapping[str, Any],
) -> Verified:
    """Signature, expiry, downgrade, digest, parameters - checked in a child process.

    ``seen`` is the agent's record of accepted versions (``catalogue_version``,
    ``versions``). Raises PlaybookError.
    """
    request = {
        "manifest": _b64(manifest),
        "signature": _b64(signature),
        "name": name,
        "playbook_yaml": _b64(playbook_yaml),
        "params": dict(params),
        "trusted_keys": [_b64(key) for key in trusted_keys],
        "seen": dict(seen),
    }
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "agent.playbook.verify_child",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(
            child.communicate(json.dumps(request).encode()), CHILD_TIMEOUT_SECONDS
        )
    except TimeoutError:
        child.kill()
        await child.wait()
        raise PlaybookError(
            f"verification did not finish within {CHILD_TIMEOUT_SECONDS:.0f}s; nothing ran"
        ) from None
    try:
        answer = json.loads(out)
        if answer["ok"]:
            return Verified(
                playbook_from_json(answer["playbook"]),
                dict(answer["values"]),
                int(answer["catalogue_version"]),
            )
        message = str(answer["error"])
    except (ValueError, KeyError, TypeError) as exc:
        detail = err.decode(errors="replace").strip().splitlines()[-1:] or [repr(exc)]
        raise PlaybookError(
            f"verification failed in its child process (exit {child.returncode}: "
            f"{detail[0]}); nothing ran"
        ) from exc
    raise PlaybookError(message)


def playbook_to_json(playbook: Playbook) -> dict[str, Any]:
    """A playbook as JSON data; steps carry ``"kind"``: ``"exec"`` or ``"builtin"``."""
    data = asdict(playbook)
    data["steps"] = [
        {"kind": "exec" if isinstance(step, ExecStep) else "builtin", **asdict(step)}
        for step in playbook.steps
    ]
    return data


def playbook_from_json(data: Mapping[str, Any]) -> Playbook:
    """The inverse of ``playbook_to_json``. Raises KeyError/TypeError on other data."""
    return Playbook(
        name=data["name"],
        version=data["version"],
        description=data["description"],
        mode=data["mode"],
        parameters=tuple(
            Parameter(**{**p, "choices": tuple(p["choices"])}) for p in data["parameters"]
        ),
        steps=tuple(_step(step) for step in data["steps"]),
        redact=tuple(data["redact"]),
        timeout_seconds=data["timeout_seconds"],
        collects=data["collects"],
        needs=data["needs"],
    )


def _step(data: Mapping[str, Any]) -> Step:
    fields = {k: v for k, v in data.items() if k != "kind"}
    if data["kind"] == "exec":
        return ExecStep(**{**fields, "argv": tuple(fields["argv"]), "env": dict(fields["env"])})
    if data["kind"] == "builtin":
        return BuiltinStep(**{**fields, "args": dict(fields["args"])})
    raise TypeError(f"unknown step kind {data['kind']!r}")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _verify(request: Mapping[str, Any]) -> dict[str, Any]:
    """The child's work: the same checks, in the same order, as ever."""
    from playbooks.params import validate_params
    from playbooks.verify import verify_manifest, verify_playbook

    seen = request["seen"]
    manifest = verify_manifest(
        base64.b64decode(request["manifest"]),
        base64.b64decode(request["signature"]),
        [base64.b64decode(key) for key in request["trusted_keys"]],
        now=datetime.now(UTC),
        min_catalogue_version=seen.get("catalogue_version"),
        pinned_versions=seen.get("versions", {}),
    )
    playbook = verify_playbook(
        manifest, request["name"], base64.b64decode(request["playbook_yaml"])
    )
    values = validate_params(playbook, dict(request["params"]))
    return {
        "ok": True,
        "playbook": playbook_to_json(playbook),
        "values": values,
        "catalogue_version": manifest.catalogue_version,
    }


def main() -> int:
    """Read one request (JSON) on stdin, print the answer (JSON) on stdout."""
    request = json.loads(sys.stdin.buffer.read())
    try:
        answer = _verify(request)
    except PlaybookError as exc:
        answer = {"ok": False, "error": str(exc)}
    sys.stdout.write(json.dumps(answer))
    return 0


if __name__ == "__main__":
    sys.exit(main())
