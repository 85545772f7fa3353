"""Run rows: input checks and the mapping between ``RunRecord`` and table rows.

Backend-neutral (no driver imports), so the SQLite and PostgreSQL backends store runs
identically. Column names are the ``RunRecord`` field names, so a field added to the
record needs a migration adding its column (queries name them all). Bad input becomes
``InvalidRequest`` before any SQL runs; a row the code cannot read back (unknown state,
unreadable JSON) becomes ``StoreError``: the database is corrupt.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import fields, replace
from typing import Any

from collector.audit import canonical_json
from collector.errors import InvalidRequest
from collector.store.base import (
    FINISHED_RUN_STATES,
    RUN_MODES,
    RUN_STATES,
    RunRecord,
    RunState,
)
from collector.store.row_checks import decode_choice, decode_json

__all__ = [
    "RUN_COLUMNS",
    "check_limit",
    "new_run_values",
    "run_from_row",
    "run_update_values",
]

RUN_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(RunRecord))
_JSON_COLUMNS = ("params", "result", "bound_params")


# -- input (InvalidRequest) ------------------------------------------------------------


def new_run_values(run: RunRecord) -> tuple[RunRecord, tuple[Any, ...]]:
    """The run as it will be stored (``updated_ms`` and ``finished_ms`` defaulted) and
    its values in ``RUN_COLUMNS`` order, after checking them."""
    where = f"run {run.run_id!r}"
    for name in ("run_id", "agent_id", "customer", "playbook", "requested_by"):
        _check_text(where, name, getattr(run, name))
    _check_state(where, run.state)
    if not isinstance(run.reason, str):
        raise InvalidRequest(f"{where}: reason: expected a string, got {run.reason!r}")
    if run.mode not in RUN_MODES:
        raise InvalidRequest(f"{where}: mode {run.mode!r} is not one of {', '.join(RUN_MODES)}")
    params_json = _params_json(where, run.params)
    bound_json = _params_json(where, run.bound_params, "bound_params")
    result_json = _result_json(where, run.result)
    _check_output_bytes(where, run.output_bytes)
    updated_ms = run.updated_ms or run.requested_ms
    finished_ms = run.finished_ms
    if run.state in FINISHED_RUN_STATES:
        finished_ms = updated_ms if finished_ms is None else finished_ms
    elif finished_ms is not None:
        raise InvalidRequest(f"{where}: finished_ms given, but state {run.state!r} is unfinished")
    stored = replace(
        run,
        updated_ms=updated_ms,
        finished_ms=finished_ms,
        params=json.loads(params_json),
        bound_params=json.loads(bound_json),
        result=json.loads(result_json),
    )
    encoded = {"params": params_json, "result": result_json, "bound_params": bound_json}
    return stored, tuple(encoded.get(c, getattr(stored, c)) for c in RUN_COLUMNS)


def run_update_values(
    run_id: str,
    current_state: RunState,
    *,
    state: RunState | None,
    message: str | None,
    at_ms: int,
    finished_ms: int | None,
    result: Mapping[str, Any] | None,
    output_bytes: int | None,
    output_sha256: str | None,
    approved_by: str | None,
    signed_approval: bytes | None = None,
) -> dict[str, Any]:
    """Column values to set for an ``update_run`` of a run now in ``current_state``
    (which must not be finished), after checking them."""
    where = f"run {run_id!r}"
    values: dict[str, Any] = {}
    if state is not None:
        _check_state(where, state)
        values["state"] = state
    new_state = current_state if state is None else state
    if new_state in FINISHED_RUN_STATES:
        values["finished_ms"] = at_ms if finished_ms is None else finished_ms
    elif finished_ms is not None:
        raise InvalidRequest(f"{where}: finished_ms given, but state {new_state!r} is unfinished")
    if message is not None:
        values["message"] = message
    if result is not None:
        values["result"] = _result_json(where, result)
    if output_bytes is not None:
        _check_output_bytes(where, output_bytes)
        values["output_bytes"] = output_bytes
    if output_sha256 is not None:
        values["output_sha256"] = output_sha256
    if approved_by is not None:
        values["approved_by"] = approved_by
    if signed_approval is not None:
        if not signed_approval:
            raise InvalidRequest(f"{where}: signed_approval must not be empty")
        values["signed_approval"] = bytes(signed_approval)
    values["updated_ms"] = at_ms
    return values


def check_limit(limit: int) -> None:
    """Check ``list_runs``' limit."""
    if limit < 1:
        raise InvalidRequest(f"limit must be at least 1, got {limit}")


def _check_text(where: str, name: str, value: object) -> None:
    if not isinstance(value, str) or not value:
        raise InvalidRequest(f"{where}: {name}: expected a non-empty string, got {value!r}")


def _check_state(where: str, state: object) -> None:
    if state not in RUN_STATES:
        raise InvalidRequest(f"{where}: state {state!r} is not one of {', '.join(RUN_STATES)}")


def _check_output_bytes(where: str, value: int) -> None:
    if value < 0:
        raise InvalidRequest(f"{where}: output_bytes cannot be negative, got {value}")


def _params_json(where: str, value: Mapping[str, str], what: str = "params") -> str:
    if not isinstance(value, Mapping):
        raise InvalidRequest(f"{where}: {what}: expected a mapping of strings to strings")
    for key, item in value.items():
        if not isinstance(key, str) or not isinstance(item, str):
            raise InvalidRequest(
                f"{where}: {what}: expected strings to strings, got {key!r}: {item!r}"
            )
    return canonical_json(dict(value))


def _result_json(where: str, value: Mapping[str, Any]) -> str:
    if not isinstance(value, Mapping):
        raise InvalidRequest(f"{where}: result: expected a mapping")
    try:
        return canonical_json(dict(value))
    except (TypeError, ValueError) as exc:
        raise InvalidRequest(f"{where}: result must be plain JSON data: {exc}") from exc


# -- output (StoreError: the row is corrupt) -------------------------------------------


def run_from_row(row: Sequence[Any]) -> RunRecord:
    """Decode a row selected with ``RUN_COLUMNS``."""
    values = dict(zip(RUN_COLUMNS, row, strict=True))
    where = f"run {values['run_id']!r}"
    decoded: dict[str, Any] = {c: decode_json(where, c, values[c]) for c in _JSON_COLUMNS}
    if values["signed_approval"] is not None:
        decoded["signed_approval"] = bytes(values["signed_approval"])
    return RunRecord(
        **{**values, **decoded, "state": decode_choice(where, "state", values["state"], RUN_STATES)}
    )
