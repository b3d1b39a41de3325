"""gRPC's side of the error table: a RequestError becomes `context.abort(code, message)` with the
code scratchnet.status gives it; anything else is INTERNAL with the traceback in the log only.

A request whose bytes are not a valid protobuf message never reaches a servicer: the
`RejectUndecodableRequests` interceptor answers it with INVALID_ARGUMENT.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import grpc
from google.protobuf.message import DecodeError

from scratchnet.errors import InvalidArgument, RequestError
from scratchnet.status import INTERNAL, STATUS, status_of

__all__ = ["RejectUndecodableRequests", "status_on_error"]

_log = logging.getLogger(__name__)


@contextmanager
def status_on_error(context: grpc.ServicerContext) -> Iterator[None]:
    """Report a RequestError raised in the block as its status code, anything else as INTERNAL.

    Works in unary handlers and inside streaming generators alike. The worker thread survives
    either way: grpc ends the call with the status and the thread takes the next call.
    """
    try:
        yield
    except RequestError as error:
        context.abort(status_of(error).grpc, str(error))
    except Exception:
        if not context.is_active() or _aborted(context):
            # The client is gone (cancelled, deadline passed) or the handler already chose the
            # status itself: there is nothing left to report.
            raise
        _log.exception("unexpected error while handling a call")
        context.abort(INTERNAL.grpc, "internal server error (see the server log)")


def _aborted(context: Any) -> bool:
    # grpc's ServicerContext.code(), set by abort(), is missing from grpc-stubs: hence Any.
    code = context.code()
    return code is not None and code != grpc.StatusCode.OK


if TYPE_CHECKING:  # grpc's classes are generic in grpc-stubs only
    _Handler = grpc.RpcMethodHandler[Any, Any]
    _Interceptor = grpc.ServerInterceptor[Any, Any]
else:
    _Handler = grpc.RpcMethodHandler
    _Interceptor = grpc.ServerInterceptor


class RejectUndecodableRequests(_Interceptor):
    """Answer a request that does not parse as its method's message with INVALID_ARGUMENT.

    grpc's own answer is INTERNAL ("Exception deserializing request!") and a logged traceback,
    for what is a client's mistake: typically a client built from another version of the .proto.
    Applies to the methods of `services` (full names); others are left as grpc registered them.
    """

    def __init__(self, services: Collection[str]) -> None:
        self._prefixes = tuple(f"/{service}/" for service in services)
        self._handlers: dict[str, _Handler] = {}

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], _Handler | None],
        details: grpc.HandlerCallDetails,
    ) -> _Handler | None:
        """The method's handler, with a parser that turns bad bytes into INVALID_ARGUMENT."""
        method = details.method
        if method in self._handlers:
            return self._handlers[method]
        handler = continuation(details)
        if handler is None or handler.request_deserializer is None:
            return handler
        if method.startswith(self._prefixes):
            handler = _rejecting_undecodable(handler, method)
        self._handlers[method] = handler
        return handler


class _Undecodable:
    """Stands for a request whose bytes did not parse; `reason` says why."""

    def __init__(self, reason: str) -> None:
        self.reason = reason


def _rejecting_undecodable(handler: _Handler, method: str) -> _Handler:
    parse = handler.request_deserializer
    assert parse is not None  # RejectUndecodableRequests wraps only handlers that parse
    streaming = handler.request_streaming
    behavior = (
        handler.unary_unary or handler.unary_stream or handler.stream_unary or handler.stream_stream
    )
    assert behavior is not None

    def tolerant_parse(data: bytes) -> Any:
        try:
            return parse(data)
        except DecodeError as error:
            return _Undecodable(
                f"the request to {method} is not a valid protobuf message ({error}), expected "
                "one encoded with the server's .proto (reflection describes it)"
            )

    def checked(request: Any, context: grpc.ServicerContext) -> Any:
        if isinstance(request, _Undecodable):
            context.abort(STATUS[InvalidArgument].grpc, request.reason)
        return request

    def each_checked(requests: Iterator[Any], context: grpc.ServicerContext) -> Iterator[Any]:
        for request in requests:
            yield checked(request, context)

    def wrapped(request: Any, context: grpc.ServicerContext) -> Any:
        check = each_checked if streaming else checked
        return behavior(check(request, context), context)

    make = {
        (False, False): grpc.unary_unary_rpc_method_handler,
        (False, True): grpc.unary_stream_rpc_method_handler,
        (True, False): grpc.stream_unary_rpc_method_handler,
        (True, True): grpc.stream_stream_rpc_method_handler,
    }[streaming, handler.response_streaming]
    serialize = handler.response_serializer
    return make(wrapped, request_deserializer=tolerant_parse, response_serializer=serialize)
