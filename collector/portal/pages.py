"""The portal's HTTP face: aiohttp handlers, sign-in and CSRF checks, safe headers.

Contracts:
- Every page but ``/login`` and ``/static/`` needs a signed-in browser (cookie
  ``__Host-aftercare``: Secure, HttpOnly, SameSite=Strict); a GET without one is sent
  to ``/login``, a POST without one is refused (401).
- Every POST carries the session's CSRF token in the form field ``csrf`` (the sign-in
  form: the token of the ``__Host-aftercare-login`` cookie); missing or wrong: 403,
  nothing done.
- Actions call the services with the signed-in user's ``Principal``: the tenancy
  rules and audit entries are those of the gRPC API. ``_STATUS`` is the one place
  collector errors become HTTP status; another customer's object is 404 like an
  unknown one.
- Every answer has a CSP without inline script (``default-src 'none'``),
  ``frame-ancestors 'none'`` and ``Cache-Control: no-store`` (static files excepted).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import functools
import json
import logging
import re
import secrets
from collections.abc import Awaitable, Callable, Mapping
from importlib import resources
from typing import Any

import jinja2
from aiohttp import web

from collector import errors
from collector.auth import Principal
from collector.gateway.recording import replay_then_follow
from collector.inspections.errors import InspectionStateError
from collector.portal import (
    approval_summary,
    browser_sign,
    engineer,
    error_details,
    i18n,
    live_sse,
    player,
)
from collector.portal.request_state import FORM, SIGNED_IN
from collector.portal.request_state import safe_headers as _safe_headers
from collector.portal.run_pages import RunPages
from collector.portal.signin import PortalSignIn, SignedIn, csrf_matches
from collector.portal.terminal import terminal_text
from collector.portal.views import Portal
from collector.runs.service import RunService
from collector.sessions.model import FINAL_SESSION_STATES
from collector.store.base import AgentRecord, RecordingRecord
from common.approval_format import RunSubject, SessionSubject

__all__ = ["make_app"]

log = logging.getLogger(__name__)

SESSION_COOKIE = "__Host-aftercare"
LOGIN_COOKIE = "__Host-aftercare-login"
MAX_FORM_BYTES = 64 * 1024
MAX_WATCHES_PER_USER = 8  # live terminal streams open at once (each holds a queue)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Collector errors -> (HTTP status, the page's translated headline). First match wins.
_STATUS: tuple[tuple[type[errors.CollectorError], int, str], ...] = (
    (errors.RateLimited, 429, "Too many failed sign-ins. Try again later."),
    (errors.Unauthenticated, 401, "Sign in to continue."),
    (errors.PermissionDenied, 403, "You may not do this."),
    (errors.NotFound, 404, "Not found, or not yours to see."),
    (errors.InvalidRequest, 400, "The request was not valid."),
    (InspectionStateError, 409, "This cannot be done now."),
    (errors.FailedPrecondition, 409, "This cannot be done now."),
    (errors.Conflict, 409, "This cannot be done now."),
)
_TOKEN = re.compile(r"[A-Za-z0-9_-]{43}")
CSRF_REFUSED = "The form expired or did not come from this portal. Reload the page and try again."


class CsrfRefused(Exception):
    """A POST without the right CSRF token."""


PAGES: web.AppKey[_Pages] = web.AppKey("pages")


def make_app(portal: Portal, signin: PortalSignIn, public_url: str) -> web.Application:
    """The portal's aiohttp application over the collector's services."""
    app = web.Application(
        middlewares=[_headers, _errors, _authenticate], client_max_size=MAX_FORM_BYTES
    )
    pages = _Pages(portal, signin, public_url)
    app.router.add_get("/login", pages.login_form)
    app.router.add_post("/login", pages.login)
    app.router.add_post("/logout", pages.logout)
    app.router.add_post("/language", pages.language)
    app.router.add_get("/", pages.overview)
    app.router.add_get("/queue", pages.queue)
    app.router.add_get("/fleet", pages.fleet)
    app.router.add_get("/hosts/{agent_id}/session", pages.session_form)
    app.router.add_post("/hosts/{agent_id}/session", pages.request_session)
    app.router.add_get("/approval-key", pages.approval_key)
    app.router.add_get("/runs/{id}/to-sign", pages.run_to_sign)
    app.router.add_get("/sessions/{id}/to-sign", pages.session_to_sign)
    app.router.add_post("/runs/{id}/approve", pages.approve_run)
    app.router.add_get("/sessions/{id}", pages.session)
    app.router.add_get("/sessions/{id}/terminal", pages.terminal)
    app.router.add_get("/sessions/{id}/recording.cast", pages.recording)
    app.router.add_get("/sessions/{id}/live", pages.watch_live)
    app.router.add_post("/sessions/{id}/{action:approve|deny|terminate}", pages.decide_session)
    app.router.add_get("/tickets/{id:[0-9]{1,18}}", pages.ticket)
    app.router.add_post(
        "/tickets/{id:[0-9]{1,18}}/{action:" + "|".join(engineer.TICKET_ACTIONS) + "}",
        pages.act_on_ticket,
    )
    app.router.add_post("/tickets/{id:[0-9]{1,18}}/regrade", pages.regrade_ticket)
    app.router.add_get("/tickets/{id:[0-9]{1,18}}/report", pages.ticket_report)
    app.router.add_get("/inspections/{id:[0-9]{1,18}}", pages.inspection)
    app.router.add_get("/inspections/{id:[0-9]{1,18}}/report", pages.inspection_report)
    app.router.add_post(
        "/inspections/{id:[0-9]{1,18}}/{action:consent|sign|reject|publish}",
        pages.act_on_inspection,
    )
    app.router.add_get("/static/portal.css", _package_static("portal.css", "text/css"))
    app.router.add_get(
        "/static/{name:player\\.js|vendor/asciinema-player\\.(?:min\\.js|css)}", _player_file
    )
    app.router.add_get(
        "/static/browser-sign.js", _package_static("browser-sign.js", "text/javascript")
    )
    app.router.add_get("/static/run-follow.js", _package_static("run-follow.js", "text/javascript"))
    app.router.add_get("/favicon.ico", _no_icon)
    app.on_shutdown.append(pages.end_watches)
    RunPages(portal, pages.render).add_routes(app)  # /hosts/ID/run, /runs/ID[/live|/deny]
    app[PAGES] = pages
    return app


# -- middlewares -----------------------------------------------------------------------


@web.middleware
async def _headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        _safe_headers(request, exc)
        raise
    _safe_headers(request, response)
    return response


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The one place collector errors become HTTP answers (a translated page)."""
    pages = request.app[PAGES]
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except CsrfRefused:
        return pages.error_page(request, 403, CSRF_REFUSED, "")
    except errors.CollectorError as exc:
        for kind, status, headline in _STATUS:
            if isinstance(exc, kind):
                log.info("portal %s %s refused (%d): %s", request.method, request.path, status, exc)
                explained = error_details.explain(exc)
                return pages.error_page(request, status, headline, str(exc), explained)
        log.error("portal %s %s failed", request.method, request.path, exc_info=exc)
    except Exception as exc:  # a bug: logged, never shown
        log.error("portal %s %s failed", request.method, request.path, exc_info=exc)
    headline = "Something went wrong in the collector. Try again; if it persists, tell your vendor."
    return pages.error_page(request, 500, headline, "")


@web.middleware
async def _authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Resolve the signed-in user; check the CSRF token of every POST."""
    pages = request.app[PAGES]
    if request.path.startswith("/static/") or request.path in ("/login", "/favicon.ico"):
        return await handler(request)
    signed_in = await pages.signin.current(request.cookies.get(SESSION_COOKIE, ""))
    if signed_in is None:
        if request.method == "GET":
            raise web.HTTPSeeOther("/login")
        return pages.error_page(request, 401, "Sign in to continue.", "")
    request[SIGNED_IN] = signed_in
    if request.method == "POST":
        form = await request.post()
        if not csrf_matches(signed_in.session.csrf_token, str(form.get("csrf", ""))):
            raise CsrfRefused()
        request[FORM] = form
    return await handler(request)


# -- pages ----------------------------------------------------------------------------


class _Pages:
    def __init__(self, portal: Portal, signin: PortalSignIn, public_url: str) -> None:
        self.portal = portal
        self.signin = signin
        self.public_url = public_url
        self._watches: dict[asyncio.Task[Any], str] = {}  # live streams -> user; ended on shutdown

    # sign-in

    async def login_form(self, request: web.Request) -> web.StreamResponse:
        token = _login_token(request)
        response = self.render(request, "login.html.j2", login_csrf=token, message="")
        _set_cookie(response, LOGIN_COOKIE, token, 3600)
        return response

    async def login(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        expected = request.cookies.get(LOGIN_COOKIE, "")
        if not expected or not csrf_matches(expected, str(form.get("csrf", ""))):
            raise CsrfRefused()
        peer = _peer(request)
        try:
            token, signed_in = await self.signin.sign_in(
                str(form.get("name", "")),
                str(form.get("password", "")),
                peer,
                str(form.get("code", ""))[:16],
            )
        except errors.RateLimited:
            return self._login_again(request, 429, "Too many failed sign-ins. Try again later.")
        except errors.Unauthenticated:
            return self._login_again(request, 401, "Wrong user name, password or code.")
        response = _see_other("/")
        _set_cookie(response, SESSION_COOKIE, token, None)
        _set_cookie(response, LOGIN_COOKIE, "", 0)
        del signed_in
        return response

    def _login_again(self, request: web.Request, status: int, message: str) -> web.StreamResponse:
        token = _login_token(request)
        response = self.render(
            request, "login.html.j2", status=status, login_csrf=token, message=message
        )
        _set_cookie(response, LOGIN_COOKIE, token, 3600)
        return response

    async def logout(self, request: web.Request) -> web.StreamResponse:
        await self.signin.sign_out(request[SIGNED_IN])
        response = _see_other("/login")
        _set_cookie(response, SESSION_COOKIE, "", 0)
        return response

    async def language(self, request: web.Request) -> web.StreamResponse:
        language = str(request[FORM].get("language", ""))
        if language not in (*i18n.LANGUAGES, ""):
            raise errors.InvalidRequest(f"unknown language {language[:16]!r}: use zh-CN or en")
        await self.signin.set_language(request[SIGNED_IN], language)
        back = str(request[FORM].get("back", "/"))
        raise web.HTTPSeeOther(back if back.startswith("/") and not back.startswith("//") else "/")

    # customer pages

    async def overview(self, request: web.Request) -> web.StreamResponse:
        who = request[SIGNED_IN].principal
        return self.render(request, "overview.html.j2", view=await self.portal.overview(who))

    async def queue(self, request: web.Request) -> web.StreamResponse:
        who = request[SIGNED_IN].principal
        level = request.query.get("level", "")[:16]
        customer = request.query.get("customer", "")[:64]
        tickets = await self.portal.queue(who, level, customer)
        reports = []
        if self.portal.inspections is not None:
            reports = await self.portal.inspections.list_inspections(
                who, customer or None, ["awaiting_report"]
            )
        return self.render(
            request,
            "queue.html.j2",
            tickets=tickets,
            reports=reports,
            level=level,
            customer=customer,
        )

    async def fleet(self, request: web.Request) -> web.StreamResponse:
        who = request[SIGNED_IN].principal
        who.require("engineer", "admin")
        customer = request.query.get("customer", "")[:64]
        connection = request.query.get("connection", "")[:16]
        hosts = engineer.fleet_rows(await self.portal.hosts(who), customer, connection)
        return self.render(
            request, "fleet.html.j2", hosts=hosts, customer=customer, connection=connection
        )

    async def session_form(self, request: web.Request) -> web.StreamResponse:
        who = request[SIGNED_IN].principal
        who.require("engineer", "admin")
        agent = await self._visible_host(request)
        return self.render(request, "session_request.html.j2", agent=agent)

    async def request_session(self, request: web.Request) -> web.StreamResponse:
        who = request[SIGNED_IN].principal
        agent = await self._visible_host(request)
        reason, duration_ms, ticket_id = engineer.session_request_fields(request[FORM])
        session = await self.portal.sessions.request(who, agent, reason, duration_ms, ticket_id)
        raise web.HTTPSeeOther(f"/sessions/{session.session_id}")

    async def _visible_host(self, request: web.Request) -> AgentRecord:
        """The host of the path's agent id, if the signed-in user may see it (else 404)."""
        who = request[SIGNED_IN].principal
        return await self.portal.visible_host(who, request.match_info["agent_id"][:128])

    async def session(self, request: web.Request) -> web.StreamResponse:
        who = request[SIGNED_IN].principal
        session, events = await self.portal.sessions.get(who, request.match_info["id"][:40])
        agent = await self.portal.db.call(self.portal.db.store.get_agent, session.agent_id)
        return self.render(
            request,
            "session.html.j2",
            session=session,
            events=events,
            pinned_root=agent.approval_root if agent is not None else "",
        )

    async def terminal(self, request: web.Request) -> web.StreamResponse:
        who = request[SIGNED_IN].principal
        session, records = await self.portal.sessions.recordings(who, request.match_info["id"][:40])
        shown = terminal_text(records, self.portal.data_dir)
        live = session.state in ("approved", "active")
        return self.render(
            request,
            "terminal.html.j2",
            session=session,
            terminal=shown,
            live=live,
            player=player.player_available(),
        )

    async def recording(self, request: web.Request) -> web.StreamResponse:
        """Every part of the session's recording as one asciicast file (for the player)."""
        who = request[SIGNED_IN].principal
        _, records = await self.portal.sessions.recordings(who, request.match_info["id"][:40])
        body = player.recording_cast(records, self.portal.data_dir)
        return web.Response(body=body, content_type="application/x-asciicast")

    async def watch_live(self, request: web.Request) -> web.StreamResponse:
        """The session's terminal as Server-Sent Events until it ends (read-only;
        audited as ``portal.session_watched``). Others' sessions: 404 like unknown ones."""
        who = request[SIGNED_IN].principal
        session_id = request.match_info["id"][:40]
        sessions = self.portal.sessions
        session, records = await sessions.recordings(who, session_id)
        if list(self._watches.values()).count(who.name) >= MAX_WATCHES_PER_USER:
            raise web.HTTPTooManyRequests(
                text=f"{MAX_WATCHES_PER_USER} live views are open already: close one and reload."
            )
        await self.portal.db.call(
            self.portal.db.store.append_audit,
            f"user:{who.name}",
            "portal.session_watched",
            session_id,
            {"role": who.role, "customer": who.customer, "peer": _peer(request)},
            self.portal.clock_ms(),
        )

        async def load() -> tuple[list[RecordingRecord], bool]:
            session, recordings = await sessions.recordings(who, session_id)
            return recordings, session.state in FINAL_SESSION_STATES

        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        _safe_headers(request, response)
        await response.prepare(request)
        items = None
        if self.portal.remote_watch is not None and session.state not in FINAL_SESSION_STATES:
            items = await self.portal.remote_watch(session_id)  # engineer on another replica
        if items is None:
            hub, data_dir = self.portal.watch_hub, self.portal.data_dir
            items = replay_then_follow(hub, session_id, load, data_dir)
        header = player.live_header(records, self.portal.data_dir)
        resume = live_sse.resume_point(request.headers.get("Last-Event-ID", ""))

        async def over() -> bool:
            return (await load())[1]

        watch = asyncio.current_task()
        assert watch is not None
        self._watches[watch] = who.name
        try:
            async with contextlib.aclosing(live_sse.follow(items, header, resume, over)) as stream:
                async for message in stream:
                    await response.write(message.encode())
            await response.write_eof()
        except ConnectionResetError:  # the browser left; it may come back with Last-Event-ID
            log.info("live view of %s by %s closed by the browser", session_id, who.name)
        finally:
            self._watches.pop(watch, None)
        return response

    async def end_watches(self, app: web.Application) -> None:
        """On shutdown: end every live watch now (a stream never finishes by itself)."""
        for watch in list(self._watches):
            watch.cancel()

    async def decide_session(self, request: web.Request) -> web.StreamResponse:
        who = request[SIGNED_IN].principal
        form = request[FORM]
        session_id = request.match_info["id"][:40]
        action = request.match_info["action"]
        if action == "approve":
            signed = await self._browser_signed(who, form)
            await self.portal.sessions.approve(
                who, session_id, _until(form, self.portal.clock_ms()), signed
            )
        elif action == "deny":
            reason = str(form.get("reason", "")).strip()[:500]
            await self.portal.sessions.deny(who, session_id, reason)
        else:
            await self.portal.sessions.terminate(who, session_id)
        raise web.HTTPSeeOther(f"/sessions/{session_id}")

    async def approve_run(self, request: web.Request) -> web.StreamResponse:
        who = request[SIGNED_IN].principal
        run_id = request.match_info["id"][:40]
        signed = await self._browser_signed(who, request[FORM])
        await self._runs().approve(who, run_id, signed)
        raise web.HTTPSeeOther(f"/runs/{run_id}")

    async def approval_key(self, request: web.Request) -> web.StreamResponse:
        """Enrolment: the browser creates its key and shows what to certify."""
        return self.render(request, "approval_key.html.j2")

    async def run_to_sign(self, request: web.Request) -> web.StreamResponse:
        """JSON: the canonical approval body of this run for the browser key ``key``."""
        who = request[SIGNED_IN].principal
        run = await self._runs().get(who, request.match_info["id"][:40])
        subject = browser_sign.run_subject(run)
        return await self._to_sign(who, request, run.customer, run.agent_id, subject, run.hostname)

    async def session_to_sign(self, request: web.Request) -> web.StreamResponse:
        """JSON: the canonical approval body of this session for the browser key ``key``."""
        who = request[SIGNED_IN].principal
        session, _ = await self.portal.sessions.get(who, request.match_info["id"][:40])
        now = self.portal.clock_ms()
        subject = browser_sign.session_subject(session, now, _until(request.query, now))
        return await self._to_sign(
            who, request, session.customer, session.agent_id, subject, session.hostname
        )

    async def _to_sign(
        self,
        who: Principal,
        request: web.Request,
        customer: str,
        agent_id: str,
        subject: RunSubject | SessionSubject,
        hostname: str,
    ) -> web.StreamResponse:
        if who.role != "customer" or who.customer != customer:
            raise errors.PermissionDenied(
                "only a customer user of this host's customer can approve"
            )
        now = self.portal.clock_ms()
        approvers = await self.portal.db.call(self.portal.db.store.list_approvers, customer)
        try:
            record = browser_sign.certificate_for(
                approvers, customer, request.query.get("key", ""), now
            )
        except errors.CollectorError as exc:  # shown in the page by the script
            return web.json_response({"error": str(exc)}, status=403)
        body = browser_sign.approval_body(record, agent_id, subject, now)
        gettext = i18n.translations(_language(request)).gettext
        return web.json_response(
            {
                "body": base64.b64encode(body).decode("ascii"),
                "approver": record.name,
                "key_fingerprint": record.key_fingerprint,
                "text": json.loads(body),
                "exact": body.decode("utf-8"),
                "summary": approval_summary.summary(json.loads(body), gettext, hostname),
            }
        )

    async def _browser_signed(self, who: Principal, form: Mapping[str, Any]) -> bytes:
        """The bundle from a browser signature in ``form``; b"" if the form has none."""
        signature = str(form.get("signature", ""))
        if not signature:
            return b""
        if who.customer is None:
            raise errors.PermissionDenied("only a customer user can sign an approval")
        approvers = await self.portal.db.call(self.portal.db.store.list_approvers, who.customer)
        record = browser_sign.certificate_for(
            approvers, who.customer, str(form.get("key", "")), self.portal.clock_ms()
        )
        return browser_sign.browser_bundle(str(form.get("body", "")), signature, record)

    def _runs(self) -> RunService:
        if self.portal.runs is None:
            raise errors.NotFound("playbook runs are not served by this collector")
        return self.portal.runs

    async def ticket(self, request: web.Request) -> web.StreamResponse:
        who = request[SIGNED_IN].principal
        ticket_id = int(request.match_info["id"])
        view = await self.portal.tickets.get(who, ticket_id)
        runs = await self.portal.ticket_runs(who, ticket_id)
        return self.render(request, "ticket.html.j2", view=view, runs=runs)

    async def ticket_report(self, request: web.Request) -> web.StreamResponse:
        who = request[SIGNED_IN].principal
        ticket_id = int(request.match_info["id"])
        language = _language(request)
        html = await self.portal.tickets.report(who, ticket_id, "html", language)
        return web.Response(text=html, content_type="text/html", charset="utf-8")

    async def act_on_ticket(self, request: web.Request) -> web.StreamResponse:
        who = request[SIGNED_IN].principal
        ticket_id = int(request.match_info["id"])
        action = engineer.ticket_action_request(request.match_info["action"], request[FORM])
        await self.portal.tickets.act(who, ticket_id, action)
        raise web.HTTPSeeOther(f"/tickets/{ticket_id}")

    async def regrade_ticket(self, request: web.Request) -> web.StreamResponse:
        who = request[SIGNED_IN].principal
        ticket_id = int(request.match_info["id"])
        level, reason = engineer.regrade_fields(request[FORM])
        await self.portal.tickets.regrade(who, ticket_id, level, reason)
        raise web.HTTPSeeOther(f"/tickets/{ticket_id}")

    async def inspection(self, request: web.Request) -> web.StreamResponse:
        who = request[SIGNED_IN].principal
        view = await self._inspections().get(who, int(request.match_info["id"]))
        return self.render(request, "inspection.html.j2", view=view)

    async def inspection_report(self, request: web.Request) -> web.StreamResponse:
        who = request[SIGNED_IN].principal
        content, sha256 = await self._inspections().report(
            who, int(request.match_info["id"]), "html", _language(request)
        )
        response = web.Response(body=content, content_type="text/html", charset="utf-8")
        response.headers["X-Report-SHA256"] = sha256
        return response

    async def act_on_inspection(self, request: web.Request) -> web.StreamResponse:
        who = request[SIGNED_IN].principal
        form = request[FORM]
        inspection_id = int(request.match_info["id"])
        action = request.match_info["action"]
        service = self._inspections()
        if action == "consent":
            await service.consent(who, inspection_id)
        elif action == "sign":
            await service.sign(
                who,
                inspection_id,
                str(form.get("name", "")).strip()[:200],
                str(form.get("title", "")).strip()[:200],
                str(form.get("comment", "")).strip()[:2000],
                str(form.get("sha256", "")).strip()[:64],
            )
        elif action == "publish":
            await service.publish(who, inspection_id, engineer.field(form, "summary"))
        else:
            await service.reject(who, inspection_id, str(form.get("reason", "")).strip()[:2000])
        raise web.HTTPSeeOther(f"/inspections/{inspection_id}")

    def _inspections(self) -> Any:
        if self.portal.inspections is None:
            raise errors.NotFound("inspections are not served by this collector")
        return self.portal.inspections

    # rendering

    def render(
        self, request: web.Request, template: str, status: int = 200, **context: Any
    ) -> web.Response:
        language = _language(request)
        signed_in: SignedIn | None = request.get(SIGNED_IN)
        html = (
            _environment(language)
            .get_template(template)
            .render(
                lang=language,
                user=signed_in.principal if signed_in else None,
                csrf=signed_in.session.csrf_token if signed_in else "",
                path=request.path,
                now_ms=self.portal.clock_ms(),
                **context,
            )
        )
        return web.Response(text=html, status=status, content_type="text/html", charset="utf-8")

    def error_page(
        self,
        request: web.Request,
        status: int,
        headline: str,
        detail: str,
        explained: error_details.Explained | None = None,
    ) -> web.Response:
        """The error page: the translated headline, the detail in the page's language
        when known (``error_details``), and the collector's own text."""
        return self.render(
            request,
            "error.html.j2",
            status=status,
            headline=headline,
            detail=detail,
            explained=explained,
        )


def _language(request: web.Request) -> str:
    signed_in: SignedIn | None = request.get(SIGNED_IN)
    setting = signed_in.language if signed_in else request.query.get("lang", "")
    return i18n.choose(setting, request.headers.get("Accept-Language", ""))


def _until(form: Mapping[str, Any], now_ms: int) -> int | None:
    """The shorter window an approver chose (form field ``minutes``), as unix ms."""
    raw = str(form.get("minutes", "")).strip()
    if not raw:
        return None
    if not raw.isdigit() or not 1 <= int(raw) <= 7 * 24 * 60:
        raise errors.InvalidRequest("minutes must be a whole number from 1 to 10080")
    return now_ms + int(raw) * 60_000


def _login_token(request: web.Request) -> str:
    """The browser's sign-in form token, or a new one: another tab, a favicon fetch or
    a failed attempt must not void a sign-in form already shown."""
    token = request.cookies.get(LOGIN_COOKIE, "")
    return token if _TOKEN.fullmatch(token) else secrets.token_urlsafe(32)


def _see_other(location: str) -> web.Response:
    """A 303 that can carry cookies (returned, not raised)."""
    return web.Response(status=303, headers={"Location": location})


def _peer(request: web.Request) -> str:
    address = request.remote or "unknown"
    return f"{'ipv6' if ':' in address else 'ipv4'}:{address}"


def _set_cookie(response: web.StreamResponse, name: str, value: str, max_age: int | None) -> None:
    response.set_cookie(
        name,
        value,
        path="/",
        secure=True,
        httponly=True,
        samesite="Strict",
        max_age=max_age,
    )


async def _no_icon(request: web.Request) -> web.StreamResponse:
    return web.Response(status=204)


def _package_static(name: str, content_type: str) -> Handler:
    """A handler serving the package file ``static/NAME`` (cached an hour by browsers)."""

    async def serve(request: web.Request) -> web.StreamResponse:
        body = resources.files("collector.portal").joinpath(f"static/{name}").read_bytes()
        return _cached(body, content_type)

    return serve


async def _player_file(request: web.Request) -> web.StreamResponse:
    found = player.player_file(request.match_info["name"])
    if found is None:
        raise web.HTTPNotFound(text="The terminal player is not installed (make vendor).")
    return _cached(*found)


def _cached(body: bytes, content_type: str) -> web.Response:
    response = web.Response(body=body, content_type=content_type)
    response.headers["Cache-Control"] = "max-age=3600"
    return response


@functools.cache
def _environment(language: str) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("collector.portal", "templates"),
        autoescape=True,
        extensions=["jinja2.ext.i18n"],
        undefined=jinja2.StrictUndefined,
    )
    translations = i18n.translations(language)
    env.install_gettext_callables(  # type: ignore[attr-defined]
        translations.gettext, translations.ngettext, newstyle=True
    )
    env.filters["when"] = _when
    env.filters["pct"] = lambda ratio: f"{ratio * 100:.0f}%"
    env.filters["minutes"] = lambda ms: max(0, int(ms or 0) // 60_000)
    return env


def _when(ms: int | None) -> str:
    if ms is None:
        return "—"
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
