"""Playbooks and runs to API messages (the only place runs meet protobuf)."""

from __future__ import annotations

from typing import Any

from collector.runs.model import OutputPiece, RunRecord
from playbooks.model import Playbook
from proto import agent_pb2, api_pb2


def playbook_info(playbook: Playbook) -> api_pb2.PlaybookInfo:
    return api_pb2.PlaybookInfo(
        name=playbook.name,
        version=playbook.version,
        mode=playbook.mode,
        description=playbook.description,
        parameters=[
            api_pb2.PlaybookParameter(
                name=p.name,
                type=p.type,
                description=p.description,
                required=p.required,
                default="" if p.default is None else str(p.default),
                choices=list(p.choices),
                pattern=p.pattern or "",
                secret=p.secret,
            )
            for p in playbook.parameters
        ],
    )


def run_info(run: RunRecord) -> api_pb2.RunInfo:
    return api_pb2.RunInfo(
        run_id=run.run_id,
        playbook=run.playbook,
        version=run.version,
        agent_id=run.agent_id,
        hostname=run.hostname,
        customer=run.customer,
        state=run.state,
        requested_by=run.requested_by,
        requested_unix_ms=run.requested_ms,
        finished_unix_ms=run.finished_ms or 0,
        ticket_id=run.ticket_id or 0,
        params=dict(run.params),
        message=run.message,
        mode=run.mode,
        playbook_digest=run.playbook_digest,
        bound_params=dict(run.bound_params),
        reason=run.reason,
    )


def run_event(item: Any) -> api_pb2.RunEvent:
    """A follower item (a RunRecord, an agent RunOutput or an OutputPiece) as a RunEvent."""
    if isinstance(item, agent_pb2.RunOutput):
        return api_pb2.RunEvent(output=item)
    if isinstance(item, OutputPiece):  # relayed from the agent's replica
        output = agent_pb2.RunOutput(run_id=item.run_id, step=item.step, data=item.data)
        return api_pb2.RunEvent(output=output)
    return api_pb2.RunEvent(info=run_info(item))
