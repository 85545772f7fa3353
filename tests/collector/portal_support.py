"""A real collector with its portal on port 0, run in a thread, and an HTTPS browser stand-in.

``PortalCollector`` starts ``CollectorServer`` (real store, real services, real HTTPS)
on its own asyncio loop; ``call`` runs a coroutine there, so tests set up users, hosts,
sessions and tickets through the same services the API uses. ``Browser`` is urllib
with a cookie jar, trusting the collector's CA; it follows no redirects, so tests see
every answer.
"""

from __future__ import annotations

import asyncio
import dataclasses
import http.cookiejar
import re
import ssl
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from collector.auth import Principal
from collector.config import ServeConfig
from collector.inspections.service import PlanRequest
from collector.portal.passwords import set_password
from collector.runs.model import RunRecord, RunState
from collector.server.app import CollectorServer
from collector.sessions.model import RemoteSession
from collector.store import AgentRecord
from collector.tickets.service import ManualTicket, TicketActionRequest
from common.clock import wall_ms

T = TypeVar("T")
PASSWORD = "correct horse battery"
ENGINEER = Principal("erin", "engineer")


class PortalCollector:
    """A started collector with the portal; ``stop()`` when done."""

    def __init__(self, data_dir: Path, **settings: Any) -> None:
        """``settings``: ServeConfig fields to change (e.g. ``tickets_config``)."""
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        config = ServeConfig(
            data_dir=data_dir,
            listen="127.0.0.1:0",
            api_listen="127.0.0.1:0",
            metrics_listen="127.0.0.1:0",
            ssh_listen="",
            web_listen="127.0.0.1:0",
        )
        self.server = CollectorServer(dataclasses.replace(config, **settings))
        addresses = self.call(self.server.start())
        self.url = addresses.web_url
        self.ca_file = data_dir / "ca.pem"

    def call(self, coroutine: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def stop(self) -> None:
        self.call(self.server.stop(0.5))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)

    @property
    def store(self) -> Any:
        assert self.server._db is not None
        return self.server._db.store

    def db(self, method: str, *args: Any) -> Any:
        """Call a store method through the collector's single writer."""
        db = self.server._db
        assert db is not None
        return self.call(db.call(getattr(db.store, method), *args))

    def add_user(self, name: str, role: str, customer: str | None = None) -> None:
        self.db("add_user", name, role, customer, f"hash-of-{name}", wall_ms())
        db = self.server._db
        assert db is not None
        self.call(db.call(set_password, db.store, name, PASSWORD, "test", wall_ms()))

    def add_host(self, agent_id: str, customer: str, hostname: str, root: str = "") -> AgentRecord:
        agent = AgentRecord(
            agent_id=agent_id,
            customer=customer,
            hostname=hostname,
            enrolled_ms=wall_ms(),
            cert_serial=agent_id,
            cert_not_after_ms=wall_ms() + 86_400_000,
            session_approval="collector",
            approval_root=root,
        )
        self.db("add_agent", agent)
        return agent

    def request_session(self, agent: AgentRecord, reason: str = "disk check") -> RemoteSession:
        assert self.server.sessions is not None
        return self.call(self.server.sessions.request(ENGINEER, agent, reason, 3_600_000, None))

    def session(self, session_id: str) -> RemoteSession:
        found: RemoteSession = self.db("get_session", session_id)
        return found

    def resolved_ticket(self, customer: str, title: str) -> int:
        """A ticket opened, acknowledged and resolved by an engineer: waits for the customer."""
        tickets = self.server.tickets
        assert tickets is not None
        ticket_id = self.call(tickets.create(ENGINEER, ManualTicket(title, "", "3", customer)))
        self.call(tickets.act(ENGINEER, ticket_id, TicketActionRequest("acknowledge")))
        resolve = TicketActionRequest(
            "resolve", cause="full disk", actions="rotated logs", prevention="logrotate"
        )
        self.call(tickets.act(ENGINEER, ticket_id, resolve))
        return ticket_id

    def audit(self, action: str) -> list[Any]:
        return [e for e in self.db("audit_entries") if e.action == action]


@dataclass
class Answer:
    status: int
    headers: Any
    text: str


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class Browser:
    """Cookies kept, redirects not followed, the collector's CA trusted."""

    def __init__(self, base_url: str, ca_file: Path, language: str = "en") -> None:
        self.base = base_url
        self.language = language
        self.cookies = http.cookiejar.CookieJar()
        context = ssl.create_default_context(cafile=str(ca_file))
        self._opener = urllib.request.build_opener(
            urllib.request.HTTPSHandler(context=context),
            urllib.request.HTTPCookieProcessor(self.cookies),
            _NoRedirect(),
        )

    def get(self, path: str) -> Answer:
        return self._open(urllib.request.Request(self.base + path, method="GET"))

    def post(self, path: str, fields: dict[str, str]) -> Answer:
        data = urllib.parse.urlencode(fields).encode()
        request = urllib.request.Request(self.base + path, data=data, method="POST")
        request.add_header("Content-Type", "application/x-www-form-urlencoded")
        return self._open(request)

    def stream(self, path: str, headers: dict[str, str] | None = None) -> Any:
        """An open answer to read as it comes (Server-Sent Events); close it when done."""
        request = urllib.request.Request(self.base + path, headers=headers or {}, method="GET")
        request.add_header("Accept-Language", self.language)
        return self._opener.open(request, timeout=20)

    def csrf(self, path: str) -> str:
        """The CSRF token in the forms of the page at ``path``."""
        page = self.get(path)
        match = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert match, f"no CSRF token on {path}: {page.status} {page.text[:300]}"
        return match.group(1)

    def sign_in(self, name: str, password: str = PASSWORD) -> Answer:
        token = self.csrf("/login")
        return self.post("/login", {"csrf": token, "name": name, "password": password})

    def cookie(self, name: str) -> http.cookiejar.Cookie | None:
        return next((c for c in self.cookies if c.name == name), None)

    def _open(self, request: urllib.request.Request) -> Answer:
        request.add_header("Accept-Language", self.language)
        try:
            with self._opener.open(request, timeout=20) as reply:
                return Answer(reply.status, reply.headers, reply.read().decode())
        except urllib.error.HTTPError as exc:
            return Answer(exc.code, exc.headers, exc.read().decode())


def planned_inspection(collector: PortalCollector, customer: str) -> int:
    """An inspection planned a week ahead by an engineer: waits for the customer's consent."""
    inspections = collector.server.inspections
    assert inspections is not None
    if not collector.db("list_agents", customer):
        collector.add_host(f"ag-{customer}-inspected", customer, f"{customer}-inspected")
    request = PlanRequest(customer=customer, every="quarter", first_ms=wall_ms() + 7 * 86_400_000)
    plan = collector.call(inspections.create_plan(ENGINEER, request))
    found = collector.call(inspections.list_inspections(ENGINEER, customer, ()))
    return next(v.inspection.id for v in found if v.inspection.plan_id == plan.id)


def inspection_awaiting_report(collector: PortalCollector, customer: str) -> int:
    """An inspection whose draft waits for an engineer's review (the run is skipped: the
    inspection is moved to awaiting_report with a small draft: one host, one fault)."""
    inspection_id = planned_inspection(collector, customer)
    stored = collector.db("get_inspection", inspection_id)
    finding = {"key": "fs", "state": "fault", "title": {"en": "/var fills", "zh-CN": "/var 将满"}}
    host = {"hostname": f"{customer}-inspected", "outcome": "collected", "findings": [finding]}
    draft = {"customer": customer, "hosts": [host], "findings": []}
    ready = dataclasses.replace(stored, state="awaiting_report", draft=draft)
    collector.db("update_inspection", ready, [])
    return inspection_id


def published_inspection(collector: PortalCollector, customer: str) -> int:
    """An inspection whose report an engineer published: waits for the customer's signature."""
    inspection_id = inspection_awaiting_report(collector, customer)
    inspections = collector.server.inspections
    assert inspections is not None
    collector.call(inspections.publish(ENGINEER, inspection_id, "All hosts healthy."))
    return inspection_id


def run_waiting_for_approval(collector: PortalCollector, agent: AgentRecord) -> str:
    """A mutating playbook run held for the customer's approval (as the agent reports)."""
    return stored_run(collector, agent, "run-0123456789ab", "restart_service", "mutating")


def stored_run(
    collector: PortalCollector,
    agent: AgentRecord,
    run_id: str,
    playbook: str,
    mode: str,
    state: RunState = "waiting_approval",
    ticket_id: int | None = None,
) -> str:
    """A run of ``playbook`` on ``agent`` written to the store in ``state``, as erin's,
    with the parameter unit=nginx.service."""
    run = RunRecord(
        run_id=run_id,
        agent_id=agent.agent_id,
        customer=agent.customer,
        hostname=agent.hostname,
        playbook=playbook,
        version="1.0.0",
        mode=mode,
        params={"unit": "nginx.service"},
        requested_by="user:erin",
        requested_ms=wall_ms(),
        ticket_id=ticket_id,
        state=state,
    )
    collector.db("create_run", run)
    return run.run_id
