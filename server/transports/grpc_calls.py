"""What every gRPC method of this server shares, on grpc.aio: decoding, deadlines, time limits and
gRPC's side of the error table.

Methods are registered by hand from the .proto descriptors, each taking the raw request bytes:
a request that does not parse is INVALID_ARGUMENT (grpc's own answer would be INTERNAL). Unary
methods are registered as client-streaming, so that the handler runs as soon as the call starts
and can close an upload that stalls (`Timeouts.upload_seconds`); the handler reads the one message
with `context.read()` (no async generator, as the request iterator has), and one timer guards
every call still waiting for its message (`TimeLimit`). That costs under 1 % of a batch-1
call's instructions over grpc's plain unary path (docs/performance.md), too little for a second
way to register methods. A stream whose client sends nothing for
`Timeouts.idle_seconds` is closed too. A RequestError becomes
`context.abort(code, message)` with the code scratchnet.status gives it; anything else is
INTERNAL with the traceback in the log only. Every call counts as open in the data plane while it
runs (`DataPlane.call_opened`), which refuses new ones once shutdown begins and lets the drain
wait for the others.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import grpc
from google.protobuf import message_factory
from google.protobuf.message import DecodeError, Message

from scratchnet.errors import DeadlineExceeded, InvalidArgument, RequestError, one_line
from scratchnet.status import INTERNAL, status_of
from server.dataplane import Call, DataPlane

__all__ = ["Context", "TimeLimit", "Timeouts", "add_service", "call_of", "status_on_error"]

_log = logging.getLogger(__name__)
if TYPE_CHECKING:  # grpc's classes are generic in grpc-stubs only
    Context = grpc.aio.ServicerContext[Any, Any]
    Handler = grpc.RpcMethodHandler[Any, Any]
else:
    Context = grpc.aio.ServicerContext
    Handler = grpc.RpcMethodHandler
T = TypeVar("T")
Parser = Callable[[bytes], Any]
Unary = Callable[[Any, Context], Awaitable[Message]]
Streaming = Callable[[AsyncIterator[Any], Context], AsyncIterator[Message]]


@dataclass(frozen=True)
class Timeouts:
    """How long a call may keep the server waiting for its client."""

    upload_seconds: float = 30.0
    """For a request message to arrive once the call started (a stalled upload); 0: no limit."""
    idle_seconds: float = 60.0
    """Between two requests of a stream (an idle stream)."""


def status_on_error(context: Context) -> _StatusOnError:
    """Report a RequestError raised in the `async with` block as its status code, anything else
    as INTERNAL; works in unary handlers and inside streaming handlers alike."""
    return _StatusOnError(context)


class _StatusOnError:
    """status_on_error's block; a class, not a generator: every call enters one."""

    __slots__ = ("_context",)

    def __init__(self, context: Context) -> None:
        self._context = context

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, kind: type[BaseException] | None, error: Any, _: Any) -> bool:
        if error is None or isinstance(error, (asyncio.CancelledError, grpc.aio.AbortError)):
            return False  # no error; or the client is gone, or the status is chosen already
        if isinstance(error, RequestError):
            # One line, a client's name with a line break in it included.
            await self._context.abort(status_of(error).grpc, one_line(str(error)))
        elif isinstance(error, Exception):
            _log.error("unexpected error while handling a call", exc_info=error)
            await self._context.abort(INTERNAL.grpc, "internal server error (see the server log)")
        return False


def call_of(context: Context, api: str, method: str) -> Call:
    """The data plane's view of a call: its API, method and the client's deadline, if any."""
    remaining = context.time_remaining()
    deadline = None if remaining is None else time.monotonic() + remaining
    return Call(api, deadline, method)


def _parse(parse: Parser, data: bytes, method: str, type_name: str) -> Any:
    try:
        return parse(data)
    except DecodeError as error:
        # protobuf's own message names the type; a parser of ours says what it found.
        detail = str(error)
        if type_name not in detail:
            detail = f"Error parsing message with type '{type_name}': {detail}"
        raise InvalidArgument(
            f"the request to {method} is not a valid protobuf message ({detail}), expected one "
            "encoded with the server's .proto (reflection describes it)"
        ) from None


class TimeLimit:
    """Cancels the waits (for a unary call's message, for a stream's next one) that outlast
    `seconds`, with one timer for all of them: an `asyncio.timeout` per wait cost 37k
    instructions (a TimerHandle pushed on the loop's heap and cancelled again), 2.7 % of a
    batch-1 call (docs/performance.md).

    Every wait lasts the same `seconds`, so the waits, in the order they began, are in the order
    of their deadlines: the timer is set for the oldest, and when it fires cancels those past
    their deadline and is set again for the oldest left."""

    __slots__ = ("_cancelled", "_seconds", "_timer", "_waiting")

    def __init__(self, seconds: float) -> None:
        """`seconds`: how long a wait may last (0: no limit)."""
        self._seconds = seconds
        self._waiting: dict[asyncio.Task[Any], float] = {}
        """The task of each wait and its deadline (the loop's clock), oldest first."""
        self._cancelled: set[asyncio.Task[Any]] = set()
        self._timer: asyncio.TimerHandle | None = None

    async def within(self, waiting: Awaitable[T], what: str) -> T:
        """What `waiting` gives; DeadlineExceeded, saying `what`, once `seconds` have passed."""
        if not self._seconds:
            return await waiting
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._seconds
        self._waiting[task] = deadline
        if self._timer is None:
            self._timer = loop.call_at(deadline, self._expire)
        try:
            return await waiting
        except asyncio.CancelledError:
            if task in self._cancelled:
                self._cancelled.discard(task)
                if task.uncancel() == 0:  # ours, and no one else's
                    raise DeadlineExceeded(what) from None
            raise
        finally:
            del self._waiting[task]
            if task in self._cancelled:  # `waiting` ended as it was cancelled: take that back
                self._cancelled.discard(task)
                task.uncancel()

    def _expire(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        self._timer = None
        for task, deadline in self._waiting.items():
            if deadline > now:
                self._timer = loop.call_at(deadline, self._expire)
                return
            if task not in self._cancelled:
                self._cancelled.add(task)
                task.cancel()


async def _message(context: Context, limit: TimeLimit, what: str) -> bytes | None:
    """A unary call's one message (None if there is none), within `limit`."""
    # context.read(), not the request iterator: no async generator to run, and none whose
    # frame keeps the message after the call.
    data = await limit.within(context.read(), what)
    return data if isinstance(data, bytes) else None  # else grpc.aio.EOF: the call ended


async def _next(requests: AsyncIterator[bytes], limit: TimeLimit, what: str) -> bytes | None:
    """A stream's next message, None at its end, within `limit`."""
    try:
        return await limit.within(anext(requests), what)
    except StopAsyncIteration:
        return None


_GRPC_CANCELS_WITHIN = 0.25
"""Seconds in which gRPC cancels a handler whose call it has ended itself (see _left_to_grpc)."""


async def _left_to_grpc() -> None:
    """Give gRPC time to cancel this handler, for a unary call that ended without its message.

    gRPC ends a call whose message is over --max-message-mb itself (RESOURCE_EXHAUSTED: one of
    its own limits, which the metrics and access log leave out), and the handler then reads no
    message, as it does from a client that sent none; the cancellation that tells the two apart
    comes a few loop turns later."""
    await asyncio.sleep(_GRPC_CANCELS_WITHIN)


def _serialize(message: Any) -> bytes:
    """A reply as sent: a message serialized, or bytes a codec has serialized itself."""
    return message if isinstance(message, bytes) else message.SerializeToString()


def _unary_handler(
    method: Any,
    behavior: Unary,
    timeouts: Timeouts,
    plane: DataPlane,
    parse: Parser,
    observed: Call | None,
) -> Handler:
    path = f"/{method.containing_service.full_name}/{method.name}"
    stalled = (
        f"the request to {path} did not arrive within {timeouts.upload_seconds:g} s "
        "(--upload-seconds): the call is closed"
    )

    upload = TimeLimit(timeouts.upload_seconds)

    async def handle(requests: AsyncIterator[bytes], context: Context) -> Any:
        """Answer one call, its message read within the upload limit."""
        del requests  # read through the context instead (see _message)
        started = time.perf_counter_ns()
        async with status_on_error(context):
            try:
                with plane.call_opened():
                    data = await _message(context, upload, stalled)
                    if data is None:
                        await _left_to_grpc()
                        raise InvalidArgument(f"the call to {path} ended without a request message")
                    request = _parse(parse, data, path, method.input_type.full_name)
                    del data  # the message holds a copy of its own: one less per call in flight
                    return await behavior(request, context)
            except Exception as error:  # a refusal, or a bug (INTERNAL): counted either way
                if observed is not None:  # once: the data plane may have already
                    plane.refused(observed, error, started=started)
                raise

    return grpc.stream_unary_rpc_method_handler(handle, response_serializer=_serialize)


def _streaming_handler(
    method: Any,
    behavior: Streaming,
    timeouts: Timeouts,
    plane: DataPlane,
    parse: Parser,
    observed: Call | None,
) -> Handler:
    path = f"/{method.containing_service.full_name}/{method.name}"
    idle = (
        f"no request on this stream of {path} for {timeouts.idle_seconds:g} s "
        "(--stream-idle-seconds): the stream is closed"
    )
    idle_limit = TimeLimit(timeouts.idle_seconds)

    async def requests_of(raw: AsyncIterator[bytes], context: Context) -> AsyncIterator[Any]:
        while True:
            data = await _next(raw, idle_limit, idle)
            if data is None:
                return
            yield _parse(parse, data, path, method.input_type.full_name)

    async def handle(raw: AsyncIterator[bytes], context: Context) -> AsyncIterator[Any]:
        started = time.perf_counter_ns()
        async with status_on_error(context):
            try:
                with plane.call_opened():
                    async for response in behavior(requests_of(raw, context), context):
                        yield response
            except Exception as error:  # a refusal, or a bug (INTERNAL): counted either way
                if observed is not None:
                    plane.refused(observed, error, started=started)
                raise

    return grpc.stream_stream_rpc_method_handler(handle, response_serializer=_serialize)


def add_service(
    server: grpc.aio.Server,
    service: Any,
    servicer: object,
    timeouts: Timeouts,
    plane: DataPlane,
    api: str,
    inference: Mapping[str, Parser],
) -> None:
    """Register every method of `service` (a ServiceDescriptor) that `servicer` implements, its
    requests parsed by protobuf or, for the `inference` methods, by their own parser (which
    raises DecodeError on bad bytes); observers hear of every refused call of those (as `api`).

    Methods the servicer lacks are not registered: gRPC answers them itself, as any unknown
    method (UNIMPLEMENTED, "Method not found!"), and logs nothing.
    """
    handlers = {}
    for method in service.methods:
        behavior = getattr(servicer, method.name, None)
        if behavior is None:
            continue
        parse = (
            inference.get(method.name)
            or message_factory.GetMessageClass(method.input_type).FromString
        )
        observed = Call(api, method=method.name) if method.name in inference else None
        args = (method, behavior, timeouts, plane, parse, observed)
        if method.client_streaming and method.server_streaming:
            handlers[method.name] = _streaming_handler(*args)
        elif not method.client_streaming and not method.server_streaming:
            handlers[method.name] = _unary_handler(*args)
        else:
            raise NotImplementedError(f"{method.full_name}: only unary and bidi methods here")
    generic = grpc.method_handlers_generic_handler(service.full_name, handlers)
    server.add_generic_rpc_handlers((generic,))
