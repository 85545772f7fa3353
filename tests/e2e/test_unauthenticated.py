"""Unauthenticated callers against a real collector (issue 11, item 4).

- 2,000 bogus enrolments leave a handful of audit rows (per source and minute, with a
  count), escaped and truncated, and are counted in /metrics.
- Bad API tokens are counted and rate-limited the same way.
- A refused CSR (RSA, or a bad signature) does not spend the join token.
"""

from __future__ import annotations

import json
import re
from typing import Any

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from proto import agent_pb2, agent_pb2_grpc, api_pb2, api_pb2_grpc
from tests.support import Collector, run


def _channel(collector: Collector) -> grpc.Channel:
    ca = (collector.data_dir / "ca.pem").read_bytes()
    return grpc.secure_channel(collector.api, grpc.ssl_channel_credentials(root_certificates=ca))


def _csr(key: Any) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "agent")])
    csr = x509.CertificateSigningRequestBuilder().subject_name(name).sign(key, hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.PEM)


def _token(collector: Collector, customer: str) -> str:
    args = collector.join_command(customer)
    return args[args.index("--token") + 1]


def _audit(collector: Collector) -> list[dict[str, Any]]:
    result = run("collector.cli", "audit", "list", "--data-dir", str(collector.data_dir), "--json")
    assert result.returncode == 0, result.stderr
    return list(json.loads(result.stdout))


def _metric(text: str, name: str, kind: str) -> float:
    match = re.search(rf'^{name}{{kind="{kind}"}} (\S+)$', text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def test_2000_bogus_enrolments_make_a_handful_of_audit_rows(collector: Collector) -> None:
    csr = _csr(ec.generate_private_key(ec.SECP256R1()))
    with _channel(collector) as channel:
        enroll = agent_pb2_grpc.EnrollmentStub(channel)
        codes: dict[str, int] = {}
        for i in range(2000):
            request = agent_pb2.EnrollRequest(
                token=f"ajt_bogus{i}", csr_pem=csr, hostname=f"evil\x1b]0;pwned\x07-{i}" + "x" * 300
            )
            try:
                enroll.Enroll(request, timeout=30)
            except grpc.RpcError as exc:
                codes[exc.code().name] = codes.get(exc.code().name, 0) + 1
    assert sum(codes.values()) == 2000
    assert "UNKNOWN" not in codes and "INTERNAL" not in codes, codes
    assert codes.get("RESOURCE_EXHAUSTED", 0) > 1900, codes  # rate-limited per source

    metrics = collector.metrics()
    assert _metric(metrics, "aftercare_auth_failures_total", "enrollment") == 2000

    before = len(_audit(collector))
    collector.stop()  # flushes the per-minute totals
    rows = [r for r in _audit(collector) if r["action"].startswith(("auth.", "agent.enroll"))]
    assert 1 <= len(rows) <= 6, rows  # two per source and minute, not 2,000
    assert len(_audit(collector)) - before <= 4
    totals = [r["details"]["count"] for r in rows if r["action"] == "auth.failures"]
    assert sum(totals) == 2000, rows  # the minute's count (or two minutes', if it turned)
    text = json.dumps(rows)
    assert "\x1b" not in text and "\\u001b" not in text  # escaped as the text \x1b
    assert all(len(str(r["details"].get("sample", ""))) <= 130 for r in rows)


def test_bad_api_tokens_are_counted_and_rate_limited(collector: Collector) -> None:
    with _channel(collector) as channel:
        api = api_pb2_grpc.ApiStub(channel)
        codes = []
        for i in range(60):
            try:
                api.WhoAmI(
                    api_pb2.WhoAmIRequest(), metadata=[("authorization", f"Bearer act_x{i}")]
                )
            except grpc.RpcError as exc:
                codes.append(exc.code())
    assert codes[:30] == [grpc.StatusCode.UNAUTHENTICATED] * 30
    assert set(codes[30:]) == {grpc.StatusCode.RESOURCE_EXHAUSTED}
    assert _metric(collector.metrics(), "aftercare_auth_failures_total", "api_token") == 60


def test_a_refused_rsa_csr_does_not_spend_the_join_token(collector: Collector) -> None:
    token = _token(collector, "acme")
    with _channel(collector) as channel:
        enroll = agent_pb2_grpc.EnrollmentStub(channel)
        rsa_csr = _csr(rsa.generate_private_key(public_exponent=65537, key_size=2048))
        p384_csr = _csr(ec.generate_private_key(ec.SECP384R1()))
        for bad in (rsa_csr, p384_csr, b"not a csr"):
            try:
                enroll.Enroll(agent_pb2.EnrollRequest(token=token, csr_pem=bad, hostname="h1"))
                raise AssertionError("a bad CSR was accepted")
            except grpc.RpcError as exc:
                assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT, exc.details()
        assert "RSA" in _rsa_refusal(enroll, token, rsa_csr)
        good = _csr(ec.generate_private_key(ec.SECP256R1()))
        reply = enroll.Enroll(agent_pb2.EnrollRequest(token=token, csr_pem=good, hostname="h1"))
        assert reply.customer == "acme"


def _rsa_refusal(enroll: Any, token: str, csr: bytes) -> str:
    try:
        enroll.Enroll(agent_pb2.EnrollRequest(token=token, csr_pem=csr, hostname="h1"))
    except grpc.RpcError as exc:
        return str(exc.details())
    raise AssertionError("RSA accepted")
