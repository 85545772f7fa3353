"""The one place where collector errors become gRPC status codes (Teleport's servicer rule)."""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Concatenate, NoReturn, ParamSpec, TypeVar

import grpc

from collector import errors

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")
S = TypeVar("S")
Req = TypeVar("Req")

_CODES: tuple[tuple[type[errors.CollectorError], grpc.StatusCode], ...] = (
    (errors.TokenError, grpc.StatusCode.UNAUTHENTICATED),
    (errors.Unauthenticated, grpc.StatusCode.UNAUTHENTICATED),
    (errors.PermissionDenied, grpc.StatusCode.PERMISSION_DENIED),
    (errors.AgentRevoked, grpc.StatusCode.PERMISSION_DENIED),
    (errors.NotFound, grpc.StatusCode.NOT_FOUND),
    (errors.Conflict, grpc.StatusCode.ALREADY_EXISTS),
    (errors.InvalidRequest, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.StoreError, grpc.StatusCode.UNAVAILABLE),
)


def status_code(exc: errors.CollectorError) -> grpc.StatusCode:
    """The gRPC status for a collector error (INTERNAL for anything unmapped)."""
    for kind, code in _CODES:
        if isinstance(exc, kind):
            return code
    return grpc.StatusCode.INTERNAL


async def abort(context: grpc.aio.ServicerContext[Any, Any], exc: errors.CollectorError) -> NoReturn:
    """Abort the RPC with the status for ``exc`` and its message as details."""
    code = status_code(exc)
    log.info("rpc refused (%s): %s", code.name, exc)
    await context.abort(code, str(exc))
    raise AssertionError("context.abort returned")  # pragma: no cover


def unary(
    method: Callable[Concatenate[S, Req, grpc.aio.ServicerContext[Any, Any], P], Awaitable[T]],
) -> Callable[Concatenate[S, Req, grpc.aio.ServicerContext[Any, Any], P], Awaitable[T]]:
    """Decorate a unary servicer method so CollectorError aborts with the mapped status."""

    @functools.wraps(method)
    async def wrapper(
        self: S,
        request: Req,
        context: grpc.aio.ServicerContext[Any, Any],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        try:
            return await method(self, request, context, *args, **kwargs)
        except errors.CollectorError as exc:
            await abort(context, exc)

    return wrapper


def streaming(
    method: Callable[Concatenate[S, Req, grpc.aio.ServicerContext[Any, Any], P], AsyncIterator[T]],
) -> Callable[Concatenate[S, Req, grpc.aio.ServicerContext[Any, Any], P], AsyncIterator[T]]:
    """Like ``unary`` for response-streaming servicer methods (async generators)."""

    @functools.wraps(method)
    async def wrapper(
        self: S,
        request: Req,
        context: grpc.aio.ServicerContext[Any, Any],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> AsyncIterator[T]:
        try:
            async for item in method(self, request, context, *args, **kwargs):
                yield item
        except errors.CollectorError as exc:
            await abort(context, exc)

    return wrapper
