"""Wiring of a running collector: data dir, store, gRPC ports, /metrics.

Ports:
- agent port (``--listen``): mutual TLS, a client certificate from our CA is required;
  serves AgentStream.
- API port (``--api-listen``): server TLS; serves Enrollment (join token) and Api
  (bearer API token). Agent methods refuse callers without a client certificate.
- metrics port (``--metrics-listen``): plain HTTP ``/metrics`` and ``/metrics/hosts``.
- portal port (``--web-listen``): HTTPS with the server certificate; the web portal
  (collector/portal), aiohttp in this same asyncio loop.
Both gRPC ports also serve standard health checking and reflection.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import CollectorRegistry

import playbooks
from collector.alert_scope import replica_scope
from collector.approvers import ApproverService
from collector.archive import Archive
from collector.auth_failures import AuthFailures
from collector.config import ServeConfig, split_host_port
from collector.datadir import DataDir, initialise, issue_server_certificate
from collector.errors import AgentRevoked, CollectorError, ConfigError, StoreError
from collector.fleet import Fleet
from collector.gateway.access import GatewayAccess, GatewaySettings
from collector.gateway.bridge import LoopBridge
from collector.gateway.hostkey import load_or_create_host_key
from collector.gateway.recording import WatchHub
from collector.gateway.recovery import recover
from collector.gateway.server import SshGateway
from collector.gateway.tunnels import TunnelBroker
from collector.history.query import HostHistory
from collector.history.query import fold as fold_history
from collector.history.query import roll_up as roll_up_history
from collector.host_metrics import FleetExposition
from collector.inspections.analysis import analyse as analyse_inspection
from collector.inspections.archive_sources import ARCHIVE_SOURCES
from collector.inspections.catalogue import CatalogueError
from collector.inspections.catalogue import load_catalogue as load_inspection_catalogue
from collector.inspections.config import load_inspections_config
from collector.inspections.notify import make_deliverer as make_inspection_deliverer
from collector.inspections.render import render as render_report
from collector.inspections.service import Analyse, InspectionService
from collector.leadership import Leadership, replica_id
from collector.metrics import CollectorMetrics
from collector.notices.service import ApprovalNotices
from collector.notify import SmtpSettings
from collector.outbox import RETENTION_MS as OUTBOX_RETENTION_MS
from collector.outbox import Outbox
from collector.pki import CertificateAuthority
from collector.portal.pages import make_app as make_portal_app
from collector.portal.server import WebServer
from collector.portal.signin import PortalSignIn
from collector.portal.views import Portal
from collector.rules import (
    HostRef,
    Rule,
    RuleEngine,
    RuleFileError,
    RuleSet,
    default_rules_path,
    load_rules,
)
from collector.runs.catalogue import Catalogue, load_catalogue
from collector.runs.service import RunService
from collector.server.agent_stream import AgentStreamServicer
from collector.server.alertmanager_webhook import PATH as ALERTMANAGER_PATH
from collector.server.alertmanager_webhook import alertmanager_handler
from collector.server.api import ApiServicer
from collector.server.audit_checkpoints import AuditCheckpoints
from collector.server.enrollment import EnrollmentServicer
from collector.server.gc_tuning import watch_pauses
from collector.server.http import HttpServer, PostHandler
from collector.server.metrics_pages import metrics_pages
from collector.server.replicas import ReplicaRouting
from collector.server.session_signals import LiveSessionSignals, SessionAgentMessages
from collector.server.status import ErrorStatusInterceptor
from collector.server.streams import Streams
from collector.sessions.keys import SshKeys
from collector.sessions.service import SessionService
from collector.store.postgres import PostgresStore
from collector.store.writer import StoreThread
from collector.tickets.config import TicketsConfig, load_tickets_config
from collector.tickets.model import NewEvent, Ticket
from collector.tickets.notify import make_deliverer
from collector.tickets.service import TicketService
from common.clock import wall_ms
from playbooks.errors import PlaybookError
from proto import agent_pb2, agent_pb2_grpc, api_pb2, api_pb2_grpc

log = logging.getLogger(__name__)

PRUNE_EVERY_SECONDS = 3600.0
FOLD_EVERY_SECONDS = 30.0  # staged history values wait at most a bucket and this long
SHIPPED_CATALOGUE = Path(playbooks.__file__).resolve().parent / "catalogue"
SERVICE_NAMES = (
    agent_pb2.DESCRIPTOR.services_by_name["Enrollment"].full_name,
    agent_pb2.DESCRIPTOR.services_by_name["AgentStream"].full_name,
    api_pb2.DESCRIPTOR.services_by_name["Api"].full_name,
)


# A leader's claim lasts this many evaluation intervals: renewed every interval, it
# expires within half an interval after the leader dies (docs/replicas.md).
LEASE_INTERVALS = 1.5


@dataclass(frozen=True)
class Addresses:
    """Where the started collector listens (ports resolved when 0 was asked)."""

    agent: str
    api: str
    metrics: str
    advertise: str
    ssh: str = ""  # the SSH gateway ("" when not served)
    web: str = ""  # the web portal, HOST:PORT ("" when not served)
    web_url: str = ""  # the portal's public address (--public-url, else https://web)
    relay: str = ""  # the replica relay, HOST:PORT ("" when not served)


class CollectorServer:
    """A collector process: ``await start()``, then ``await wait()`` or ``await stop()``."""

    def __init__(self, config: ServeConfig, registry: CollectorRegistry | None = None) -> None:
        self.config = config.validate()
        self.registry = registry or CollectorRegistry()
        self.data_dir = DataDir(config.data_dir)
        self.fleet = Fleet()
        self.admin_token: str | None = None
        self.addresses: Addresses | None = None
        self._server: grpc.aio.Server | None = None
        self._db: StoreThread | None = None
        self._http: HttpServer | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.engine: RuleEngine | None = None
        self.tickets: TicketService | None = None
        self.streams = Streams()
        self.runs: RunService | None = None
        self.sessions: SessionService | None = None
        self.inspections: InspectionService | None = None
        self.notices: ApprovalNotices | None = None  # customer notices of approvals
        self.keys: SshKeys | None = None
        self.approvers: ApproverService | None = None
        self.watch_hub = WatchHub()
        self.tunnels = TunnelBroker(self.streams)
        self._signals = LiveSessionSignals(self.streams, self.watch_hub)
        self.gateway: SshGateway | None = None
        self._metrics: CollectorMetrics | None = None
        self._stop_watching_gc: Callable[[], None] | None = None
        self._runs_checked_ms = 0
        self.audit_checkpoints: AuditCheckpoints | None = None
        self.auth_failures: AuthFailures | None = None
        self.portal: WebServer | None = None
        self.leadership: Leadership | None = None  # which replica runs the once-only work
        self.outbox: Outbox | None = None  # every notification, stored then sent
        self._shared_store = False  # PostgreSQL: replicas may share it (alert scopes)
        self.replicas: ReplicaRouting | None = None  # routing to other replicas' agents

    async def start(self) -> Addresses:
        """Initialise the data dir if needed, open the store and bind every port."""
        init = initialise(self.data_dir, wall_ms(), self.config.store_url)
        self.admin_token = init.admin_token
        issue_server_certificate(self.data_dir, init.ca, self.config.tls_names)
        rules = _load_rules(self.config.rules_path)
        tickets_config = load_tickets_config(self.config.tickets_config)
        metrics = await self._open_services(rules, tickets_config)
        assert self._db is not None and self.sessions is not None
        await recover(self._db, self.sessions, self.data_dir.root)  # before the gateway serves
        server, agent_port, api_port = self._grpc_server(init.ca)
        agent_host, _ = split_host_port(self.config.listen, "--listen")
        advertise = self.config.advertise or f"{_public_host(agent_host)}:{agent_port}"
        self._add_servicers(server, init.ca, metrics, advertise)
        await _add_health_and_reflection(server)
        await server.start()
        self._server = server
        assert self.tickets is not None
        webhook = alertmanager_handler(
            self.tickets,
            asyncio.get_running_loop(),
            self.config.alertmanager_tokens,
            wall_ms,
            self.auth_failures,
        )
        metrics_address = self._start_http({ALERTMANAGER_PATH: webhook})
        api_host, _ = split_host_port(self.config.api_listen, "--api-listen")
        self.addresses = Addresses(
            agent=f"{agent_host}:{agent_port}",
            api=f"{api_host}:{api_port}",
            metrics=metrics_address,
            advertise=advertise,
            ssh=self._start_gateway(metrics),
        )
        if self.replicas is not None:
            relay = await self.replicas.serve_relay(
                self.config.relay_listen,
                self.config.relay_advertise,
                self.tunnels,
                self.watch_hub,
                self.runs,
            )
            self.addresses = dataclasses.replace(self.addresses, relay=relay)
        web = await self._start_portal()
        if web:
            url = self.config.public_url or f"https://{web}"
            self.addresses = dataclasses.replace(self.addresses, web=web, web_url=url)
        self._tasks = [
            asyncio.create_task(self._prune_forever()),
            asyncio.create_task(self._fold_history_forever()),
            asyncio.create_task(self._evaluate_forever()),
            asyncio.create_task(self._flush_auth_failures_forever()),
        ]
        if self.audit_checkpoints is not None:
            self._tasks.append(asyncio.create_task(self.audit_checkpoints.run_forever()))
        if self.replicas is not None:
            self._tasks += [asyncio.create_task(loop) for loop in self.replicas.tasks()]
        log.info("collector started: %s", self.addresses)
        return self.addresses

    async def _open_services(
        self, rules: RuleSet, tickets_config: TicketsConfig
    ) -> CollectorMetrics:
        """Store, rule engine, tickets, runs and sessions, wired to each other."""
        self._db = StoreThread(self.data_dir.open_store())
        self._shared_store = self.data_dir.store_url() is not None
        lease_ms = int(LEASE_INTERVALS * self.config.evaluation_interval.total_seconds() * 1000)
        holder = replica_id()
        self.leadership = Leadership(self._db.store, holder, lease_ms, wall_ms)
        self.replicas = self._replica_routing(holder)
        if self.replicas is not None:
            self._signals.forward = self.replicas.router.send
            self._signals.announce = self.replicas.announce_session_over
            self.replicas.end_session_here = self._signals.over_here
        self.engine = RuleEngine(rules)
        await self._load_fleet(self.engine)
        metrics = CollectorMetrics(self.registry, self._db.store.history_refusals)
        self._metrics = metrics
        self._db.observe = lambda call, seconds: metrics.store_calls.labels(call).observe(seconds)
        gc_pauses = [metrics.gc_pauses.labels(str(generation)) for generation in range(3)]
        self._stop_watching_gc = watch_pauses(lambda gen, seconds: gc_pauses[gen].observe(seconds))
        self.outbox = Outbox(self._db, holder, metrics)  # sends on the leader only
        db = self._db

        async def audit(actor: str, action: str, target: str, details: Any, at: int) -> Any:
            return await db.call(db.store.append_audit, actor, action, target, details, at)

        self.auth_failures = AuthFailures(self.registry, audit, wall_ms)
        self.tickets = TicketService(
            self._db,
            tickets_config,
            make_deliverer(_smtp(tickets_config)),
            metrics,
            wall_ms,
            int(self.config.recovery_delay.total_seconds() * 1000),
            public_url=self.config.link_base(),
            outbox=self.outbox,
        )
        await self.tickets.start(self._settle_ms(rules))
        self.runs = RunService(
            self._db,
            _load_catalogue(self.config.playbooks_dir),
            self.streams.send,
            self.data_dir.root / "runs",
            wall_ms,
            forward=self.replicas.router.send if self.replicas else None,
            files=self.replicas.files if self.replicas else None,
            remote_output=self.replicas.relay.follow_run if self.replicas else None,
        )
        self.tickets.on_rule_ticket = self._run_diagnostics
        self.inspections = InspectionService(
            self._db,
            self.runs,
            self.tickets,
            load_inspections_config(self.config.inspections_config),
            make_inspection_deliverer(_smtp(tickets_config)),
            metrics,
            wall_ms,
            _inspection_analysis(self.config.inspection_catalogue),
            render_report,
            HostHistory(self._db).history,
            self.data_dir.root / "reports",
            link_base=self.config.link_base(),
            outbox=self.outbox,
        )
        self.sessions = SessionService(self._db, wall_ms, self._signals)
        self.notices = ApprovalNotices(
            self._db,
            tickets_config.customer_notices.contacts,
            self.outbox,
            make_inspection_deliverer(_smtp(tickets_config)),
            metrics,
            self.config.link_base(),
        )
        self.tickets.on_acted = self.sessions.ticket_over  # access ends with the ticket
        self.keys = SshKeys(self._db, wall_ms)
        self.approvers = ApproverService(
            self._db,
            self.streams.send,
            wall_ms,
            forward=self.replicas.router.send if self.replicas else None,
        )
        self.audit_checkpoints = AuditCheckpoints(
            self._db, self.data_dir.load_audit_key(), self.streams, wall_ms
        )
        await self.audit_checkpoints.refresh()
        return metrics

    def _replica_routing(self, replica: str) -> ReplicaRouting | None:
        """Routing to agents on other replicas: only on a PostgreSQL store."""
        assert self._db is not None
        url = self.data_dir.store_url()
        if not isinstance(self._db.store, PostgresStore) or url is None:
            return None
        interval_ms = int(self.config.evaluation_interval.total_seconds() * 1000)
        return ReplicaRouting(
            self._db,
            self.fleet,
            self.streams,
            self.data_dir.load_ca(),
            replica,
            url,
            self.data_dir.root,
            interval_ms,
            wall_ms,
        )

    def _start_gateway(self, metrics: CollectorMetrics) -> str:
        """Serve the SSH gateway on ``--ssh-listen``; returns its address ("" if off)."""
        if not self.config.ssh_listen:
            return ""
        assert self._db and self.sessions and self.keys
        host, port = split_host_port(self.config.ssh_listen, "--ssh-listen")
        access = GatewayAccess(
            LoopBridge(asyncio.get_running_loop()),
            self._db,
            self.sessions,
            self.keys,
            self.tunnels,
            self.watch_hub,
            metrics,
            GatewaySettings(
                data_dir=self.data_dir.root,
                record_input=self.config.record_input,
                warning_ms=int(self.config.session_warning.total_seconds() * 1000),
            ),
            wall_ms,
            files=self.replicas.files if self.replicas else None,
        )
        try:
            gateway = SshGateway(host, port, load_or_create_host_key(self.data_dir.root), access)
        except OSError as exc:
            raise ConfigError(
                f"--ssh-listen {self.config.ssh_listen}: {exc.strerror or exc}"
            ) from exc
        gateway.start()
        self.gateway = self._signals.gateway = gateway
        if self.replicas is not None:
            self.replicas.gateway_is_live = gateway.is_live
        bound_host, bound_port = gateway.address
        return f"{bound_host}:{bound_port}"

    async def _start_portal(self) -> str:
        """Serve the web portal on ``--web-listen``; returns its address ("" if off)."""
        if not self.config.web_listen:
            return ""
        assert self._db and self.tickets and self.sessions and self.auth_failures
        host, port = split_host_port(self.config.web_listen, "--web-listen")
        portal = Portal(
            self._db,
            self.fleet,
            self.tickets,
            self.sessions,
            self.inspections,
            wall_ms,
            self.runs,
            self.data_dir.root,
            self.watch_hub,
            remote_watch=self.replicas.remote_watch if self.replicas else None,
        )
        signin = PortalSignIn(self._db, self.auth_failures, wall_ms)
        app = make_portal_app(portal, signin, self.config.public_url)
        self.portal = WebServer(app, self.data_dir.server_cert, self.data_dir.server_key)
        bound = await self.portal.start(host, port, "--web-listen")
        return f"{host}:{bound}"

    def _gateway_identity(self) -> tuple[str, str]:
        """The gateway's address and host key line for clients; ("", "") when off."""
        if self.gateway is None or self.addresses is None:
            return "", ""
        return self.addresses.ssh, self.gateway.host_key_line

    def _grpc_server(self, ca: CertificateAuthority) -> tuple[grpc.aio.Server, int, int]:
        """The server with the agent port (mutual TLS) and the API port (TLS) bound."""
        server = grpc.aio.server(
            interceptors=[ErrorStatusInterceptor()], options=self._grpc_options()
        )
        key = self.data_dir.server_key.read_bytes()
        chain = self.data_dir.server_cert.read_bytes()
        mutual = grpc.ssl_server_credentials(
            [(key, chain)], root_certificates=ca.cert_pem, require_client_auth=True
        )
        agent_port = _bind(server, self.config.listen, "--listen", mutual)
        tls = grpc.ssl_server_credentials([(key, chain)])
        api_port = _bind(server, self.config.api_listen, "--api-listen", tls)
        return server, agent_port, api_port

    def _add_servicers(
        self,
        server: grpc.aio.Server,
        ca: CertificateAuthority,
        metrics: CollectorMetrics,
        advertise: str,
    ) -> None:
        assert self._db and self.engine and self.tickets and self.runs and self.sessions
        assert self.keys is not None and self.approvers is not None
        assert self.auth_failures is not None
        ttl = self.config.agent_cert_ttl
        agent_pb2_grpc.add_AgentStreamServicer_to_server(
            AgentStreamServicer(
                self._db,
                ca,
                self.fleet,
                metrics,
                self.engine,
                self.streams,
                self.runs,
                SessionAgentMessages(self.sessions),
                self.tunnels,
                ttl,
                wall_ms,
                self.approvers,
                audit=self.audit_checkpoints,
                presence=self.replicas,
            ),
            server,
        )
        agent_pb2_grpc.add_EnrollmentServicer_to_server(
            EnrollmentServicer(self._db, ca, metrics, advertise, ttl, wall_ms, self.auth_failures),
            server,
        )
        api_pb2_grpc.add_ApiServicer_to_server(
            ApiServicer(
                self._db,
                self.fleet,
                self.tickets,
                self.runs,
                self.sessions,
                self.keys,
                self.watch_hub,
                self.data_dir.root,
                self._gateway_identity,
                self.approvers,
                self.auth_failures,
                archive=Archive(self._db, ARCHIVE_SOURCES),
                inspections=self.inspections,
                files=self.replicas.files if self.replicas else None,
                remote_watch=self.replicas.remote_watch if self.replicas else None,
            ),
            server,
        )

    async def wait(self) -> None:
        """Until the gRPC server stops."""
        assert self._server is not None
        await self._server.wait_for_termination()

    async def stop(self, grace: float = 2.0) -> None:
        """Stop serving (in-flight RPCs get ``grace`` seconds), then close the store."""
        if self._stop_watching_gc is not None:
            self._stop_watching_gc()
            self._stop_watching_gc = None
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.inspections is not None:
            await self.inspections.stop()
        if self.gateway is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.gateway.stop)
        if self._server is not None:
            await self._server.stop(grace)
        if self._http is not None:
            self._http.close()
        if self.portal is not None:
            await self.portal.stop()
        if self.auth_failures is not None:
            await self.auth_failures.flush(final=True)
        if self.replicas is not None:
            await self.replicas.stop()
        if self._db is not None and self.leadership is not None:
            await self._db.call(self.leadership.resign)
        if self._db is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._db.close)

    def _grpc_options(self) -> list[tuple[str, int]]:
        return [
            ("grpc.max_receive_message_length", self.config.max_message_bytes),
            ("grpc.keepalive_time_ms", 30_000),
            ("grpc.keepalive_timeout_ms", 10_000),
            ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.so_reuseport", 0),
        ]

    async def _run_diagnostics(self, ticket: Ticket, playbook: str) -> None:
        """Run a rule's diagnostic playbook for its new ticket; say on the ticket if it can't."""
        assert self._db is not None and self.runs is not None
        agent = await self._db.call(self._db.store.get_agent, ticket.agent_id or "")
        reason = ""
        if agent is None:
            reason = "the ticket names no enrolled host"
        else:
            try:
                run = await self.runs.start(f"rule:{ticket.rule}", agent, playbook, {}, ticket.id)
            except CollectorError as exc:
                reason = str(exc)
            else:
                if run.state == "undeliverable":
                    reason = run.message
        if reason:
            note = NewEvent(
                at_ms=wall_ms(),
                actor="system",
                kind="diagnostics",
                details={"playbook": playbook, "status": "not run", "error": reason},
            )
            await self._db.call(self._db.store.add_ticket_events, ticket.id, [note])

    def _settle_ms(self, rules: RuleSet) -> int:
        """How long restored firing tickets wait for the rules to fire again after a start."""

        def needs(rule: Rule) -> float:  # `for`, plus half a window to refill rate/predict
            window = rule.condition.window_seconds if rule.condition else None
            return rule.for_seconds + (window or 0.0) / 2

        longest = max((needs(rule) for rule in rules.rules), default=0.0)
        return int((longest + 3 * self.config.evaluation_interval.total_seconds()) * 1000)

    def reload_rules(self) -> bool:
        """Re-read the rule files; on error keep the running rules and log why."""
        assert self.engine is not None
        try:
            self.engine.replace_rules(_load_rules(self.config.rules_path))
        except ConfigError as exc:
            log.error("rules NOT reloaded, keeping the running rules: %s", exc)
            return False
        log.info("rules reloaded: %d rules", len(self.engine.rules.rules))
        return True

    async def _load_fleet(self, engine: RuleEngine) -> None:
        assert self._db is not None
        store = self._db.store
        for agent in await self._db.call(store.list_agents, None):
            if agent.revoked_ms is not None:
                continue
            host = HostRef(agent.agent_id, agent.customer, agent.hostname)
            latest = await self._db.call(store.latest, agent.agent_id)
            if latest is None:
                self.fleet.load(agent, None, [])
            else:
                self.fleet.load(agent, latest.collected_ms, latest.samples)
                engine.observe(host, latest.collected_ms, latest.samples)
            engine.seen(host, agent.last_seen_ms or agent.enrolled_ms)

    async def _evaluate_forever(self) -> None:
        """Evaluate the rules, reconcile tickets and run the SLA clocks, every interval."""
        interval = self.config.evaluation_interval.total_seconds()
        while True:
            try:
                await self._evaluate_once()
            except Exception:  # one bad cycle must not stop ticketing for good
                log.exception("rule evaluation cycle failed; retrying next interval")
            await asyncio.sleep(interval)

    async def _evaluate_once(self) -> None:
        assert self._db and self.engine and self.tickets and self._metrics
        assert self.runs and self.sessions
        agents = await self._db.call(self._db.store.list_agents, None)
        for agent in agents:
            if agent.revoked_ms is not None:  # revoked by the admin CLI meanwhile
                self._cut_off(agent.agent_id, agent.revoked_ms)
        assert self.leadership is not None
        leading = await self._db.call(self.leadership.check)
        if not leading and not self._shared_store:
            return
        now = wall_ms()
        scope = None
        if self._shared_store:  # docs/replicas.md: sample rules here, heartbeats on the leader
            live = [a for a in agents if a.revoked_ms is None]
            for agent in live:  # other replicas' hosts: their last-seen from the store
                host = HostRef(agent.agent_id, agent.customer, agent.hostname)
                self.engine.seen(host, agent.last_seen_ms or agent.enrolled_ms)
            scope = replica_scope([a.agent_id for a in live], self.streams.connected, leading)
        started = time.perf_counter()
        alerts = self.engine.evaluate(now)
        self._metrics.rule_evaluation.observe(time.perf_counter() - started)
        await self.tickets.apply_alerts(alerts, now, scope)
        if not leading:
            return  # another replica leads: it ticks, notifies and expires
        await self.tickets.tick(now)
        if now - self._runs_checked_ms >= 60_000:
            self._runs_checked_ms = now
            await self.runs.expire_stale(now)
        for state, count in (await self.sessions.expire_due(now)).items():
            self._metrics.sessions.labels(state).set(count)
        if self.inspections is not None:
            await self.inspections.tick(now)
        if self.notices is not None:
            await self.notices.tick(now)
        if self.outbox is not None:
            await self.outbox.send_due(now)  # every kind of notice (tickets: sent in tick)

    def _cut_off(self, agent_id: str, revoked_ms: int) -> None:
        """A revoked agent: end its control stream and tunnels here, stop alerting on it."""
        assert self.engine is not None
        self.engine.forget(agent_id)
        self.fleet.forget(agent_id)
        revoked = AgentRevoked(agent_id, revoked_ms)
        streams = self.streams.cut_off(agent_id, revoked)
        tunnels = self.tunnels.close_agent(agent_id, str(revoked))
        if streams or tunnels:
            log.warning(
                "agent %s is revoked: closed its control stream (%d) and %d tunnel(s)",
                agent_id,
                streams,
                tunnels,
            )

    async def _flush_auth_failures_forever(self) -> None:
        """Write the per-minute totals of refused unauthenticated attempts."""
        assert self.auth_failures is not None
        while True:
            await asyncio.sleep(15)
            await self.auth_failures.flush()

    def _start_http(self, posts: Mapping[str, PostHandler]) -> str:
        host, port = split_host_port(self.config.metrics_listen, "--metrics-listen")
        try:
            exposition = FleetExposition(self.fleet, held_here_only=self.replicas is not None)
            pages = metrics_pages(self.registry, exposition, self.config.host_samples_on_metrics)
            self._http = HttpServer(host, port, pages, posts)
        except OSError as exc:
            raise ConfigError(f"--metrics-listen {self.config.metrics_listen}: {exc}") from exc
        return f"{host}:{self._http.port}"

    async def _prune_forever(self) -> None:
        assert self._db is not None
        retention_ms = int(self.config.batch_retention.total_seconds() * 1000)
        while True:
            pruned = await self._db.call(self._db.store.prune_batches, wall_ms() - retention_ms)
            await self._db.call(self._db.store.prune_web_sessions, wall_ms())
            await self._db.call(self._db.store.prune_outbox, wall_ms() - OUTBOX_RETENTION_MS)
            if pruned:
                log.info("pruned %d batch records older than the retention", pruned)
            await self._roll_up_history(wall_ms())
            await asyncio.sleep(PRUNE_EVERY_SECONDS)

    async def _fold_history_forever(self) -> None:
        """Fold staged history values into their buckets once the buckets end
        (docs/metric-history.md); a store error is retried on the next round."""
        assert self._db is not None
        while True:
            await asyncio.sleep(FOLD_EVERY_SECONDS)
            started = time.monotonic()
            try:
                folded = await fold_history(self._db, wall_ms())
            except StoreError as exc:
                log.warning("metric history fold failed (retrying): %s", exc)
                continue
            if folded:
                log.info(
                    "metric history: %d staged batches folded into their buckets in %.1f s",
                    folded,
                    time.monotonic() - started,
                )

    async def _roll_up_history(self, at_ms: int) -> None:
        """Roll up and expire the metric history (docs/metric-history.md)."""
        assert self._db is not None
        done = await roll_up_history(self._db, at_ms)
        if done.rolled_up or done.dropped or done.series_dropped:
            log.info(
                "metric history: %d 5-minute buckets rolled up, %d hourly buckets and "
                "%d empty series dropped",
                done.rolled_up,
                done.dropped,
                done.series_dropped,
            )


def _load_rules(path: Path | None) -> RuleSet:
    """The rules at ``path`` (default: the shipped set); ConfigError listing every problem."""
    try:
        return load_rules(path or default_rules_path())
    except RuleFileError as exc:
        raise ConfigError("bad rule file:\n  " + "\n  ".join(exc.problems)) from exc


def _load_catalogue(directory: Path | None) -> Catalogue | None:
    """The playbook catalogue to serve: ``directory``, else the shipped one if signed."""
    path = directory or SHIPPED_CATALOGUE
    if directory is None and not (path / "MANIFEST.json").exists():
        log.warning("no signed playbook catalogue at %s: playbooks disabled", path)
        return None
    try:
        return load_catalogue(path)
    except (OSError, ValueError, KeyError, PlaybookError) as exc:
        raise ConfigError(f"--playbooks {path}: {exc}") from exc


def _inspection_analysis(extension: Path | None) -> Analyse:
    """The analysis with the recommendation catalogue, extended by ``extension``
    (``--inspection-catalogue``; ConfigError if it cannot be read)."""
    try:
        catalogue = load_inspection_catalogue(extension)
    except CatalogueError as exc:
        raise ConfigError(f"--inspection-catalogue: {exc}") from exc
    return functools.partial(analyse_inspection, catalogue=catalogue)


def _smtp(config: TicketsConfig) -> SmtpSettings | None:
    return config.smtp.settings() if config.smtp.enabled else None


def _bind(server: grpc.aio.Server, address: str, option: str, creds: grpc.ServerCredentials) -> int:
    try:
        port = server.add_secure_port(address, creds)
    except RuntimeError as exc:
        raise ConfigError(
            f"{option} {address}: cannot listen ({exc}); is the port in use?"
        ) from exc
    if port == 0:
        raise ConfigError(f"{option} {address}: cannot listen; is the port in use?")
    return port


def _public_host(host: str) -> str:
    return socket.getfqdn() if host in ("0.0.0.0", "::", "") else host


async def _add_health_and_reflection(server: grpc.aio.Server) -> None:
    health_servicer = health.aio.HealthServicer()  # type: ignore[attr-defined]
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for name in ("", *SERVICE_NAMES):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    reflection.enable_server_reflection(
        (*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
