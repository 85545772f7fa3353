"""Enrollment service: a single-use join token and a CSR buy an agent certificate.

Everything that can be checked without the token is checked before the token is
spent: the hostname, and the CSR (parses, self-signature valid, an EC P-256 or Ed25519
key as the agent generates, a sane subject: ``collector.pki.check_agent_csr``). A
refused request leaves the token usable. Refusals are unauthenticated failures:
counted, rate-limited per source and aggregated in the audit log
(``collector.auth_failures``), never a row per attempt.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from typing import Any

import grpc

from collector.auth import hash_token
from collector.auth_failures import AuthFailures
from collector.errors import CollectorError, InvalidRequest, RateLimited
from collector.metrics import CollectorMetrics
from collector.pki import CertificateAuthority, check_agent_csr
from collector.store import AgentRecord
from collector.store.writer import StoreThread
from proto import agent_pb2, agent_pb2_grpc

MAX_HOSTNAME = 253


class EnrollmentServicer(agent_pb2_grpc.EnrollmentServicer):
    """Issues client certificates; the subject (agent id, customer) is decided here."""

    def __init__(
        self,
        db: StoreThread,
        ca: CertificateAuthority,
        metrics: CollectorMetrics,
        agent_endpoint: str,
        cert_ttl: dt.timedelta,
        clock_ms: Callable[[], int],
        failures: AuthFailures,
    ) -> None:
        self._failures = failures
        self._db = db
        self._ca = ca
        self._metrics = metrics
        self._agent_endpoint = agent_endpoint
        self._cert_ttl = cert_ttl
        self._clock_ms = clock_ms

    async def Enroll(
        self, request: agent_pb2.EnrollRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> agent_pb2.EnrollResponse:
        try:
            self._failures.check("enrollment", context.peer())  # counts a refusal itself
        except RateLimited:
            self._metrics.enrollments.labels("refused").inc()
            raise
        try:
            reply = await self._enroll(request)
        except CollectorError as exc:
            self._metrics.enrollments.labels("refused").inc()
            await self._failures.record(
                "enrollment",
                context.peer(),
                f"{type(exc).__name__}: {exc}",
                f"hostname={request.hostname[:MAX_HOSTNAME]}",
            )
            raise
        self._metrics.enrollments.labels("ok").inc()
        return reply

    async def _enroll(self, request: agent_pb2.EnrollRequest) -> agent_pb2.EnrollResponse:
        hostname = request.hostname.strip()
        if not hostname or len(hostname) > MAX_HOSTNAME or not hostname.isprintable():
            raise InvalidRequest(
                "enrolment needs a hostname of 1-253 printable characters (no control characters)"
            )
        agent_id = "ag-" + uuid.uuid4().hex[:16]
        check_agent_csr(request.csr_pem)  # refuse a bad CSR before spending the token
        now = self._clock_ms()
        customer = await self._db.call(
            self._db.store.consume_join_token, hash_token(request.token), now
        )
        issued = self._ca.sign_agent_csr(request.csr_pem, agent_id, customer, self._cert_ttl)
        record = AgentRecord(
            agent_id=agent_id,
            customer=customer,
            hostname=hostname,
            enrolled_ms=now,
            cert_serial=issued.serial_hex,
            cert_not_after_ms=int(issued.not_after.timestamp() * 1000),
        )
        await self._db.call(self._db.store.add_agent, record)
        await self._db.call(
            self._db.store.append_audit,
            f"agent:{agent_id}",
            "agent.enrolled",
            agent_id,
            {"customer": customer, "hostname": hostname, "serial": issued.serial_hex},
            now,
        )
        return agent_pb2.EnrollResponse(
            agent_id=agent_id,
            customer=customer,
            certificate_pem=issued.cert_pem,
            ca_pem=self._ca.cert_pem,
            agent_endpoint=self._agent_endpoint,
            certificate_not_after_unix_ms=record.cert_not_after_ms,
        )
