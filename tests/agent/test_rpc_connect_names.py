"""The channel's TLS connection by host name and by address, without the IDNA codec.

``agent.rpc.channel._open_tls`` resolves an ASCII host name itself and names the server
to TLS as bytes, so neither ``socket.getaddrinfo`` nor ``ssl`` loads the IDNA codec
(unicodedata, stringprep), which would stay in the agent (issue 17). The certificate is
still checked against the name: a server certified for another name is refused.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import pytest

from collector.pki import CertificateAuthority

PROBE = """
import asyncio, json, ssl, sys
from pathlib import Path
from agent.rpc.channel import _open_tls
from agent.rpc.tls import client_context

folder = Path(sys.argv[1])
ca_pem = (folder / "ca.pem").read_bytes()

async def main():
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(folder / "cert.pem", folder / "key.pem")

    async def greet(reader, writer):
        writer.write(b"hello")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(greet, "127.0.0.1", 0, ssl=server_tls)
    port = server.sockets[0].getsockname()[1]
    results = {}
    for host in sys.argv[2:]:
        try:
            reader, writer = await _open_tls(host, port, client_context(ca_pem))
            results[host] = (await reader.read()).decode()
            writer.close()
        except (OSError, ssl.SSLError) as exc:
            results[host] = "refused: " + type(exc).__name__
    server.close()
    return results

results = asyncio.run(main())
print(json.dumps({"results": results, "idna": "encodings.idna" in sys.modules}))
"""


def _probe(tmp_path: Path, names: list[str], *hosts: str) -> dict[str, object]:
    ca = CertificateAuthority.create()
    cert_pem, key_pem = ca.issue_server_certificate(names, dt.timedelta(hours=1))
    (tmp_path / "ca.pem").write_bytes(ca.cert_pem)
    (tmp_path / "cert.pem").write_bytes(cert_pem)
    (tmp_path / "key.pem").write_bytes(key_pem)
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(tmp_path), *hosts],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    answer: dict[str, object] = json.loads(out)
    return answer


@pytest.mark.timeout(90)
def test_a_host_name_and_an_address_connect_without_the_idna_codec(tmp_path: Path) -> None:
    answer = _probe(tmp_path, ["localhost", "127.0.0.1"], "localhost", "127.0.0.1")
    assert answer["results"] == {"localhost": "hello", "127.0.0.1": "hello"}
    assert answer["idna"] is False


@pytest.mark.timeout(90)
def test_the_certificate_is_still_checked_against_the_name(tmp_path: Path) -> None:
    answer = _probe(tmp_path, ["collector.example"], "localhost", "127.0.0.1")
    assert answer["results"] == {
        "localhost": "refused: SSLCertVerificationError",
        "127.0.0.1": "refused: SSLCertVerificationError",
    }
