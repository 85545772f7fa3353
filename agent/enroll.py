"""``aftercare-agent enroll``: trade a join token for a client certificate.

Order of operations (nothing is written unless every step succeeds):
pin the collector's CA by hash → generate the key locally → send a CSR with the
token over TLS verified against that CA → check the answer → save the identity.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from agent.errors import AlreadyEnrolled, CollectorUnreachable, EnrollmentError, TokenRejected
from agent.identity import (
    Identity,
    fetch_pinned_ca,
    is_enrolled,
    new_key_and_csr,
    save_identity,
    split_endpoint,
)
from agent.rpc import Channel, Proxy, RpcError, StatusCode, client_context, proxy_for
from proto import agent_pb2

ENROLL_METHOD = "/aftercare.v1.Enrollment/Enroll"
ENROLL_TIMEOUT_SECONDS = 15.0
_TOKEN_CODES = {
    StatusCode.UNAUTHENTICATED,
    StatusCode.PERMISSION_DENIED,
    StatusCode.INVALID_ARGUMENT,
}


def enroll(
    state_dir: Path,
    collector: str,
    token: str,
    ca_hash: str,
    hostname: str,
    force: bool = False,
    proxy: str = "",
) -> Identity:
    """Enrol this host with the collector at ``collector`` (its API address, HOST:PORT).

    ``proxy`` (``http://[user:password@]host:port``) is the HTTP proxy to go through;
    empty: the standard environment variables decide (``agent.rpc.proxy_for``).
    Raises AlreadyEnrolled (unless ``force``), CAHashMismatch, TokenRejected or
    CollectorUnreachable (also for a malformed or refusing proxy); on any error the
    state directory is left untouched.
    """
    if is_enrolled(state_dir) and not force:
        raise AlreadyEnrolled(
            f"{state_dir} is already enrolled; use --force to enrol again with a new identity"
        )
    host, _ = split_endpoint(collector)
    try:
        via = proxy_for(host, proxy)
    except ValueError as exc:
        raise CollectorUnreachable(f"cannot use the proxy: {exc}") from exc
    ca_pem = fetch_pinned_ca(collector, ca_hash, proxy=via)
    key_pem, csr_pem = new_key_and_csr(hostname)
    request = agent_pb2.EnrollRequest(token=token, csr_pem=csr_pem, hostname=hostname)
    try:
        reply = asyncio.run(_call_enroll(collector, ca_pem, request, via))
    except RpcError as exc:
        raise _enroll_error(collector, exc) from exc
    if reply.ca_pem.strip() != ca_pem.strip():
        raise EnrollmentError("the collector answered with a different CA than the pinned one")
    identity = Identity(
        agent_id=reply.agent_id,
        customer=reply.customer,
        agent_endpoint=reply.agent_endpoint,
        api_endpoint=collector,
        key_pem=key_pem,
        cert_pem=reply.certificate_pem,
        ca_pem=ca_pem,
        cert_obtained_ms=time.time_ns() // 1_000_000,
        cert_not_after_ms=reply.certificate_not_after_unix_ms,
    )
    save_identity(state_dir, identity)
    return identity


async def _call_enroll(
    collector: str, ca_pem: bytes, request: agent_pb2.EnrollRequest, proxy: Proxy | None
) -> agent_pb2.EnrollResponse:
    """One Enroll call over TLS verified against the pinned CA (no client certificate yet)."""
    host, port = split_endpoint(collector)
    tls = client_context(ca_pem)
    async with await Channel.connect(
        host, port, tls, timeout=ENROLL_TIMEOUT_SECONDS, proxy=proxy
    ) as channel:
        return await channel.unary(
            ENROLL_METHOD,
            request.SerializeToString(),
            agent_pb2.EnrollResponse.FromString,
            timeout=ENROLL_TIMEOUT_SECONDS,
        )


def _enroll_error(collector: str, exc: RpcError) -> EnrollmentError:
    if exc.code in _TOKEN_CODES:
        return TokenRejected(f"the collector refused the join token: {exc.details}")
    return CollectorUnreachable(f"enrolment at {collector} failed ({exc.code.name}): {exc.details}")
