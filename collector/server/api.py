"""Api service: what the ``aftercare`` CLI asks, answered within the caller's customer scope."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import grpc

from collector import limits
from collector.approvers import ApproverService
from collector.archive import Archive, ArchiveEntry
from collector.auth import Principal
from collector.auth_failures import AuthFailures
from collector.errors import InvalidRequest, NotFound, Unauthenticated
from collector.fleet import Fleet
from collector.gateway.recording import WatchHub, WatchItem, replay_then_follow
from collector.health import summarize
from collector.inspections.service import InspectionService
from collector.runs.service import RunService
from collector.runs.starting import start_run
from collector.server.approver_messages import approver_info
from collector.server.desk_api import DeskApi
from collector.server.history_messages import archive_entry, history_request, series_info
from collector.server.inspection_api import InspectionApi
from collector.server.paging import page
from collector.server.peer import authenticate_user
from collector.server.run_messages import playbook_info, run_event, run_info
from collector.server.session_messages import (
    recording_info,
    session_event_info,
    session_info,
    ssh_key_message,
)
from collector.server.ticket_messages import ticket_detail, ticket_message
from collector.sessions.keys import SshKeys
from collector.sessions.model import FINAL_SESSION_STATES
from collector.sessions.service import SessionService
from collector.shared_files import SharedFiles
from collector.store import AgentRecord, StoredSample
from collector.store.base import RecordingRecord
from collector.store.writer import StoreThread
from collector.tickets.service import ManualTicket, TicketActionRequest, TicketService
from proto import agent_pb2, api_pb2, api_pb2_grpc

RECORDING_CHUNK = 256 * 1024


class ApiServicer(InspectionApi, DeskApi, api_pb2_grpc.ApiServicer):
    """Read-only fleet queries for engineers, admins and customers."""

    def __init__(
        self,
        db: StoreThread,
        fleet: Fleet,
        tickets: TicketService,
        runs: RunService,
        sessions: SessionService,
        keys: SshKeys,
        watch_hub: WatchHub,
        data_dir: Path,
        gateway: Callable[[], tuple[str, str]],
        approvers: ApproverService,
        failures: AuthFailures,
        archive: Archive | None = None,
        inspections: InspectionService | None = None,
        files: SharedFiles | None = None,
        remote_watch: Callable[[str], Awaitable[AsyncIterator[WatchItem] | None]] | None = None,
    ) -> None:
        self._inspection_service = inspections
        self._files = files  # recordings made on other replicas (None: one process)
        # live sessions whose engineer is on another replica (None: one process)
        self._remote_watch = remote_watch
        self._failures = failures
        self._archive = archive or Archive(db)
        self._db = db
        self._fleet = fleet
        self._tickets = tickets
        self._runs = runs
        self._sessions = sessions
        self._keys = keys
        self._watch_hub = watch_hub
        self._data_dir = data_dir
        self._gateway = gateway  # () -> (HOST:PORT, host key line); ("", "") when off
        self._approvers = approvers

    async def WhoAmI(
        self, request: api_pb2.WhoAmIRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> api_pb2.WhoAmIResponse:
        who = await self._who(context)
        return api_pb2.WhoAmIResponse(user=who.name, role=who.role, customer=who.customer or "")

    async def ListAgents(
        self, request: api_pb2.ListAgentsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> api_pb2.ListAgentsResponse:
        who = await self._who(context)
        limits.text("customer", request.customer, limits.NAME)
        size = limits.page_size(request.page_size)
        offset = limits.page_token(request.page_token)
        customer = who.visible_customer(request.customer)
        agents = await self._db.call(self._db.store.list_agents, customer)
        listed, token = page(agents, offset, size, self._agent_info)
        return api_pb2.ListAgentsResponse(agents=listed, next_page_token=token)

    async def GetHost(
        self, request: api_pb2.GetHostRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> api_pb2.HostDetail:
        who = await self._who(context)
        agent = await self._find_host(who, request.host)
        latest = await self._db.call(self._db.store.latest, agent.agent_id)
        gaps = await self._db.call(self._db.store.gaps, agent.agent_id)
        sequences = await self._db.call(self._db.store.stored_sequences, agent.agent_id)
        detail = api_pb2.HostDetail(
            agent=self._agent_info(agent),
            batches_stored=len(sequences),
            gaps=[
                api_pb2.StoredGap(
                    first_lost_sequence=g.first_lost_sequence,
                    last_lost_sequence=g.last_lost_sequence,
                    lost_batches=g.lost_batches,
                    start_unix_ms=g.start_ms,
                    end_unix_ms=g.end_ms,
                    reason=g.reason,
                    reported_unix_ms=g.reported_ms,
                )
                for g in gaps
            ],
        )
        if latest is not None:
            detail.collected_unix_ms = latest.collected_ms
            detail.samples.extend(
                agent_pb2.Sample(name=s.name, labels=dict(s.labels), value=s.value)
                for s in latest.samples
            )
            detail.failures.extend(
                agent_pb2.CheckFailure(check=f.check, error=f.error) for f in latest.failures
            )
        return detail

    async def ListTickets(
        self, request: api_pb2.ListTicketsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> api_pb2.ListTicketsResponse:
        who = await self._who(context)
        states = limits.items("states", request.states, limits.LIST_FILTER_ITEMS, limits.NAME)
        limits.text("level", request.level, limits.NAME)
        limits.text("customer", request.customer, limits.NAME)
        size = limits.page_size(request.page_size)
        offset = limits.page_token(request.page_token)
        views = await self._tickets.list_tickets(
            who, states, request.level or None, request.customer or None, offset + size + 1
        )
        listed, token = page(views, offset, size, ticket_message)
        return api_pb2.ListTicketsResponse(tickets=listed, next_page_token=token)

    async def GetTicket(
        self, request: api_pb2.GetTicketRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> api_pb2.TicketDetail:
        who = await self._who(context)
        offset = limits.page_token(request.events_page_token)
        view = await self._tickets.get(who, request.id)
        similar = await self._tickets.similar(who, request.id) if offset == 0 else []
        return ticket_detail(view, offset, similar)

    async def CreateTicket(
        self, request: api_pb2.CreateTicketRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> api_pb2.TicketDetail:
        who = await self._who(context)
        limits.text("title", request.title, limits.TICKET_TITLE * 4)
        if len(request.title) > limits.TICKET_TITLE:
            raise InvalidRequest(
                f"title is {len(request.title)} characters; the limit is {limits.TICKET_TITLE}"
            )
        limits.text("description", request.description, limits.TICKET_DESCRIPTION)
        limits.text("level", request.level, limits.NAME)
        limits.text("customer", request.customer, limits.NAME)
        limits.text("kind", request.kind, limits.NAME)
        limits.text("urgency", request.urgency, limits.NAME)
        host = await self._find_host(who, request.host) if request.host else None
        ticket_id = await self._tickets.create(
            who,
            ManualTicket(
                title=request.title,
                description=request.description,
                level=request.level,
                customer=request.customer or (host.customer if host else ""),
                agent_id=host.agent_id if host else None,
                hostname=host.hostname if host else "",
                host_customer=host.customer if host else "",
                kind=request.kind or "fault",
                urgency=request.urgency,
            ),
        )
        return ticket_detail(await self._tickets.get(who, ticket_id))

    async def ActOnTicket(
        self, request: api_pb2.TicketAction, context: grpc.aio.ServicerContext[Any, Any]
    ) -> api_pb2.TicketDetail:
        who = await self._who(context)
        limits.text("action", request.action, limits.NAME)
        limits.text("text", request.text, limits.TICKET_TEXT)
        limits.text("assignee", request.assignee, limits.NAME)
        limits.text("via", request.via, limits.NAME)
        for name in ("cause", "actions", "prevention", "impact", "losses"):
            limits.text(name, getattr(request, name), limits.RESOLUTION_FIELD)
        action = TicketActionRequest(
            action=request.action,
            text=request.text,
            assignee=request.assignee,
            cause=request.cause,
            actions=request.actions,
            prevention=request.prevention,
            via=request.via,
            impact=request.impact,
            losses=request.losses,
        )
        await self._tickets.act(who, request.id, action)
        return ticket_detail(await self._tickets.get(who, request.id))

    async def GetTicketReport(
        self, request: api_pb2.TicketReportRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> api_pb2.TicketReport:
        who = await self._who(context)
        fmt = limits.text("format", request.format, limits.NAME) or "md"
        language = limits.text("language", request.language, limits.NAME) or "en"
        content = await self._tickets.report(who, request.id, fmt, language)
        return api_pb2.TicketReport(format=fmt, content=content)

    async def ListPlaybooks(
        self, request: api_pb2.ListPlaybooksRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> api_pb2.ListPlaybooksResponse:
        await self._who(context)
        size = limits.page_size(request.page_size)
        offset = limits.page_token(request.page_token)
        catalogue = self._runs.catalogue
        listed, token = page(self._runs.list_playbooks(), offset, size, playbook_info)
        return api_pb2.ListPlaybooksResponse(
            playbooks=listed,
            catalogue_version=catalogue.catalogue_version if catalogue else 0,
            expires_unix_ms=catalogue.expires_ms if catalogue else 0,
            next_page_token=token,
        )

    async def StartRun(
        self, request: api_pb2.StartRunRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> api_pb2.RunInfo:
        who = await self._who(context)
        who.require("engineer", "admin")
        limits.text("playbook", request.playbook, limits.NAME)
        limits.mapping("params", request.params, limits.RUN_PARAMS, limits.RUN_PARAM_VALUE)
        limits.text("reason", request.reason, limits.SESSION_REASON)
        agent = await self._find_host(who, request.host)
        run = await start_run(
            who,
            self._runs,
            self._tickets,
            agent,
            request.playbook,
            dict(request.params),
            request.ticket_id or None,
            request.reason.strip(),
        )
        return run_info(run)

    async def ListRuns(
        self, request: api_pb2.ListRunsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> api_pb2.ListRunsResponse:
        who = await self._who(context)
        size = limits.page_size(request.limit)
        offset = limits.page_token(request.page_token)
        agent_id = (await self._find_host(who, request.host)).agent_id if request.host else None
        runs = await self._runs.list_runs(who, agent_id, offset + size + 1)
        listed, token = page(runs, offset, size, run_info)
        return api_pb2.ListRunsResponse(runs=listed, next_page_token=token)

    async def GetRun(
        self, request: api_pb2.GetRunRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> api_pb2.RunDetail:
        who = await self._who(context)
        run = await self._runs.get(who, request.run_id)
        output, truncated = await self._runs.read_output(run.run_id)
        return api_pb2.RunDetail(
            run=run_info(run),
            result_json=json.dumps(dict(run.result), sort_keys=True),
            output=output,
            output_truncated=truncated,
        )

    async def ApproveRun(
        self, request: api_pb2.ApproveRunRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> api_pb2.RunInfo:
        who = await self._who(context)
        limits.text("run_id", request.run_id, limits.NAME)
        limits.blob("signed_approval", request.signed_approval, limits.SIGNED_APPROVAL)
        return run_info(await self._runs.approve(who, request.run_id, request.signed_approval))

    async def DenyRun(
        self, request: api_pb2.DenyRunRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> api_pb2.RunInfo:
        who = await self._who(context)
        limits.text("run_id", request.run_id, limits.NAME)
        limits.text("reason", request.reason, limits.SESSION_REASON)
        return run_info(await self._runs.deny(who, request.run_id, request.reason))

    async def FollowRun(
        self, request: api_pb2.GetRunRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[api_pb2.RunEvent]:
        who = await self._who(context)
        async for item in self._runs.follow(who, request.run_id):
            yield run_event(item)

    async def RequestSession(
        self, request: api_pb2.RequestSessionRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> api_pb2.SessionInfo:
        who = await self._who(context)
        limits.text("reason", request.reason, limits.SESSION_REASON)
        agent = await self._find_host(who, request.host)
        session = await self._sessions.request(
            who, agent, request.reason, request.duration_ms, request.ticket_id or None
        )
        return session_info(session)

    async def ListSessions(
        self, request: api_pb2.ListSessionsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> api_pb2.ListSessionsResponse:
        who = await self._who(context)
        size = limits.page_size(request.limit)
        offset = limits.page_token(request.page_token)
        sessions = await self._sessions.list_sessions(who, offset + size + 1)
        listed, token = page(sessions, offset, size, session_info)
        return api_pb2.ListSessionsResponse(sessions=listed, next_page_token=token)

    async def DecideSession(
        self, request: api_pb2.DecideSessionRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> api_pb2.SessionInfo:
        who = await self._who(context)
        limits.text("session_id", request.session_id, limits.NAME)
        limits.text("decision", request.decision, limits.NAME)
        limits.text("reason", request.reason, limits.SESSION_REASON)
        limits.number("until_unix_ms", request.until_unix_ms, 0, limits.MAX_UNIX_MS)
        limits.blob("signed_approval", request.signed_approval, limits.SIGNED_APPROVAL)
        if request.decision == "approve":
            until = request.until_unix_ms or None
            session = await self._sessions.approve(
                who, request.session_id, until, request.signed_approval
            )
        elif request.decision == "deny":
            session = await self._sessions.deny(who, request.session_id, request.reason)
        elif request.decision == "terminate":
            session = await self._sessions.terminate(who, request.session_id)
        else:
            raise InvalidRequest(f"unknown decision {request.decision!r}: approve, deny, terminate")
        return session_info(session)

    async def GetSession(
        self, request: api_pb2.GetSessionRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> api_pb2.SessionDetail:
        who = await self._who(context)
        offset = limits.page_token(request.events_page_token)
        session, events = await self._sessions.get(who, request.session_id)
        _, recordings = await self._sessions.recordings(who, request.session_id)
        detail = api_pb2.SessionDetail(
            session=session_info(session),
            recordings=[recording_info(r) for r in recordings],
            gateway=self._gateway()[0],
            gateway_host_key=self._gateway()[1],
        )
        budget = max(limits.PAGE_BYTES - detail.ByteSize(), 64 * 1024)
        listed, token = page(events, offset, limits.MAX_INT64, session_event_info, budget)
        detail.events.extend(listed)
        detail.next_events_page_token = token
        return detail

    async def GetRecording(
        self, request: api_pb2.GetRecordingRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[api_pb2.RecordingChunk]:
        who = await self._who(context)
        _, recordings = await self._sessions.recordings(who, request.session_id)
        part = request.part or 1
        chosen = [r for r in recordings if r.part == part]
        if not chosen:
            raise NotFound(
                f"session {request.session_id} has no recording part {part} "
                f"({len(recordings)} recorded; `aftercare session show` lists them)"
            )
        path = self._data_dir / chosen[0].path
        if self._files is not None and not path.exists():  # recorded on another replica
            shared = await self._files.read(path)
            if shared is None:
                raise NotFound(f"the recording file is missing on every replica: {path.name}")
            for start in range(0, len(shared), RECORDING_CHUNK):
                yield api_pb2.RecordingChunk(data=shared[start : start + RECORDING_CHUNK])
            return
        try:
            with path.open("rb") as file:
                while chunk := file.read(RECORDING_CHUNK):
                    yield api_pb2.RecordingChunk(data=chunk)
        except OSError as exc:
            raise NotFound(f"the recording file is missing: {exc}") from exc

    async def WatchSession(
        self, request: api_pb2.GetSessionRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[api_pb2.WatchEvent]:
        who = await self._who(context)
        session, _ = await self._sessions.recordings(who, request.session_id)  # visible?
        if self._remote_watch is not None and session.state not in FINAL_SESSION_STATES:
            remote = await self._remote_watch(request.session_id)
            if remote is not None:  # the engineer is connected through another replica
                async for item in remote:
                    yield api_pb2.WatchEvent(
                        part=item.part, time=item.time, type=item.type, data=item.data
                    )
                return

        async def load() -> tuple[list[RecordingRecord], bool]:
            session, recordings = await self._sessions.recordings(who, request.session_id)
            return recordings, session.state in FINAL_SESSION_STATES

        async for item in replay_then_follow(
            self._watch_hub, request.session_id, load, self._data_dir
        ):
            yield api_pb2.WatchEvent(part=item.part, time=item.time, type=item.type, data=item.data)

    async def AddSshKey(
        self, request: api_pb2.AddSshKeyRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> api_pb2.SshKey:
        who = await self._who(context)
        limits.text("public_key", request.public_key, limits.KEY_OR_CERTIFICATE)
        return ssh_key_message(await self._keys.add(who, request.public_key))

    async def ListSshKeys(
        self, request: api_pb2.ListSshKeysRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> api_pb2.ListSshKeysResponse:
        who = await self._who(context)
        size = limits.page_size(request.page_size)
        offset = limits.page_token(request.page_token)
        listed, token = page(await self._keys.list(who), offset, size, ssh_key_message)
        return api_pb2.ListSshKeysResponse(keys=listed, next_page_token=token)

    async def RemoveSshKey(
        self, request: api_pb2.RemoveSshKeyRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> api_pb2.SshKey:
        who = await self._who(context)
        return ssh_key_message(await self._keys.remove(who, request.fingerprint))

    async def AddApprover(
        self, request: api_pb2.AddApproverRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> api_pb2.ApproverInfo:
        who = await self._who(context)
        limits.blob("certificate", request.certificate, limits.KEY_OR_CERTIFICATE)
        return approver_info(await self._approvers.add(who, request.certificate))

    async def ListApprovers(
        self, request: api_pb2.ListApproversRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> api_pb2.ListApproversResponse:
        who = await self._who(context)
        limits.text("customer", request.customer, limits.NAME)
        size = limits.page_size(request.page_size)
        offset = limits.page_token(request.page_token)
        approvers = await self._approvers.list_approvers(who, request.customer or None)
        listed, token = page(approvers, offset, size, approver_info)
        return api_pb2.ListApproversResponse(approvers=listed, next_page_token=token)

    async def RevokeApprover(
        self, request: api_pb2.RevokeApproverRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> api_pb2.ApproverInfo:
        who = await self._who(context)
        limits.blob("revocation", request.revocation, limits.KEY_OR_CERTIFICATE)
        return approver_info(await self._approvers.revoke(who, request.revocation))

    # --- insp-history ---

    async def GetMetricHistory(
        self, request: api_pb2.MetricHistoryRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> api_pb2.MetricHistoryResponse:
        who = await self._who(context)
        query = history_request(request)
        agent = await self._find_host(who, request.host)
        series = await self._db.call(
            self._db.store.metric_history,
            agent.agent_id,
            [query.metric],
            query.since_ms,
            query.until_ms,
            query.labels,
            query.step_ms,
        )
        query.check_answer(series)
        return api_pb2.MetricHistoryResponse(
            agent_id=agent.agent_id,
            hostname=agent.hostname,
            since_unix_ms=query.since_ms,
            until_unix_ms=query.until_ms,
            step_ms=query.step_ms,
            series=[series_info(s) for s in series],
        )

    async def GetArchive(
        self, request: api_pb2.ArchiveRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> api_pb2.ArchiveResponse:
        who = await self._who(context)
        limits.number("since_unix_ms", request.since_unix_ms, 0, limits.MAX_UNIX_MS)
        size = limits.page_size(request.page_size)
        offset = limits.page_token(request.page_token)
        agent = await self._find_host(who, request.host)
        entries: list[ArchiveEntry] = await self._archive.timeline(agent, request.since_unix_ms)
        listed, token = page(entries, offset, size, archive_entry)
        return api_pb2.ArchiveResponse(
            agent_id=agent.agent_id,
            hostname=agent.hostname,
            customer=agent.customer,
            entries=listed,
            next_page_token=token,
        )

    async def _who(self, context: grpc.aio.ServicerContext[Any, Any]) -> Principal:
        """The caller; a refused token is counted and rate-limited per source."""
        self._failures.check("api_token", context.peer())
        try:
            return await authenticate_user(context, self._db)
        except Unauthenticated as exc:
            await self._failures.record("api_token", context.peer(), str(exc))
            raise

    async def _find_host(self, who: Principal, host: str) -> AgentRecord:
        """The agent named by id or hostname, among those ``who`` may see.

        Another customer's host is reported as not found, so its existence does not leak.
        """
        if not host:
            raise InvalidRequest("name a host: its hostname or agent id")
        limits.text("host", host, limits.NAME)
        agents = await self._db.call(self._db.store.list_agents, who.visible_customer(None))
        by_id = [a for a in agents if a.agent_id == host]
        matches = by_id or [a for a in agents if a.hostname == host]
        if not matches:
            raise NotFound(f"no host {host!r}; `aftercare agents` lists the hosts you can see")
        if len(matches) > 1:
            ids = ", ".join(a.agent_id for a in matches)
            raise InvalidRequest(
                f"{len(matches)} agents report hostname {host!r}; use an id: {ids}"
            )
        return matches[0]

    def _agent_info(self, agent: AgentRecord) -> api_pb2.AgentInfo:
        state = self._fleet.get(agent.agent_id)
        samples: Sequence[StoredSample] = state.samples if state else ()
        health = summarize(samples)
        last_seen = max(agent.last_seen_ms or 0, (state.last_seen_ms or 0) if state else 0)
        return api_pb2.AgentInfo(
            agent_id=agent.agent_id,
            customer=agent.customer,
            hostname=agent.hostname,
            connected=bool(state and state.connected),
            last_seen_unix_ms=last_seen,
            agent_version=agent.agent_version,
            revoked=agent.revoked_ms is not None,
            enrolled_unix_ms=agent.enrolled_ms,
            approval_root=agent.approval_root,
            health=api_pb2.HealthSummary(
                has_data=health.has_data,
                cpu_usage_ratio=health.cpu_usage_ratio,
                memory_used_ratio=health.memory_used_ratio,
                worst_filesystem=health.worst_filesystem,
                worst_filesystem_used_ratio=health.worst_filesystem_used_ratio,
            ),
        )
