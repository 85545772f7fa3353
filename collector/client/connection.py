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

from proto import api_pb2_grpc

ENV_COLLECTOR = "AFTERCARE_COLLECTOR"
ENV_TOKEN = "AFTERCARE_TOKEN"
ENV_CA_FILE = "AFTERCARE_CA_FILE"
DEFAULT_COLLECTOR = "127.0.0.1:7444"
CALL_TIMEOUT_SECONDS = 15.0


class ClientSetupError(Exception):
    """The client cannot be set up (missing token or CA); the message says what to set."""


@dataclass(frozen=True)
class ClientSettings:
    """Resolved connection settings (flags win over environment)."""

    collector: str
    token: str
    ca_pem: bytes

    @classmethod
    def resolve(
        cls, collector: str | None, token: str | None, ca_file: str | None
    ) -> ClientSettings:
        address = collector or os.environ.get(ENV_COLLECTOR) or DEFAULT_COLLECTOR
        secret = token or os.environ.get(ENV_TOKEN, "")
        if not secret:
            raise ClientSetupError(
                f"no API token: pass --token or set {ENV_TOKEN} "
                "(an admin creates one with `aftercare-collector user add`)"
            )
        ca_path = ca_file or os.environ.get(ENV_CA_FILE, "")
        if not ca_path:
            raise ClientSetupError(
                f"no collector CA: pass --ca-file or set {ENV_CA_FILE} to the collector's "
                "ca.pem (DATA_DIR/ca.pem on the collector)"
            )
        try:
            ca_pem = Path(ca_path).read_bytes()
        except OSError as exc:
            raise ClientSetupError(f"cannot read the collector CA {ca_path}: {exc}") from exc
        return cls(address, secret, ca_pem)


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
