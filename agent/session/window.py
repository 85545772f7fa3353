"""Whether this host lets a login in (``SessionOpen``), and until when.

Decision logic only (reading the local approval and, for a signed approval, the
consent memory): the host's policy (``[sessions] approval``), whether a backend is
configured, the access window the collector sent, and the customer's consent as
the policy counts it - a signed approval (``agent.consent``) whose window end caps
the window, an approval given on the host for this engineer whose end caps it too,
or, only where the customer wrote ``approval = "collector"``, the collector's word.
The agent ends the login at ``window_end`` on its own, whatever the collector does
afterwards.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from agent.consent.verify import ConsentVerifier
from agent.errors import ApprovalRefused
from agent.playbook.approvals import ApprovalBook
from agent.playbook.policy import SessionApprovalMode, accepts
from agent.session.requests import valid_session_id
from common.approval_format import SessionSubject
from proto import agent_pb2

__all__ = ["Admission", "admit", "iso_time", "window_ended"]


@dataclass(frozen=True)
class Admission:
    """The decision: ``refusal`` empty means admitted until ``window_end`` (Unix seconds)."""

    window_end: float
    refusal: str = ""
    approved: str = ""  # how the customer's consent was given (for the host's log)

    @property
    def admitted(self) -> bool:
        return not self.refusal


def admit(
    opening: agent_pb2.SessionOpen,
    policy: SessionApprovalMode,
    served: bool,
    approvals: ApprovalBook,
    consent: ConsentVerifier,
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
    try:
        until, approved = _consented_until(opening, policy, approvals, consent, now)
    except ApprovalRefused as exc:
        return Admission(window_end, str(exc))
    window_end = min(window_end, until)
    if now >= window_end:
        return Admission(window_end, window_ended(window_end))
    return Admission(window_end, approved=approved)


def _consented_until(
    opening: agent_pb2.SessionOpen,
    policy: SessionApprovalMode,
    approvals: ApprovalBook,
    consent: ConsentVerifier,
    now: float,
) -> tuple[float, str]:
    """Until when the customer consented to this login, and how; ApprovalRefused if not."""
    signed = bytes(opening.signed_approval)
    if accepts(policy, "collector") and not (signed and consent.root):
        return float("inf"), f"through the collector by {opening.approved_by} (trusted)"
    if accepts(policy, "signed") and (signed or not accepts(policy, "local")):
        subject = SessionSubject(opening.session_id, opening.engineer, 0)
        approval = consent.check(signed, subject)
        assert isinstance(approval.subject, SessionSubject)  # check() matched the kind
        until = min(approval.subject.window_end_ms, approval.expires_ms) / 1000
        return until, f"signed by {approval.approver} of {approval.customer}"
    local = approvals.approval(opening.session_id, now, binding=opening.engineer)
    if local is None:
        raise ApprovalRefused(
            "the host's policy requires approval on the host itself for engineer "
            f"{opening.engineer!r}; run `aftercare-agent approve-session {opening.session_id}` "
            "there"
        )
    return local.until, f"on the host by {local.by}"


def window_ended(window_end: float) -> str:
    """The reason given when the access window is over."""
    return f"access window ended at {iso_time(window_end)}"


def iso_time(seconds: float) -> str:
    """``2030-01-31T18:00:00Z`` (UTC, whole seconds)."""
    moment = dt.datetime.fromtimestamp(seconds, dt.UTC).replace(microsecond=0)
    return moment.isoformat().replace("+00:00", "Z")
