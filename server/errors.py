"""The server's errors and the one table that maps them to gRPC status codes.

    ScratchnetError (trainer.errors)
    ├── ModelError            a model file the server cannot serve (refused at start)
    └── RequestError          a request the server cannot answer; each kind has one status code
        ├── InvalidArgument   the client's mistake: bad dtype, shape, bytes, values, batch size
        ├── NotFound          an unknown model name or version
        ├── ResourceExhausted more than the server accepts at once
        └── Unavailable       no model loaded yet, or the server is shutting down

Servicers raise these kinds and wrap each call in `status_on_error(context)`, which turns them into
`context.abort(code, message)`; any other exception becomes INTERNAL with a logged traceback.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import grpc

from trainer.errors import ScratchnetError

__all__ = [
    "STATUS_CODES",
    "InvalidArgument",
    "ModelError",
    "NotFound",
    "RequestError",
    "ResourceExhausted",
    "Unavailable",
    "status_on_error",
]

_log = logging.getLogger(__name__)


class ModelError(ScratchnetError):
    """A model file that cannot be served: missing, unreadable or not an image classifier."""


class RequestError(ScratchnetError):
    """A request that cannot be answered; the subclass decides the gRPC status code."""

    @property
    def code(self) -> grpc.StatusCode:
        """The status code this error is reported with."""
        return STATUS_CODES[type(self)]


class InvalidArgument(RequestError):
    """A malformed request: the client must change it."""


class NotFound(RequestError):
    """A request for a model (name or version) this server does not serve."""


class ResourceExhausted(RequestError):
    """A request beyond the server's limits; retrying later or smaller may succeed."""


class Unavailable(RequestError):
    """The server cannot answer now (loading, shutting down); retrying later may succeed."""


STATUS_CODES: dict[type[RequestError], grpc.StatusCode] = {
    InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    NotFound: grpc.StatusCode.NOT_FOUND,
    ResourceExhausted: grpc.StatusCode.RESOURCE_EXHAUSTED,
    Unavailable: grpc.StatusCode.UNAVAILABLE,
}


@contextmanager
def status_on_error(context: grpc.ServicerContext) -> Iterator[None]:
    """Report a RequestError raised in the block as its status code, anything else as INTERNAL.

    Works in unary handlers and inside streaming generators alike. The worker thread survives
    either way: grpc ends the call with the status and the thread takes the next call.
    """
    try:
        yield
    except RequestError as error:
        context.abort(error.code, str(error))
    except Exception:
        if not context.is_active() or _aborted(context):
            # The client is gone (cancelled, deadline passed) or the handler already chose the
            # status itself: there is nothing left to report.
            raise
        _log.exception("unexpected error while handling a call")
        context.abort(grpc.StatusCode.INTERNAL, "internal server error (see the server log)")


def _aborted(context: Any) -> bool:
    # grpc's ServicerContext.code() (grpcio >= 1.38, missing from grpc-stubs) is set by abort().
    code = context.code() if hasattr(context, "code") else None
    return code is not None and code != grpc.StatusCode.OK
