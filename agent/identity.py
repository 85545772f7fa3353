"""The agent's identity: its key, client certificate, pinned CA, and enrolment.

State directory layout (written only after a successful enrolment, atomically)::

    STATE/key.pem        private key, generated locally, never leaves the host  0600
    STATE/cert.pem       client certificate (CN = agent id, O = customer)
    STATE/ca.pem         collector CA, verified against the join command's hash
    STATE/identity.json  agent id, customer, agent endpoint, API endpoint
    STATE/spool.db       the store-and-forward spool (see agent.spool)

Renewal replaces key.pem, cert.pem and identity.json together, crash-safely, through
a small redo journal (see ``replace_certificate``)::

    STATE/.renewal-tmp/  the new files being written; discarded if found at load
    STATE/renewal/       the new files, complete and synced: the renewal is
                         committed; ``load_identity`` moves the files still in it
                         into place, then removes the directory

So whenever the agent stops, the next ``load_identity`` sees the old identity or the
new one, never the new key with the old certificate. ``*.new`` files left by agents
before this journal existed are completed or discarded the same way.
"""

from __future__ import annotations

import _ssl  # ENCODING_DER for the certificates of get_unverified_chain()
import contextlib
import datetime as dt
import hashlib
import json
import logging
import os
import socket
import ssl
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from agent.errors import BrokenIdentity, CAHashMismatch, CollectorUnreachable, NotEnrolledError
from agent.rpc.proxy import Proxy, open_tunnel_socket
from common.atomic import fsync_directory

IDENTITY_FILES = ("key.pem", "cert.pem", "ca.pem", "identity.json")
RENEWED_FILES = ("key.pem", "cert.pem", "identity.json")  # key first: see _recover_legacy
RENEWAL_DIR = "renewal"  # committed renewal: complete it
RENEWAL_STAGING = ".renewal-tmp"  # uncommitted renewal: discard it
log = logging.getLogger(__name__)
_MODES = {"key.pem": 0o600, "cert.pem": 0o644, "identity.json": 0o644}


@dataclass(frozen=True)
class Identity:
    """An enrolled agent's credentials and where to reach the collector."""

    agent_id: str
    customer: str
    agent_endpoint: str  # HOST:PORT, mutual TLS
    api_endpoint: str  # HOST:PORT used for enrolment
    key_pem: bytes
    cert_pem: bytes
    ca_pem: bytes

    cert_obtained_ms: int  # when the agent received the certificate
    cert_not_after_ms: int  # its expiry, as the collector reported it

    def cert_validity(self) -> tuple[dt.datetime, dt.datetime]:
        """(obtained, not_after) of the client certificate, UTC.

        Renewal is timed from when the agent obtained the certificate, not from its
        notBefore, which the CA back-dates to tolerate clock skew.
        """
        return _utc(self.cert_obtained_ms), _utc(self.cert_not_after_ms)


def new_key_and_csr(hostname: str) -> tuple[bytes, bytes]:
    """A fresh P-256 key (PKCS#8 PEM) and a CSR signed by it.

    The cryptography library is imported here only: the long-running agent never
    loads it (it would add about 12 MiB of RSS); renewal calls this in a child
    process (``python -m agent.keygen``).
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname or "agent")])
    csr = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())
    return key_pem, csr.public_bytes(serialization.Encoding.PEM)


def split_endpoint(endpoint: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` allowed) to (host, port); ValueError if malformed."""
    host, sep, port = endpoint.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(
            f"invalid address {endpoint!r}: use HOST:PORT, e.g. collector.example:7444"
        )
    return host.strip("[]"), int(port)


def fetch_pinned_ca(
    endpoint: str, expected_hash: str, timeout: float = 10.0, proxy: Proxy | None = None
) -> bytes:
    """Return the collector's CA certificate (PEM) if its SHA-256 matches ``expected_hash``.

    Connects with TLS without trusting anything yet, reads the certificate chain the
    collector presents and picks the certificate whose DER hash is pinned. Nothing
    else is trusted: the gRPC channel is later built with this CA as the only root.
    With ``proxy`` the connection goes through that HTTP proxy (CONNECT).
    Raises CAHashMismatch or CollectorUnreachable.
    """
    want = expected_hash.lower().removeprefix("sha256:")
    host, port = split_endpoint(endpoint)
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # verified below by pin, then by gRPC
    context.set_alpn_protocols(["h2"])
    try:
        with (
            (
                socket.create_connection((host, port), timeout=timeout)
                if proxy is None
                else open_tunnel_socket(proxy, host, port, timeout)
            ) as raw,
            context.wrap_socket(raw, server_hostname=host) as tls,
        ):
            sslobj: Any = tls._sslobj  # type: ignore[attr-defined]  # public from 3.13 on
            chain = sslobj.get_unverified_chain()
    except OSError as exc:
        raise CollectorUnreachable(f"cannot reach the collector at {endpoint}: {exc}") from exc
    ders = [cert.public_bytes(_ssl.ENCODING_DER) for cert in chain or []]
    for der in ders:
        if hashlib.sha256(der).hexdigest() == want:
            return ssl.DER_cert_to_PEM_cert(der).encode()
    raise CAHashMismatch(
        f"the collector at {endpoint} did not present a CA with hash sha256:{want}; "
        "check the --ca-hash in the join command (it may be a different collector)"
    )


def load_identity(state_dir: Path) -> Identity:
    """Read the identity from ``state_dir``; NotEnrolledError if it is missing.

    An interrupted renewal is first completed (it was committed) or discarded (it
    was not), so the key and certificate read always belong together; BrokenIdentity
    if they still do not (files changed by hand).
    """
    recovered = recover_renewal(state_dir)
    if recovered:
        log.warning("an interrupted certificate renewal in %s was %s", state_dir, recovered)
    missing = [name for name in IDENTITY_FILES if not (state_dir / name).exists()]
    if missing:
        raise NotEnrolledError(
            f"{state_dir} holds no enrolment ({', '.join(missing)} missing); "
            "run `aftercare-agent enroll` with the join command from your collector admin"
        )
    meta = json.loads((state_dir / "identity.json").read_text())
    identity = Identity(
        agent_id=meta["agent_id"],
        customer=meta["customer"],
        agent_endpoint=meta["agent_endpoint"],
        api_endpoint=meta["api_endpoint"],
        key_pem=(state_dir / "key.pem").read_bytes(),
        cert_pem=(state_dir / "cert.pem").read_bytes(),
        ca_pem=(state_dir / "ca.pem").read_bytes(),
        cert_obtained_ms=int(meta["cert_obtained_ms"]),
        cert_not_after_ms=int(meta["cert_not_after_ms"]),
    )
    problem = _pair_problem(state_dir / "cert.pem", state_dir / "key.pem")
    if problem:
        raise BrokenIdentity(
            f"{state_dir}: {problem}; restore the state directory from a backup or "
            "enrol again (revoke this agent, then `aftercare-agent enroll`)"
        )
    return identity


def is_enrolled(state_dir: Path) -> bool:
    return all((state_dir / name).exists() for name in IDENTITY_FILES)


def save_identity(state_dir: Path, identity: Identity) -> None:
    """Write every identity file so that a crash leaves either the old state or the new one.

    Files are written to a temporary directory next to ``state_dir`` and then moved in.
    """
    import shutil  # here, not at the top: the running agent rarely needs them (memory)
    import tempfile

    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = Path(tempfile.mkdtemp(prefix=".enroll-", dir=state_dir))
    try:
        _write(tmp / "key.pem", identity.key_pem, 0o600)
        _write(tmp / "cert.pem", identity.cert_pem, 0o644)
        _write(tmp / "ca.pem", identity.ca_pem, 0o644)
        _write(tmp / "identity.json", _meta_json(identity), 0o644)
        for name in IDENTITY_FILES:  # identity.json last: it marks the state enrolled
            os.replace(tmp / name, state_dir / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def replace_certificate(
    state_dir: Path,
    key_pem: bytes,
    cert_pem: bytes,
    not_after_ms: int,
    now_ms: int,
) -> None:
    """Install a renewed key and certificate and record its times, crash-safely.

    Steps: write the three new files into ``.renewal-tmp/`` and sync them; check
    that the key and certificate belong together (ValueError if not: nothing
    changes); rename the directory to ``renewal/`` — the commit point — and then
    move its files into place (``_complete_renewal``). A crash before the commit
    leaves the old identity; after it, ``load_identity`` completes the renewal.
    """
    import shutil  # here, not at the top: the running agent rarely needs it (memory)

    renewed = replace(
        load_identity(state_dir),  # also finishes any earlier interrupted renewal
        key_pem=key_pem,
        cert_pem=cert_pem,
        cert_obtained_ms=now_ms,
        cert_not_after_ms=not_after_ms,
    )
    staging = state_dir / RENEWAL_STAGING
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(mode=0o700)
    contents = {"key.pem": key_pem, "cert.pem": cert_pem, "identity.json": _meta_json(renewed)}
    for name in RENEWED_FILES:
        _write(staging / name, contents[name], _MODES[name])
    problem = _pair_problem(staging / "cert.pem", staging / "key.pem")
    if problem:
        shutil.rmtree(staging, ignore_errors=True)
        raise ValueError(f"renewed certificate refused: {problem}")
    fsync_directory(staging)
    os.rename(staging, state_dir / RENEWAL_DIR)  # the commit point
    fsync_directory(state_dir)
    _complete_renewal(state_dir)


def recover_renewal(state_dir: Path) -> str:
    """Finish a committed renewal or discard an uncommitted one; say which.

    Returns "completed", "discarded" or "" (nothing to do). Idempotent, and safe to
    interrupt: it can be called again from the start.
    """
    if (state_dir / RENEWAL_DIR).is_dir():
        _complete_renewal(state_dir)
        return "completed"
    if (state_dir / RENEWAL_STAGING).exists():
        import shutil  # only here: every start comes this way, and it stays resident

        shutil.rmtree(state_dir / RENEWAL_STAGING, ignore_errors=True)
        fsync_directory(state_dir)
        return "discarded"
    return _recover_legacy(state_dir)


def _complete_renewal(state_dir: Path) -> None:
    """Move what is left in ``renewal/`` into place, then remove the directory."""
    journal = state_dir / RENEWAL_DIR
    for name in RENEWED_FILES:
        # a file already moved before an interruption (or by another reader) is gone
        with contextlib.suppress(FileNotFoundError):
            os.replace(journal / name, state_dir / name)
    fsync_directory(state_dir)
    with contextlib.suppress(FileNotFoundError):
        os.rmdir(journal)
    fsync_directory(state_dir)


def _recover_legacy(state_dir: Path) -> str:
    """``*.new`` files of the former renewal (which replaced key, cert, identity.json
    in that order, after writing and syncing all three): while ``key.pem.new`` exists
    nothing was replaced yet, so discard; otherwise the key is new, so finish."""
    pending = [name for name in RENEWED_FILES if (state_dir / f"{name}.new").exists()]
    if not pending:
        return ""
    if "key.pem" in pending:
        for name in pending:
            (state_dir / f"{name}.new").unlink(missing_ok=True)
        fsync_directory(state_dir)
        return "discarded"
    for name in pending:
        os.replace(state_dir / f"{name}.new", state_dir / name)
    fsync_directory(state_dir)
    return "completed"


def _pair_problem(cert_path: Path, key_path: Path) -> str:
    """ "" if the private key belongs to the certificate, else why not (OpenSSL's check)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        context.load_cert_chain(cert_path, key_path)
    except ssl.SSLError as exc:
        return f"{key_path.name} does not belong to {cert_path.name} ({exc.reason or exc})"
    except OSError as exc:
        return f"cannot read {cert_path.name} and {key_path.name}: {exc.strerror or exc}"
    return ""


def _meta_json(identity: Identity) -> bytes:
    meta = {
        "agent_id": identity.agent_id,
        "customer": identity.customer,
        "agent_endpoint": identity.agent_endpoint,
        "api_endpoint": identity.api_endpoint,
        "cert_obtained_ms": identity.cert_obtained_ms,
        "cert_not_after_ms": identity.cert_not_after_ms,
    }
    return (json.dumps(meta, indent=2) + "\n").encode()


def _utc(ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC)


def _write(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
