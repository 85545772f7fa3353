"""The playbook run record and its states (pure: no gRPC, no SQL; the store keeps it)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

__all__ = [
    "FINISHED_RUN_STATES",
    "RUN_MODES",
    "RUN_STATES",
    "OutputPiece",
    "RunRecord",
    "RunState",
]

RunState = Literal[
    "pending",
    "sent",
    "waiting_approval",
    "running",
    "ok",
    "failed",
    "timed_out",
    "cancelled",
    "refused",
    "undeliverable",
]
RUN_STATES: tuple[RunState, ...] = get_args(RunState)
# A run in one of these states is over: its state never changes again.
FINISHED_RUN_STATES: frozenset[RunState] = frozenset(
    {"ok", "failed", "timed_out", "cancelled", "refused", "undeliverable"}
)
RUN_MODES: tuple[str, ...] = ("read-only", "mutating")


@dataclass(frozen=True)
class RunRecord:
    """One playbook run on one agent, from request to result.

    ``params`` hold secret values already masked by the caller. ``result`` is plain
    JSON (steps, exit codes, durations, truncation, redactions); the output itself
    lives in ``DATA_DIR/runs/RUN_ID.out``, described by ``output_bytes`` and
    ``output_sha256`` once the run is finished.
    """

    run_id: str  # e.g. "run-1a2b3c4d5e6f"
    agent_id: str
    customer: str
    hostname: str
    playbook: str
    version: str
    mode: str  # "read-only" | "mutating" (RUN_MODES)
    params: Mapping[str, str]
    requested_by: str
    requested_ms: int
    ticket_id: int | None = None
    state: RunState = "pending"
    message: str = ""
    updated_ms: int = 0
    finished_ms: int | None = None
    result: Mapping[str, Any] = field(default_factory=dict)
    output_bytes: int = 0
    output_sha256: str = ""
    approved_by: str | None = None
    playbook_digest: str = ""  # "sha256:HEX" of the playbook file sent to the host
    bound_params: Mapping[str, str] = field(default_factory=dict)  # secrets as sha256:HEX
    signed_approval: bytes | None = None  # the customer's bundle (approval + certificate)
    reason: str = ""  # why the engineer runs it (free text, may be empty)


@dataclass(frozen=True)
class OutputPiece:
    """Bytes of a run's stored output at a known place: ``data`` starts at byte
    ``offset`` and was produced by ``step``. A follower that counts bytes shows each
    one once, whichever replica the pieces come from."""

    run_id: str
    offset: int
    step: str
    data: bytes

    @property
    def end(self) -> int:
        """The offset just past ``data``."""
        return self.offset + len(self.data)
