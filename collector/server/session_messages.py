"""Remote sessions to API messages."""

from __future__ import annotations

from collector.sessions.model import RemoteSession
from proto import api_pb2


def session_info(session: RemoteSession) -> api_pb2.SessionInfo:
    return api_pb2.SessionInfo(
        session_id=session.session_id,
        agent_id=session.agent_id,
        customer=session.customer,
        hostname=session.hostname,
        engineer=session.engineer,
        reason=session.reason,
        state=session.state,
        requested_unix_ms=session.requested_ms,
        pending_expires_unix_ms=session.pending_expires_ms,
        window_start_unix_ms=session.window_start_ms or 0,
        window_end_unix_ms=session.window_end_ms or 0,
        approved_by=session.approved_by or "",
        ticket_id=session.ticket_id or 0,
        end_reason=session.end_reason or "",
        deny_reason=session.deny_reason,
        requested_duration_ms=session.requested_duration_ms,
    )
