"""What every gRPC method of this server shares, on grpc.aio: decoding, deadlines, time limits and
gRPC's side of the error table.

Methods are registered by hand from the .proto descriptors, each taking the raw request bytes:
a request that does not parse is INVALID_ARGUMENT (grpc's own answer would be INTERNAL). Unary
methods are registered as client-streaming, so that the handler runs as soon as the call starts
and can close an upload that stalls (`Timeouts.upload_seconds`); a stream whose client sends
nothing for `Timeouts.idle_seconds` is closed too. A RequestError becomes
`context.abort(code, message)` with the code scratchnet.status gives it; anything else is
INTERNAL with the traceback in the log only. Every call counts as open in the data plane while it
runs (`DataPlane.call_opened`), which refuses new ones once shutdown begins and lets the drain
wait for the others.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import grpc
from google.protobuf import message_factory
from google.protobuf.message import DecodeError, Message

from scratchnet.errors import DeadlineExceeded, InvalidArgument, RequestError
from scratchnet.status import INTERNAL, status_of
from server.dataplane import Call, DataPlane

__all__ = ["Context", "Timeouts", "add_service", "call_of", "status_on_error"]

_log = logging.getLogger(__name__)
_Request = TypeVar("_Request", bound=Message)
if TYPE_CHECKING:  # grpc's classes are generic in grpc-stubs only
    Context = grpc.aio.ServicerContext[Any, Any]
    Handler = grpc.RpcMethodHandler[Any, Any]
else:
    Context = grpc.aio.ServicerContext
    Handler = grpc.RpcMethodHandler
Unary = Callable[[Any, Context], Awaitable[Message]]
Streaming = Callable[[AsyncIterator[Any], Context], AsyncIterator[Message]]


@dataclass(frozen=True)
class Timeouts:
    """How long a call may keep the server waiting for its client."""

    upload_seconds: float = 30.0
    """For a request message to arrive once the call started (a stalled upload)."""
    idle_seconds: float = 60.0
    """Between two requests of a stream (an idle stream)."""


@asynccontextmanager
async def status_on_error(context: Context) -> AsyncIterator[None]:
    """Report a RequestError raised in the block as its status code, anything else as INTERNAL;
    works in unary handlers and inside streaming handlers alike."""
    try:
        yield
    except RequestError as error:
        await context.abort(status_of(error).grpc, str(error))
    except (asyncio.CancelledError, grpc.aio.AbortError):
        raise  # the client is gone, or the status is chosen already
    except Exception:
        _log.exception("unexpected error while handling a call")
        await context.abort(INTERNAL.grpc, "internal server error (see the server log)")


def call_of(context: Context, api: str) -> Call:
    """The data plane's view of a call: its API and the client's deadline, if any."""
    remaining = context.time_remaining()
    deadline = None if remaining is None else time.monotonic() + remaining
    return Call(api, deadline)


def _parse(message_class: type[_Request], data: bytes, method: str) -> _Request:
    try:
        return message_class.FromString(data)
    except DecodeError as error:
        raise InvalidArgument(
            f"the request to {method} is not a valid protobuf message ({error}), expected one "
            "encoded with the server's .proto (reflection describes it)"
        ) from None


async def _next(requests: AsyncIterator[bytes], seconds: float, what: str) -> bytes | None:
    """The next message of the call, None at its end; DeadlineExceeded after `seconds`."""
    try:
        return await asyncio.wait_for(anext(requests), seconds)
    except StopAsyncIteration:
        return None
    except TimeoutError:
        raise DeadlineExceeded(what) from None


def _unary_handler(method: Any, behavior: Unary, timeouts: Timeouts, plane: DataPlane) -> Handler:
    path = f"/{method.containing_service.full_name}/{method.name}"
    request_class = message_factory.GetMessageClass(method.input_type)

    async def handle(requests: AsyncIterator[bytes], context: Context) -> Any:
        async with status_on_error(context), plane.call_opened():
            data = await _next(
                requests,
                timeouts.upload_seconds,
                f"the request to {path} did not arrive within {timeouts.upload_seconds:g} s "
                "(--upload-seconds): the call is closed",
            )
            if data is None:
                raise InvalidArgument(f"the call to {path} ended without a request message")
            request = _parse(request_class, data, path)
            del data  # the message holds a copy of its own: one less per call in flight
            return await behavior(request, context)

    return grpc.stream_unary_rpc_method_handler(
        handle, response_serializer=lambda message: message.SerializeToString()
    )


def _streaming_handler(
    method: Any, behavior: Streaming, timeouts: Timeouts, plane: DataPlane
) -> Handler:
    path = f"/{method.containing_service.full_name}/{method.name}"
    request_class = message_factory.GetMessageClass(method.input_type)

    async def requests_of(raw: AsyncIterator[bytes], context: Context) -> AsyncIterator[Any]:
        while True:
            data = await _next(
                raw,
                timeouts.idle_seconds,
                f"no request on this stream of {path} for {timeouts.idle_seconds:g} s "
                "(--stream-idle-seconds): the stream is closed",
            )
            if data is None:
                return
            yield _parse(request_class, data, path)

    async def handle(raw: AsyncIterator[bytes], context: Context) -> AsyncIterator[Any]:
        async with status_on_error(context), plane.call_opened():
            async for response in behavior(requests_of(raw, context), context):
                yield response

    return grpc.stream_stream_rpc_method_handler(
        handle, response_serializer=lambda message: message.SerializeToString()
    )


def add_service(
    server: grpc.aio.Server, service: Any, servicer: object, timeouts: Timeouts, plane: DataPlane
) -> None:
    """Register every method of `service` (a ServiceDescriptor) that `servicer` implements.

    Methods the servicer lacks are not registered: gRPC answers them itself, as any unknown
    method (UNIMPLEMENTED, "Method not found!"), and logs nothing.
    """
    handlers = {}
    for method in service.methods:
        behavior = getattr(servicer, method.name, None)
        if behavior is None:
            continue
        if method.client_streaming and method.server_streaming:
            handlers[method.name] = _streaming_handler(method, behavior, timeouts, plane)
        elif not method.client_streaming and not method.server_streaming:
            handlers[method.name] = _unary_handler(method, behavior, timeouts, plane)
        else:
            raise NotImplementedError(f"{method.full_name}: only unary and bidi methods here")
    generic = grpc.method_handlers_generic_handler(service.full_name, handlers)
    server.add_generic_rpc_handlers((generic,))
