"""``aftercare-agent enroll``: trade a join token for a client certificate.

Order of operations (nothing is written unless every step succeeds):
pin the collector's CA by hash → generate the key locally → send a CSR with the
token over TLS verified against that CA → check the answer → save the identity.
"""

from __future__ import annotations

import time
from pathlib import Path

import grpc

from agent.errors import AlreadyEnrolled, CollectorUnreachable, EnrollmentError, TokenRejected
from agent.identity import Identity, fetch_pinned_ca, is_enrolled, new_key_and_csr, save_identity
from proto import agent_pb2, agent_pb2_grpc

ENROLL_TIMEOUT_SECONDS = 15.0
_TOKEN_CODES = {
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.INVALID_ARGUMENT,
}


def enroll(
    state_dir: Path, collector: str, token: str, ca_hash: str, hostname: str, force: bool = False
) -> Identity:
    """Enrol this host with the collector at ``collector`` (its API address, HOST:PORT).

    Raises AlreadyEnrolled (unless ``force``), CAHashMismatch, TokenRejected or
    CollectorUnreachable; on any error the state directory is left untouched.
    """
    if is_enrolled(state_dir) and not force:
        raise AlreadyEnrolled(
            f"{state_dir} is already enrolled; use --force to enrol again with a new identity"
        )
    ca_pem = fetch_pinned_ca(collector, ca_hash)
    key_pem, csr_pem = new_key_and_csr(hostname)
    request = agent_pb2.EnrollRequest(token=token, csr_pem=csr_pem, hostname=hostname)
    credentials = grpc.ssl_channel_credentials(root_certificates=ca_pem)
    with grpc.secure_channel(collector, credentials) as channel:
        stub = agent_pb2_grpc.EnrollmentStub(channel)
        try:
            reply: agent_pb2.EnrollResponse = stub.Enroll(request, timeout=ENROLL_TIMEOUT_SECONDS)
        except grpc.RpcError as exc:
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


def _enroll_error(collector: str, exc: grpc.RpcError) -> EnrollmentError:
    code = exc.code() if isinstance(exc, grpc.Call) else None
    details = exc.details() if isinstance(exc, grpc.Call) else str(exc)
    if code in _TOKEN_CODES:
        return TokenRejected(f"the collector refused the join token: {details}")
    return CollectorUnreachable(f"enrolment at {collector} failed ({code}): {details}")
