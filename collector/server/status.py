"""The one place where collector errors become gRPC status codes (Teleport's servicer rule)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn, TypeVar

import grpc

from collector import errors

log = logging.getLogger(__name__)

T = TypeVar("T")
S = TypeVar("S")
Req = TypeVar("Req")
Context = grpc.aio.ServicerContext[Any, Any]

_CODES: tuple[tuple[type[errors.CollectorError], grpc.StatusCode], ...] = (
    (errors.TokenError, grpc.StatusCode.UNAUTHENTICATED),
    (errors.Unauthenticated, grpc.StatusCode.UNAUTHENTICATED),
    (errors.PermissionDenied, grpc.StatusCode.PERMISSION_DENIED),
    (errors.AgentRevoked, grpc.StatusCode.PERMISSION_DENIED),
    (errors.NotFound, grpc.StatusCode.NOT_FOUND),
    (errors.Conflict, grpc.StatusCode.ALREADY_EXISTS),
    (errors.InvalidRequest, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.FailedPrecondition, grpc.StatusCode.FAILED_PRECONDITION),
    (errors.StoreError, grpc.StatusCode.UNAVAILABLE),
    (errors.RateLimited, grpc.StatusCode.RESOURCE_EXHAUSTED),
)


def status_code(exc: errors.CollectorError) -> grpc.StatusCode:
    """The gRPC status for a collector error (INTERNAL for anything unmapped)."""
    for kind, code in _CODES:
        if isinstance(exc, kind):
            return code
    return grpc.StatusCode.INTERNAL


async def abort(context: Context, exc: errors.CollectorError) -> NoReturn:
    """Abort the RPC with the status for ``exc`` and its message as details."""
    code = status_code(exc)
    # a rate-limited flood must not flood the log too (auth_failures counts it)
    level = logging.DEBUG if isinstance(exc, errors.RateLimited) else logging.INFO
    log.log(level, "rpc refused (%s): %s", code.name, exc)
    await context.abort(code, str(exc))
    raise AssertionError("context.abort returned")  # pragma: no cover


async def abort_unexpected(context: Context, method: str, exc: Exception) -> NoReturn:
    """Abort with INTERNAL for a bug: logged with its traceback, never shown to the
    caller (no request may end in UNKNOWN with a Python exception text)."""
    log.error("%s failed unexpectedly", method, exc_info=exc)
    await context.abort(
        grpc.StatusCode.INTERNAL, "internal error in the collector; see the collector log"
    )
    raise AssertionError("context.abort returned")  # pragma: no cover


def unary(
    method: Callable[[S, Req, Context], Awaitable[T]],
) -> Callable[[S, Req, Context], Awaitable[T]]:
    """Decorate a unary servicer method so CollectorError aborts with the mapped status
    and anything else with INTERNAL (``abort_unexpected``)."""

    async def wrapper(self: S, request: Req, context: Context) -> T:
        try:
            return await method(self, request, context)
        except errors.CollectorError as exc:
            await abort(context, exc)
        except grpc.aio.AbortError:
            raise
        except Exception as exc:
            await abort_unexpected(context, method.__name__, exc)

    wrapper.__name__ = method.__name__
    wrapper.__doc__ = method.__doc__
    return wrapper
