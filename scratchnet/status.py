"""The one table from request errors to status codes, for every transport.

Each RequestError kind has one gRPC status and one HTTP status (the Open Inference Protocol's REST
binding); anything else a server raises is a bug, reported as INTERNAL / 500 with no detail. Two
kinds share RESOURCE_EXHAUSTED, as gRPC has one code for both: ResourceExhausted (busy: HTTP 429,
retry later) and TooLarge (over a limit: HTTP 413, send less).
"""

from __future__ import annotations

from typing import NamedTuple

import grpc

from scratchnet.errors import (
    ClientError,
    DeadlineExceeded,
    DeadlineExceededError,
    FailedPrecondition,
    InvalidArgument,
    InvalidArgumentError,
    ModelFailed,
    NotFound,
    NotFoundError,
    RequestError,
    ResourceExhausted,
    ServerUnavailableError,
    TooLarge,
    Unauthenticated,
    Unavailable,
    Unimplemented,
)

__all__ = ["CLIENT_ERRORS", "INTERNAL", "STATUS", "Status", "status_of"]


class Status(NamedTuple):
    """How one kind of error is reported on each transport."""

    grpc: grpc.StatusCode
    http: int


STATUS: dict[type[RequestError], Status] = {
    InvalidArgument: Status(grpc.StatusCode.INVALID_ARGUMENT, 400),
    Unauthenticated: Status(grpc.StatusCode.UNAUTHENTICATED, 401),
    NotFound: Status(grpc.StatusCode.NOT_FOUND, 404),
    FailedPrecondition: Status(grpc.StatusCode.FAILED_PRECONDITION, 400),
    ResourceExhausted: Status(grpc.StatusCode.RESOURCE_EXHAUSTED, 429),
    TooLarge: Status(grpc.StatusCode.RESOURCE_EXHAUSTED, 413),
    Unavailable: Status(grpc.StatusCode.UNAVAILABLE, 503),
    DeadlineExceeded: Status(grpc.StatusCode.DEADLINE_EXCEEDED, 504),
    Unimplemented: Status(grpc.StatusCode.UNIMPLEMENTED, 501),
    ModelFailed: Status(grpc.StatusCode.INTERNAL, 500),
}
INTERNAL = Status(grpc.StatusCode.INTERNAL, 500)
"""What an unexpected exception is reported as (with the details in the server's log only);
a ModelFailed has the same status, with its reason in the message."""

CLIENT_ERRORS: dict[grpc.StatusCode, type[ClientError]] = {
    grpc.StatusCode.UNAVAILABLE: ServerUnavailableError,
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgumentError,
    grpc.StatusCode.NOT_FOUND: NotFoundError,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceededError,
}
"""The ClientError a client raises for a failed call's status; other codes raise ClientError."""


def status_of(error: RequestError) -> Status:
    """The status `error` is reported with."""
    return STATUS[type(error)]
