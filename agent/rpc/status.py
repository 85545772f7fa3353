"""gRPC status codes and the one exception every failed call raises.

Contract: every failure of ``agent.rpc`` — a refused or dropped connection, a TLS
error, a protocol violation, a deadline, or a non-OK status from the server —
surfaces as ``RpcError`` carrying a ``StatusCode`` and a human-readable ``details``.
"""

from __future__ import annotations

import enum
import urllib.parse
from collections.abc import Mapping

__all__ = ["RpcError", "StatusCode", "status_from_headers", "status_from_http"]


class StatusCode(enum.IntEnum):
    """The gRPC status codes (https://grpc.github.io/grpc/core/md_doc_statuscodes.html)."""

    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16


class RpcError(Exception):
    """A call ended with a non-OK status (from the server, or the client's own verdict)."""

    def __init__(self, code: StatusCode, details: str) -> None:
        super().__init__(f"{code.name}: {details}")
        self.code = code
        self.details = details


# How gRPC maps an HTTP status without grpc-status to a code (doc/http-grpc-status-mapping.md).
_HTTP_CODES = {
    400: StatusCode.INTERNAL,
    401: StatusCode.UNAUTHENTICATED,
    403: StatusCode.PERMISSION_DENIED,
    404: StatusCode.UNIMPLEMENTED,
    429: StatusCode.UNAVAILABLE,
    502: StatusCode.UNAVAILABLE,
    503: StatusCode.UNAVAILABLE,
    504: StatusCode.UNAVAILABLE,
}


def status_from_http(http_status: int) -> RpcError:
    """The error for a response whose HTTP status is not 200."""
    code = _HTTP_CODES.get(http_status, StatusCode.UNKNOWN)
    return RpcError(code, f"the server answered HTTP {http_status}, not a gRPC response")


def status_from_headers(headers: Mapping[bytes, bytes]) -> RpcError | None:
    """The status in trailers (or a trailers-only response); None if ``grpc-status`` is absent.

    An OK status is returned as an RpcError with code OK, so callers can tell "ended
    cleanly" from "no status yet".
    """
    raw = headers.get(b"grpc-status")
    if raw is None:
        return None
    try:
        code = StatusCode(int(raw))
    except ValueError:
        return RpcError(StatusCode.UNKNOWN, f"the server sent an invalid grpc-status {raw!r}")
    message = urllib.parse.unquote(headers.get(b"grpc-message", b"").decode("utf-8", "replace"))
    return RpcError(code, message)
