"""Playbook runs in the portal: start one on a host, follow its output, deny it.

Handlers for ``/hosts/AGENT_ID/run`` (the start form, engineers and admins),
``/runs/ID`` (the run: what it does, approve or deny for the customer, its output and
result), ``/runs/ID/live`` (Server-Sent Events of its output until it finishes) and
``/runs/ID/deny``. Every action goes through the run service as the signed-in user
(``collector.runs.starting.start_run``: the API's role, tenancy and ticket checks;
``RunService.deny``), so the audit entries are the API's. Another customer's run or
host is 404 like an unknown one. The output shown is the redacted output the agent
sent, with escape sequences and control characters removed (``terminal.plain``).
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import json
from collections.abc import AsyncGenerator, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from collector import errors, limits
from collector.auth import Principal
from collector.portal import engineer
from collector.portal.request_state import FORM, SIGNED_IN, safe_headers
from collector.portal.terminal import plain
from collector.portal.views import Portal
from collector.runs.model import FINISHED_RUN_STATES, RUN_STATES, OutputPiece, RunRecord
from collector.runs.service import RunService
from collector.runs.starting import start_run
from collector.store.base import AgentRecord
from playbooks.model import BuiltinStep, Playbook

__all__ = ["MAX_FOLLOWS_PER_USER", "OUTPUT_SHOWN", "RunPages", "run_request_fields"]

Render = Callable[..., web.Response]

OUTPUT_SHOWN = 64 * 1024  # bytes of output the run page shows (the last ones)
READ_BYTES = 64 * 1024  # read from the output file at a time by a follower
MAX_FOLLOWS_PER_USER = 8  # live output streams open at once per user
KEEPALIVE_SECONDS = 15.0  # an SSE comment when nothing happened, so proxies keep it open
PARAM_PREFIX = "param."  # form fields of the playbook's declared parameters
_END = object()


@dataclass(frozen=True)
class RunRequestFields:
    """What the start form posted."""

    playbook: str
    params: dict[str, str]
    ticket_id: int | None
    reason: str


def run_request_fields(form: Mapping[str, Any]) -> RunRequestFields:
    """The start form's fields; InvalidRequest naming a bad one. Every ``param.NAME``
    field with a value is passed on: the catalogue (RunService) refuses unknown names
    and values outside their declaration; an empty optional one takes its default."""
    playbook = engineer.field(form, "playbook")
    if not playbook:
        raise errors.InvalidRequest("choose a playbook from the catalogue")
    raw = {
        str(key).removeprefix(PARAM_PREFIX): str(value)
        for key, value in form.items()
        if str(key).startswith(PARAM_PREFIX) and str(value) != ""
    }
    params = limits.mapping("params", raw, limits.RUN_PARAMS, limits.RUN_PARAM_VALUE)
    ticket = engineer.field(form, "ticket")
    if ticket and not (ticket.isdigit() and len(ticket) <= 18):
        raise errors.InvalidRequest("ticket must be a ticket number, or empty")
    return RunRequestFields(
        playbook, params, int(ticket) if ticket else None, engineer.field(form, "reason")
    )


class RunPages:
    """The run pages over the collector's run service (``portal.runs``)."""

    def __init__(self, portal: Portal, render: Render) -> None:
        self.portal = portal
        self.render = render
        self._follows: dict[asyncio.Task[Any], str] = {}  # live streams -> user

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/hosts/{agent_id}/run", self.form)
        app.router.add_post("/hosts/{agent_id}/run", self.start)
        app.router.add_get("/runs/{id}", self.page)
        app.router.add_get("/runs/{id}/live", self.live)
        app.router.add_post("/runs/{id}/deny", self.deny)
        app.on_shutdown.append(self.end_follows)

    # -- engineers: start ---------------------------------------------------------------

    async def form(self, request: web.Request) -> web.StreamResponse:
        """Pick a playbook (``?playbook=NAME``), then fill its declared parameters."""
        who = request[SIGNED_IN].principal
        who.require("engineer", "admin")
        agent = await self.portal.visible_host(who, request.match_info["agent_id"][:128])
        chosen = request.query.get("playbook", "")[:128]
        ticket = request.query.get("ticket", "")[:18]
        ticket = ticket if ticket.isdigit() else ""
        return await self._form_page(request, agent, chosen, {}, ticket, "", "")

    async def start(self, request: web.Request) -> web.StreamResponse:
        who = request[SIGNED_IN].principal
        who.require("engineer", "admin")
        agent = await self.portal.visible_host(who, request.match_info["agent_id"][:128])
        form = request[FORM]
        try:
            fields = run_request_fields(form)
            run = await start_run(
                who,
                self._runs(),
                self.portal.tickets,
                agent,
                fields.playbook,
                fields.params,
                fields.ticket_id,
                fields.reason,
            )
        except errors.InvalidRequest as exc:  # shown in the form, what was typed kept
            values = {
                str(k).removeprefix(PARAM_PREFIX): str(v)
                for k, v in form.items()
                if str(k).startswith(PARAM_PREFIX)
            }
            return await self._form_page(
                request,
                agent,
                engineer.field(form, "playbook"),
                values,
                engineer.field(form, "ticket"),
                engineer.field(form, "reason"),
                str(exc),
                status=400,
            )
        raise web.HTTPSeeOther(f"/runs/{run.run_id}")

    async def _form_page(
        self,
        request: web.Request,
        agent: AgentRecord,
        chosen: str,
        values: Mapping[str, str],
        ticket: str,
        reason: str,
        error: str,
        status: int = 200,
    ) -> web.Response:
        runs = self._runs()
        playbook = runs.catalogue.playbooks.get(chosen) if runs.catalogue else None
        return self.render(
            request,
            "run_request.html.j2",
            status=status,
            agent=agent,
            playbooks=runs.list_playbooks(),
            playbook=playbook,
            values=values,
            ticket=ticket,
            reason=reason,
            error=error,
        )

    # -- everyone: the run, its output, deny --------------------------------------------

    async def page(self, request: web.Request) -> web.StreamResponse:
        who = request[SIGNED_IN].principal
        runs = self._runs()
        run = await runs.get(who, request.match_info["id"][:40])
        agent = await self.portal.db.call(self.portal.db.store.get_agent, run.agent_id)
        size = run.output_bytes if run.state in FINISHED_RUN_STATES else None
        output, end = self._output_tail(runs, run.run_id, size)
        return self.render(
            request,
            "run.html.j2",
            run=run,
            playbook=self.portal.playbook(run.playbook),
            pinned_root=agent.approval_root if agent is not None else "",
            finished=run.state in FINISHED_RUN_STATES,
            output=output,
            output_cut=end > OUTPUT_SHOWN,
            output_end=end,
            steps=list(run.result.get("steps", [])) if run.result else [],
            step_kinds=_step_kinds(self.portal.playbook(run.playbook)),
            run_states=RUN_STATES,
        )

    async def deny(self, request: web.Request) -> web.StreamResponse:
        who = request[SIGNED_IN].principal
        run_id = request.match_info["id"][:40]
        reason = engineer.field(request[FORM], "reason")[:500]
        await self._runs().deny(who, run_id, reason)
        raise web.HTTPSeeOther(f"/runs/{run_id}")

    async def live(self, request: web.Request) -> web.StreamResponse:
        """Server-Sent Events: ``state`` (JSON: state, message), ``output`` (a JSON
        string: output from byte ``?from=N`` on), ``done`` when the run is over; a
        comment line every KEEPALIVE_SECONDS of quiet. Others' runs: 404."""
        who = request[SIGNED_IN].principal
        runs = self._runs()
        run = await runs.get(who, request.match_info["id"][:40])
        offset = _offset(request.query.get("from", "0"))
        if list(self._follows.values()).count(who.name) >= MAX_FOLLOWS_PER_USER:
            raise web.HTTPTooManyRequests(
                text=f"{MAX_FOLLOWS_PER_USER} live views are open already: close one and reload."
            )
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        safe_headers(request, response)
        await response.prepare(request)
        task = asyncio.current_task()
        assert task is not None
        self._follows[task] = who.name
        try:
            async with contextlib.aclosing(follow_events(runs, who, run.run_id, offset)) as events:
                async for message in events:
                    await response.write(message.encode())
            await response.write_eof()
        except ConnectionResetError:  # the browser went away
            pass
        finally:
            self._follows.pop(task, None)
        return response

    async def end_follows(self, app: web.Application) -> None:
        """On shutdown: end every live output stream now."""
        for task in list(self._follows):
            task.cancel()

    # -- helpers ------------------------------------------------------------------------

    def _runs(self) -> RunService:
        if self.portal.runs is None:
            raise errors.NotFound("playbook runs are not served by this collector")
        return self.portal.runs

    def _output_tail(self, runs: RunService, run_id: str, size: int | None) -> tuple[str, int]:
        """The last OUTPUT_SHOWN bytes of the output as plain text, and where they end."""
        end = size
        if end is None:
            data, _ = runs.output(run_id)
            end = len(data)
        start = max(0, end - OUTPUT_SHOWN)
        data = runs.output_from(run_id, start, end - start)
        return plain(data.decode("utf-8", "replace")), end


async def follow_events(
    runs: RunService, who: Principal, run_id: str, offset: int
) -> AsyncGenerator[str, None]:
    """The run's SSE messages from output byte ``offset`` until it finishes. The
    output file is the source: each change the run service announces makes the
    follower read what was added since its last read (so nothing is sent twice); for
    an agent on another replica (no file here) the relayed ``OutputPiece``s are."""
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    changes: asyncio.Queue[Any] = asyncio.Queue()

    async def pump() -> None:
        try:
            async for item in runs.follow(who, run_id):
                changes.put_nowait(item)
        finally:
            changes.put_nowait(_END)

    pumping = asyncio.create_task(pump())
    try:
        while True:
            try:
                item = await asyncio.wait_for(changes.get(), KEEPALIVE_SECONDS)
            except TimeoutError:
                yield ": keep-alive\n\n"
                continue
            if isinstance(item, OutputPiece) and item.offset <= offset < item.end:
                data = item.data[offset - item.offset :]  # relayed: the agent is elsewhere
                offset = item.end
                yield _event("output", plain(decoder.decode(data)))
            while data := runs.output_from(run_id, offset, READ_BYTES):
                offset += len(data)
                yield _event("output", plain(decoder.decode(data)))
            if item is _END:
                return
            if isinstance(item, RunRecord):
                state = {"state": item.state, "message": item.message}
                yield _event("state", state)
                if item.state in FINISHED_RUN_STATES:
                    yield _event("done", state)
                    return
    finally:
        pumping.cancel()


def _event(name: str, data: Any) -> str:
    return f"event: {name}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


def _offset(raw: str) -> int:
    if not raw.isdigit() or len(raw) > 12:
        raise errors.InvalidRequest("from must be a byte offset (a whole number)")
    return int(raw)


def _step_kinds(playbook: Playbook | None) -> dict[str, str]:
    """What each declared step does, for the page: the argv or the builtin function."""
    if playbook is None:
        return {}
    shown: dict[str, str] = {}
    for step in playbook.steps:
        if isinstance(step, BuiltinStep):
            shown[step.name] = f"builtin {step.function}"
        else:
            user = f" (as {step.run_as})" if step.run_as else ""
            shown[step.name] = " ".join(step.argv) + user
    return shown
