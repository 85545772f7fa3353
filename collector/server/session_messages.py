"""Remote sessions, their timelines, recordings and SSH keys to API messages."""

from __future__ import annotations

import json

from collector.sessions.model import RemoteSession, SessionEvent
from collector.store.base import RecordingRecord, SshKeyRecord
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


def session_event_info(event: SessionEvent) -> api_pb2.SessionEventInfo:
    return api_pb2.SessionEventInfo(
        at_unix_ms=event.at_ms,
        actor=event.actor,
        kind=event.kind,
        details_json=json.dumps(dict(event.details), sort_keys=True),
    )


def recording_info(record: RecordingRecord) -> api_pb2.RecordingInfo:
    return api_pb2.RecordingInfo(
        part=record.part,
        kind=record.kind,
        command=record.command,
        started_unix_ms=record.started_ms,
        ended_unix_ms=record.ended_ms or 0,
        size_bytes=record.size_bytes,
        sha256=record.sha256,
        input_recorded=record.input_recorded,
    )


def ssh_key_message(key: SshKeyRecord) -> api_pb2.SshKey:
    return api_pb2.SshKey(
        fingerprint=key.fingerprint,
        key_type=key.key_type,
        comment=key.comment,
        user=key.user,
        added_unix_ms=key.added_ms,
    )
