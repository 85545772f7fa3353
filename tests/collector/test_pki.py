"""The CA signs what it decides, never what the CSR claims, and refuses bad CSRs."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from agent.identity import new_key_and_csr
from collector.errors import InvalidRequest
from collector.pki import CertificateAuthority, ca_hash


def test_agent_certificate_subject_comes_from_the_ca_not_the_csr() -> None:
    ca = CertificateAuthority.create()
    _, csr = new_key_and_csr("evil-host")
    issued = ca.sign_agent_csr(csr, "ag-1", "acme", dt.timedelta(days=1))
    cert = x509.load_pem_x509_certificate(issued.cert_pem)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "ag-1"
    assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "acme"
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert format(cert.serial_number, "x") == issued.serial_hex
    cert.verify_directly_issued_by(x509.load_pem_x509_certificate(ca.cert_pem))


@pytest.mark.parametrize("csr", [b"", b"not a csr", b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n"])
def test_malformed_csr_is_refused(csr: bytes) -> None:
    with pytest.raises(InvalidRequest):
        CertificateAuthority.create().sign_agent_csr(csr, "ag-1", "acme", dt.timedelta(days=1))


def test_server_certificate_names_and_ca_hash_are_stable() -> None:
    ca = CertificateAuthority.create()
    cert_pem, _ = ca.issue_server_certificate(["localhost", "127.0.0.1"], dt.timedelta(days=1))
    cert = x509.load_pem_x509_certificate(cert_pem)
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["localhost"]
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert ca.hash == ca_hash(ca.cert_pem)
    assert ca.hash.startswith("sha256:") and len(ca.hash) == 7 + 64
    reloaded = CertificateAuthority(ca.cert_pem, ca.key_pem)
    assert reloaded.hash == ca.hash
