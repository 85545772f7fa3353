"""The one place where collector errors become gRPC status codes (Teleport's servicer rule).

``ErrorStatusInterceptor`` sits on the collector's grpc.aio server and wraps every
method of every service (unary and streaming alike), so servicers simply raise:

- a ``CollectorError`` ends the RPC with the code from ``status_code`` and the error's
  message as details (logged at INFO; a rate-limited flood at DEBUG);
- an abort the servicer made itself (``context.abort``) passes through unchanged;
- anything else is a bug: logged with its traceback and ended with INTERNAL and a
  fixed message, never the Python exception text (no request ends in UNKNOWN).

Cancellation (``asyncio.CancelledError``, a closed response stream) is not an error
and passes through untouched.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, NoReturn, TypeAlias

import grpc

from collector import errors

log = logging.getLogger(__name__)

Context = grpc.aio.ServicerContext[Any, Any]
Behavior = Callable[..., Any]

INTERNAL_DETAILS = "internal error in the collector; see the collector log"

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


async def abort_for(context: Context, method: str, exc: Exception) -> NoReturn:
    """End the RPC with the status ``exc`` maps to (see the module docstring)."""
    if isinstance(exc, grpc.aio.AbortError):
        raise exc
    if isinstance(exc, errors.CollectorError):
        code = status_code(exc)
        # a rate-limited flood must not flood the log too (auth_failures counts it)
        level = logging.DEBUG if isinstance(exc, errors.RateLimited) else logging.INFO
        log.log(level, "%s refused (%s): %s", method, code.name, exc)
        await context.abort(code, str(exc))
    else:
        log.error("%s failed unexpectedly", method, exc_info=exc)
        await context.abort(grpc.StatusCode.INTERNAL, INTERNAL_DETAILS)
    raise AssertionError("context.abort returned")  # pragma: no cover


def guard(behavior: Behavior, method: str) -> Behavior:
    """``behavior`` (a servicer method, coroutine or async generator) with its
    exceptions turned into status; a synchronous behavior is returned unchanged.

    The wrapper keeps the kind of ``behavior``: grpc.aio picks the calling convention
    (reader/writer, async generator) from it."""
    if inspect.isasyncgenfunction(behavior):

        async def replies(request: Any, context: Context) -> AsyncIterator[Any]:
            try:
                async with contextlib.aclosing(behavior(request, context)) as inner:
                    async for reply in inner:
                        yield reply
            except Exception as exc:
                await abort_for(context, method, exc)

        return replies
    if inspect.iscoroutinefunction(behavior):

        async def call(request: Any, context: Context) -> Any:
            try:
                return await behavior(request, context)
            except Exception as exc:
                await abort_for(context, method, exc)

        return call
    return behavior


Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"


def guarded_handler(handler: Handler, method: str) -> Handler:
    """A copy of ``handler`` whose behavior is wrapped by ``guard``."""
    decode, encode = handler.request_deserializer, handler.response_serializer
    if handler.request_streaming and handler.response_streaming:
        stream_stream = guard(_present(handler.stream_stream), method)
        return grpc.stream_stream_rpc_method_handler(stream_stream, decode, encode)
    if handler.request_streaming:
        stream_unary = guard(_present(handler.stream_unary), method)
        return grpc.stream_unary_rpc_method_handler(stream_unary, decode, encode)
    if handler.response_streaming:
        unary_stream = guard(_present(handler.unary_stream), method)
        return grpc.unary_stream_rpc_method_handler(unary_stream, decode, encode)
    unary_unary = guard(_present(handler.unary_unary), method)
    return grpc.unary_unary_rpc_method_handler(unary_unary, decode, encode)


def _present(behavior: Behavior | None) -> Behavior:
    if behavior is None:  # pragma: no cover - grpc fills the one its flags name
        raise AssertionError("a method handler without the behavior its flags name")
    return behavior


if TYPE_CHECKING:  # the stubs' generics do not exist at run time
    ServerInterceptor = grpc.aio.ServerInterceptor[Any, Any]
else:
    ServerInterceptor = grpc.aio.ServerInterceptor


class ErrorStatusInterceptor(ServerInterceptor):
    """Maps what every servicer method raises to its gRPC status (module docstring)."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler:
        handler = await continuation(handler_call_details)
        if handler is None:  # unknown method: grpc answers UNIMPLEMENTED itself
            return handler
        method: str = handler_call_details.method
        return guarded_handler(handler, method)
