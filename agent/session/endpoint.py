"""The agent's end of remote sessions: the collector's session messages, tunnels, approvals.

``SessionEndpoint.on_message`` takes the control stream's session messages:

* ``session_requested`` - remembered for ``aftercare-agent sessions`` and
  ``approve-session`` (``SessionRequests``);
* ``session_open`` - opens one Tunnel RPC (``open_tunnel``), attaches it, decides
  (``window.admit``: policy, local approval, window) and either serves it with a
  ``TunnelRelay`` until it ends or sends ``end{reason}`` and closes it;
* ``session_decided`` - the request was approved, denied or expired: no longer pending.
* ``session_close`` - ends every tunnel of that session at once with its reason,
  and forgets the session's pending request.

While running it polls (every second) for approvals given on the host of the
remembered requests and reports each one once with ``AgentMessage.session_approval``
- where the host's policy lets local approvals count (``local`` or ``either``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from agent.consent.verify import ConsentVerifier
from agent.journal import Journal
from agent.playbook.policy import SessionApprovalMode, accepts
from agent.session.backend import Backend
from agent.session.errors import RequestError
from agent.session.recording import CustomerCopy
from agent.session.requests import SessionRequests
from agent.session.tunnel import TunnelInfo, TunnelRelay, refuse_tunnel
from agent.session.tunnel_io import TunnelIO
from agent.session.window import admit
from common.clock import Clock
from proto import agent_pb2

__all__ = ["APPROVAL_POLL_SECONDS", "OpenTunnel", "SessionEndpoint"]

log = logging.getLogger(__name__)

APPROVAL_POLL_SECONDS = 1.0
STOP_TIMEOUT_SECONDS = 15.0

Send = Callable[[agent_pb2.AgentMessage], Awaitable[None]]
OpenTunnel = Callable[[], TunnelIO]  # a new Tunnel RPC; raises ConnectionError when offline


class SessionEndpoint:
    """Serves the remote sessions the collector asks for, as the host's policy allows."""

    def __init__(
        self,
        *,
        policy: SessionApprovalMode,
        backend: Backend | None,
        requests: SessionRequests,
        send: Send,
        open_tunnel: OpenTunnel,
        copy: CustomerCopy | None,
        journal: Journal,
        consent: ConsentVerifier,
        clock: Clock = time.time,
        poll_seconds: float = APPROVAL_POLL_SECONDS,
    ) -> None:
        self._policy = policy
        self._backend = backend
        self._requests = requests
        self._send = send
        self._open_tunnel = open_tunnel
        self._copy = copy
        self._journal = journal
        self._consent = consent
        self._clock = clock
        self._poll_seconds = poll_seconds
        self._relays: dict[str, TunnelRelay] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._poller: asyncio.Task[None] | None = None

    @property
    def approval_mode(self) -> str:
        """``Hello.session_approval``: the policy's mode, "disabled" when nothing serves."""
        return self._policy if self._backend is not None else "disabled"

    @property
    def local_approvals_count(self) -> bool:
        return accepts(self.approval_mode, "local")

    def start(self) -> None:
        """Start polling for local approvals (call on the running event loop)."""
        if self._poller is None:
            self._poller = asyncio.create_task(self._poll_approvals())

    def on_message(self, message: agent_pb2.CollectorMessage) -> None:
        """Dispatch a session message from the control stream (never blocks)."""
        kind = message.WhichOneof("kind")
        if kind == "session_requested":
            self._remember(message.session_requested)
        elif kind == "session_open":
            self._spawn(self._serve(message.session_open))
        elif kind == "session_decided":
            self._forget(message.session_decided.session_id)
        elif kind == "session_close":
            self.close_session(message.session_close.session_id, message.session_close.reason)

    def close_session(self, session_id: str, reason: str) -> int:
        """End every tunnel of ``session_id`` now; returns how many there were."""
        self._forget(session_id)
        relays = [r for r in self._relays.values() if r.info.session_id == session_id]
        for relay in relays:
            relay.end(reason or "the session was closed by the collector")
        return len(relays)

    def _forget(self, session_id: str) -> None:
        """The request is no longer pending (decided, or the session closed)."""
        try:
            self._requests.forget(session_id, self._clock())
        except RequestError as exc:
            log.error("cannot forget session request %s: %s", session_id, exc)

    async def close(self) -> None:
        """End every tunnel ("the agent is stopping") and stop polling."""
        if self._poller is not None:
            self._poller.cancel()
            await asyncio.gather(self._poller, return_exceptions=True)
        for relay in self._relays.values():
            relay.end("the agent on the host is stopping")
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=STOP_TIMEOUT_SECONDS)
            for task in pending:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

    # -- requests and local approvals ----------------------------------------------------

    def _remember(self, request: agent_pb2.SessionRequested) -> None:
        if self.approval_mode == "disabled":
            return
        try:
            if self._requests.remember(request, self._clock()) is not None:
                log.info(
                    "session %s requested by %s: %s",
                    request.session_id,
                    request.engineer,
                    request.reason,
                )
        except RequestError as exc:
            log.error("cannot remember session request %s: %s", request.session_id, exc)

    async def _poll_approvals(self) -> None:
        while True:
            if self.local_approvals_count:
                try:
                    await self.report_approvals()
                except RequestError as exc:
                    log.error("local session approvals: %s", exc)
                except Exception:  # the poll must outlive any one failure
                    log.exception("local session approvals: unexpected error")
            await asyncio.sleep(self._poll_seconds)

    async def report_approvals(self) -> int:
        """Send each new local approval of a pending request once; returns how many."""
        now = self._clock()
        sent = 0
        for request, approval in self._requests.unreported(now):
            message = agent_pb2.SessionApproval(
                session_id=request.session_id,
                approved_by=approval.by,
                until_unix_ms=int(approval.until * 1000),
            )
            await self._send(agent_pb2.AgentMessage(session_approval=message))
            self._requests.mark_reported(request.session_id, approval, now)
            self._journal.write(
                "approved_locally",
                session_id=request.session_id,
                approved_by=approval.by,
                until_unix_ms=message.until_unix_ms,
            )
            log.info("session %s approved on the host by %s", request.session_id, approval.by)
            sent += 1
        return sent

    # -- tunnels ----------------------------------------------------------------------

    def _spawn(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, opening: agent_pb2.SessionOpen) -> None:
        if opening.tunnel_id in self._relays:
            log.warning(
                "tunnel %s is already open; ignoring a second SessionOpen", opening.tunnel_id
            )
            return
        try:
            io = self._open_tunnel()
        except ConnectionError as exc:
            log.warning("session %s: cannot open a tunnel: %s", opening.session_id, exc)
            return
        try:
            attach = agent_pb2.TunnelAttach(
                tunnel_id=opening.tunnel_id, session_id=opening.session_id
            )
            await io.write(agent_pb2.TunnelFrame(attach=attach))
        except ConnectionError as exc:
            log.warning("session %s: the tunnel broke at once: %s", opening.session_id, exc)
            io.cancel()
            return
        admission = admit(
            opening,
            self._policy,
            self._backend is not None,
            self._requests.approvals,
            self._consent,
            self._clock(),
        )
        if not admission.admitted or self._backend is None:
            log.warning("session %s refused: %s", opening.session_id, admission.refusal)
            self._journal.write(
                "tunnel_refused",
                session_id=opening.session_id,
                tunnel_id=opening.tunnel_id,
                engineer=opening.engineer,
                reason=admission.refusal,
            )
            await refuse_tunnel(io, admission.refusal)
            return
        info = TunnelInfo(
            session_id=opening.session_id,
            tunnel_id=opening.tunnel_id,
            engineer=opening.engineer,
            approved_by=admission.approved,
            window_end=admission.window_end,
        )
        relay = TunnelRelay(io, info, self._backend, self._copy, self._journal, self._clock)
        self._relays[opening.tunnel_id] = relay
        log.info(
            "session %s: %s logging in through %s",
            info.session_id,
            info.engineer,
            self._backend.description,
        )
        try:
            await relay.serve()
        finally:
            with contextlib.suppress(KeyError):
                del self._relays[opening.tunnel_id]
