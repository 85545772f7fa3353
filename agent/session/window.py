"""Whether this host lets a login in (``SessionOpen``), and until when.

Pure decision logic (no I/O beyond reading the local approval): the host's policy
(``[sessions] approval``), whether a backend is configured, the access window the
collector sent, and - where the policy says ``local`` - the approval given on the
host, whose end also caps the window. The agent ends the login at ``window_end``
on its own, whatever the collector does afterwards.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from agent.playbook.approvals import ApprovalBook
from agent.playbook.policy import SessionApprovalMode
from agent.session.requests import valid_session_id
from proto import agent_pb2

__all__ = ["Admission", "admit", "iso_time", "window_ended"]


@dataclass(frozen=True)
class Admission:
    """The decision: ``refusal`` empty means admitted until ``window_end`` (Unix seconds)."""

    window_end: float
    refusal: str = ""

    @property
    def admitted(self) -> bool:
        return not self.refusal


def admit(
    opening: agent_pb2.SessionOpen,
    policy: SessionApprovalMode,
    served: bool,
    approvals: ApprovalBook,
    now: float,
) -> Admission:
    """Decide on ``opening`` at ``now`` (Unix seconds)."""
    window_end = opening.window_end_unix_ms / 1000
    session_id = opening.session_id
    if not (valid_session_id(session_id) and valid_session_id(opening.tunnel_id)):
        return Admission(window_end, "invalid session or tunnel id")
    if not served:
        return Admission(
            window_end,
            'remote sessions are not served on this host (sessions.backend = "none" in the '
            "agent's config)",
        )
    if policy == "disabled":
        return Admission(
            window_end,
            'the host\'s policy does not allow remote sessions ([sessions] approval = "disabled")',
        )
    if opening.window_end_unix_ms <= 0:
        return Admission(window_end, "the collector sent no access window")
    if policy == "local":
        approval = approvals.approval(session_id, now)
        if approval is None:
            return Admission(
                window_end,
                "the host's policy requires approval on the host itself; run "
                f"`aftercare-agent approve-session {session_id}` there",
            )
        window_end = min(window_end, approval.until)
    if now >= window_end:
        return Admission(window_end, window_ended(window_end))
    return Admission(window_end)


def window_ended(window_end: float) -> str:
    """The reason given when the access window is over."""
    return f"access window ended at {iso_time(window_end)}"


def iso_time(seconds: float) -> str:
    """``2030-01-31T18:00:00Z`` (UTC, whole seconds)."""
    moment = dt.datetime.fromtimestamp(seconds, dt.UTC).replace(microsecond=0)
    return moment.isoformat().replace("+00:00", "Z")
