"""How the client reaches the collector: address, API token and CA, from flags or environment.

This is the only client module that reads the environment. Commands take the small
``Api`` surface (``call``, ``stream``), so tests can hand them a fake.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import grpc

from common.safe_text import safe
from proto import api_pb2_grpc

ENV_COLLECTOR = "AFTERCARE_COLLECTOR"
ENV_TOKEN = "AFTERCARE_TOKEN"
ENV_CA_FILE = "AFTERCARE_CA_FILE"
ENV_TOKEN_FILE = "AFTERCARE_TOKEN_FILE"
MAX_TOKEN_BYTES = 4096
DEFAULT_COLLECTOR = "127.0.0.1:7444"
CALL_TIMEOUT_SECONDS = 15.0


class ClientSetupError(Exception):
    """The client cannot be set up (missing token or CA); the message says what to set."""


@dataclass(frozen=True)
class ClientSettings:
    """Resolved connection settings (flags win over environment); the token is checked
    to be sendable as a header (``check_token``)."""

    collector: str
    token: str
    ca_pem: bytes

    @classmethod
    def resolve(
        cls,
        collector: str | None,
        token: str | None,
        ca_file: str | None,
        token_file: str | None = None,
    ) -> ClientSettings:
        address = collector or os.environ.get(ENV_COLLECTOR) or DEFAULT_COLLECTOR
        if safe(address) != address or " " in address:
            where = "--collector" if collector else ENV_COLLECTOR
            raise ClientSetupError(
                f"the collector address {safe(address)!r} from {where} is malformed "
                "(use HOST:PORT, e.g. collector.example.com:7444)"
            )
        secret, source = _token(token, token_file)
        if not secret:
            raise ClientSetupError(
                f"no API token: pass --token or --token-file, or set {ENV_TOKEN} or "
                f"{ENV_TOKEN_FILE} (an admin creates one with `aftercare-collector user add`)"
            )
        check_token(secret, source)
        ca_path = ca_file or os.environ.get(ENV_CA_FILE, "")
        if not ca_path:
            raise ClientSetupError(
                f"no collector CA: pass --ca-file or set {ENV_CA_FILE} to the collector's "
                "ca.pem (DATA_DIR/ca.pem on the collector)"
            )
        try:
            ca_pem = Path(ca_path).read_bytes()
        except OSError as exc:
            raise ClientSetupError(
                f"cannot read the collector CA {safe(ca_path)}: {exc.strerror or exc}"
            ) from exc
        if b"-----BEGIN CERTIFICATE-----" not in ca_pem:
            raise ClientSetupError(
                f"the collector CA {safe(ca_path)} holds no PEM certificate "
                "(use DATA_DIR/ca.pem from the collector)"
            )
        return cls(address, secret, ca_pem)


def _token(flag: str | None, flag_file: str | None) -> tuple[str, str]:
    """The token and where it came from: --token, --token-file, AFTERCARE_TOKEN,
    AFTERCARE_TOKEN_FILE, in that order. One trailing newline (as ``echo`` and
    editors leave it) is dropped from the environment and from files."""
    if flag:
        return flag, "--token"
    if flag_file:
        return _read_token_file(flag_file, f"--token-file {safe(flag_file)}")
    env = os.environ.get(ENV_TOKEN, "")
    if env:
        return _drop_newline(env), ENV_TOKEN
    path = os.environ.get(ENV_TOKEN_FILE, "")
    if path:
        return _read_token_file(path, f"{ENV_TOKEN_FILE} {safe(path)}")
    return "", ""


def _read_token_file(path: str, source: str) -> tuple[str, str]:
    try:
        with Path(path).expanduser().open("rb") as handle:
            data = handle.read(MAX_TOKEN_BYTES + 3)
    except OSError as exc:
        raise ClientSetupError(f"cannot read the API token from {source}: {exc.strerror}") from exc
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ClientSetupError(
            f"the API token from {source} is malformed (not UTF-8 text)"
        ) from None
    return _drop_newline(text), source


def _drop_newline(text: str) -> str:
    if text.endswith("\r\n"):
        return text[:-2]
    return text.removesuffix("\n")


def check_token(token: str, source: str) -> None:
    """Refuse a token gRPC cannot send as an ``authorization`` header (printable ASCII,
    no spaces), saying where it came from; the token itself is never echoed."""
    if len(token) > MAX_TOKEN_BYTES:
        raise ClientSetupError(
            f"the API token from {source} is malformed (longer than {MAX_TOKEN_BYTES} "
            "characters; is it the right file?)"
        )
    for position, char in enumerate(token, 1):
        if not "!" <= char <= "~":
            what = _CHAR_NAMES.get(char) or (
                f"a control character ({safe(char)})" if char.isascii() else "a non-ASCII character"
            )
            raise ClientSetupError(
                f"the API token from {source} is malformed ({what} at position {position}; "
                "a token is one word of printable ASCII, as `aftercare-collector user add` "
                "printed it)"
            )


_CHAR_NAMES = {
    "\n": "a newline",
    "\r": "a carriage return",
    "\t": "a tab",
    " ": "a space",
}


class ReplyStream(Protocol):
    """The replies of a server-streaming call: iterate them; ``cancel()`` stops the call."""

    def __iter__(self) -> Iterator[Any]: ...

    def cancel(self) -> bool: ...


class Api(Protocol):
    """What the commands need from a client (``ApiClient``, or a fake in tests)."""

    address: str

    def call(self, method: str, request: Any) -> Any: ...

    def stream(self, method: str, request: Any) -> ReplyStream: ...


class ApiClient:
    """A blocking API stub that sends the bearer token with every call."""

    def __init__(self, settings: ClientSettings) -> None:
        self.address = settings.collector
        credentials = grpc.ssl_channel_credentials(root_certificates=settings.ca_pem)
        self._channel = grpc.secure_channel(settings.collector, credentials)
        self.metadata = (("authorization", f"Bearer {settings.token}"),)
        self.stub = api_pb2_grpc.ApiStub(self._channel)

    def call(self, method: str, request: Any) -> Any:
        """Invoke ``method`` (e.g. "ListAgents"); grpc.RpcError propagates."""
        rpc = getattr(self.stub, method)
        return rpc(request, metadata=self.metadata, timeout=CALL_TIMEOUT_SECONDS)

    def stream(self, method: str, request: Any) -> ReplyStream:
        """Invoke the server-streaming ``method`` without a deadline; grpc.RpcError
        propagates while iterating."""
        rpc = getattr(self.stub, method)
        replies: ReplyStream = rpc(request, metadata=self.metadata)
        return replies

    def close(self) -> None:
        self._channel.close()
