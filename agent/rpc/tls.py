"""The TLS context of the agent's gRPC channels: the pinned CA only, HTTP/2 by ALPN."""

from __future__ import annotations

import contextlib
import os
import ssl
from collections.abc import Iterator

__all__ = ["client_context"]


def client_context(
    ca_pem: bytes, cert_pem: bytes | None = None, key_pem: bytes | None = None
) -> ssl.SSLContext:
    """A context trusting only ``ca_pem``, verifying the server's name, TLS 1.2 or newer.

    With ``cert_pem`` and ``key_pem`` it presents that client certificate (mutual
    TLS). The PEMs are loaded from memory-backed files, never written to disk.
    Raises ssl.SSLError if they are not a matching certificate and key.
    """
    context = ssl.create_default_context(cadata=ca_pem.decode("ascii"))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(["h2"])
    if cert_pem is not None and key_pem is not None:
        with _memory_file(cert_pem) as cert_path, _memory_file(key_pem) as key_path:
            context.load_cert_chain(cert_path, key_path)
    return context


@contextlib.contextmanager
def _memory_file(data: bytes) -> Iterator[str]:
    """A path naming an anonymous in-memory file holding ``data`` (Linux memfd)."""
    fd = os.memfd_create("aftercare-tls", os.MFD_CLOEXEC)
    try:
        os.write(fd, data)
        yield f"/proc/self/fd/{fd}"
    finally:
        os.close(fd)
