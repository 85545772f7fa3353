"""The error interceptor: a real grpc.aio server with handlers of every kind that raise.

Each kind of RPC (unary, response stream, request stream, bidirectional as async
generator and as reader/writer coroutine) must end with the mapped code and the
error's message for a CollectorError, INTERNAL with a fixed text for a bug, and keep
an abort the handler made itself. The servicers hold no mapping of their own.
"""

from __future__ import annotations

import ast
import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest

from collector.errors import (
    AgentRevoked,
    CollectorError,
    Conflict,
    FailedPrecondition,
    InvalidRequest,
    NotFound,
    PermissionDenied,
    RateLimited,
    StoreError,
    TokenUsed,
    Unauthenticated,
)
from collector.runs.errors import UnknownRun
from collector.server.status import INTERNAL_DETAILS, ErrorStatusInterceptor, status_code

Context = grpc.aio.ServicerContext[Any, Any]
SERVER_DIR = Path(__file__).resolve().parents[2] / "collector" / "server"


def _raising(exc: BaseException | None) -> dict[str, grpc.RpcMethodHandler[Any, Any]]:
    """One handler per RPC kind; each raises ``exc`` (or aborts itself when None)
    after doing a little real work, so the error does not come first."""

    async def fail(context: Context) -> None:
        if exc is not None:
            raise exc
        await context.abort(grpc.StatusCode.OUT_OF_RANGE, "the handler's own abort")

    async def unary(request: bytes, context: Context) -> bytes:
        await fail(context)
        return request

    async def unary_stream(request: bytes, context: Context) -> AsyncIterator[bytes]:
        yield request
        await fail(context)

    async def stream_unary(requests: AsyncIterator[bytes], context: Context) -> bytes:
        async for _ in requests:
            break
        await fail(context)
        return b""

    async def stream_stream(
        requests: AsyncIterator[bytes], context: Context
    ) -> AsyncIterator[bytes]:
        async for request in requests:
            yield request
            break
        await fail(context)

    async def reader_writer(requests: AsyncIterator[bytes], context: Context) -> None:
        first = await context.read()
        await context.write(first)
        await fail(context)

    return {
        "Unary": grpc.unary_unary_rpc_method_handler(unary),
        "UnaryStream": grpc.unary_stream_rpc_method_handler(unary_stream),
        "StreamUnary": grpc.stream_unary_rpc_method_handler(stream_unary),
        "StreamStream": grpc.stream_stream_rpc_method_handler(stream_stream),
        "ReaderWriter": grpc.stream_stream_rpc_method_handler(reader_writer),
    }


async def _call(kind: str, exc: BaseException | None) -> grpc.aio.AioRpcError:
    server = grpc.aio.server(interceptors=[ErrorStatusInterceptor()])
    server.add_generic_rpc_handlers(
        [grpc.method_handlers_generic_handler("test.Raising", _raising(exc))]
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            method = f"/test.Raising/{kind}"
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                if kind == "Unary":
                    await channel.unary_unary(method, None, None)(b"x")
                elif kind == "UnaryStream":
                    replies = [r async for r in channel.unary_stream(method, None, None)(b"x")]
                    raise AssertionError(f"no error after {replies}")
                elif kind == "StreamUnary":
                    await channel.stream_unary(method, None, None)(iter([b"x"]))
                else:
                    call = channel.stream_stream(method, None, None)(iter([b"x"]))
                    assert await call.read() == b"x"
                    await call.read()
            return caught.value
    finally:
        await server.stop(None)


KINDS = ("Unary", "UnaryStream", "StreamUnary", "StreamStream", "ReaderWriter")


@pytest.mark.parametrize("kind", KINDS)
def test_a_collector_error_ends_the_rpc_with_its_code_and_message(kind: str) -> None:
    error = asyncio.run(_call(kind, UnknownRun("run-0")))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert error.details() == str(UnknownRun("run-0"))


@pytest.mark.parametrize("kind", KINDS)
def test_a_bug_ends_with_internal_and_hides_its_text(kind: str) -> None:
    error = asyncio.run(_call(kind, KeyError("secret-looking internals")))
    assert error.code() == grpc.StatusCode.INTERNAL
    assert error.details() == INTERNAL_DETAILS


@pytest.mark.parametrize("kind", KINDS)
def test_an_abort_made_by_the_handler_passes_through(kind: str) -> None:
    error = asyncio.run(_call(kind, None))
    assert error.code() == grpc.StatusCode.OUT_OF_RANGE
    assert error.details() == "the handler's own abort"


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (TokenUsed(), grpc.StatusCode.UNAUTHENTICATED),
        (Unauthenticated(), grpc.StatusCode.UNAUTHENTICATED),
        (PermissionDenied("no"), grpc.StatusCode.PERMISSION_DENIED),
        (AgentRevoked("agt-1"), grpc.StatusCode.PERMISSION_DENIED),
        (NotFound("no"), grpc.StatusCode.NOT_FOUND),
        (Conflict("no"), grpc.StatusCode.ALREADY_EXISTS),
        (InvalidRequest("no"), grpc.StatusCode.INVALID_ARGUMENT),
        (FailedPrecondition("no"), grpc.StatusCode.FAILED_PRECONDITION),
        (StoreError("no"), grpc.StatusCode.UNAVAILABLE),
        (RateLimited("no"), grpc.StatusCode.RESOURCE_EXHAUSTED),
        (CollectorError("no"), grpc.StatusCode.INTERNAL),
    ],
)
def test_each_error_family_has_its_code(error: CollectorError, code: grpc.StatusCode) -> None:
    assert status_code(error) == code


def _calls(path: Path, predicate: Callable[[ast.Call], bool]) -> list[int]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [n.lineno for n in ast.walk(tree) if isinstance(n, ast.Call) and predicate(n)]


def test_servicers_map_no_errors_themselves() -> None:
    """context.abort / set_code appear only in the interceptor's module."""

    def maps_status(call: ast.Call) -> bool:
        return isinstance(call.func, ast.Attribute) and call.func.attr in {"abort", "set_code"}

    found = {
        path.name: lines
        for path in SERVER_DIR.glob("*.py")
        if path.name != "status.py" and (lines := _calls(path, maps_status))
    }
    assert found == {}, "raise a CollectorError and let ErrorStatusInterceptor map it"
