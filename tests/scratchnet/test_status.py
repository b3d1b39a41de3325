"""scratchnet.status: every kind of request error has exactly one status on each transport."""

from __future__ import annotations

import grpc

from scratchnet.errors import (
    ClientError,
    ModelFailed,
    RequestError,
    ResourceExhausted,
    TooLarge,
    Unavailable,
)
from scratchnet.status import CLIENT_ERRORS, INTERNAL, STATUS, status_of

RESOURCE_EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED


def test_every_request_error_kind_has_exactly_one_status() -> None:
    assert set(STATUS) == set(RequestError.__subclasses__())
    # gRPC has one code for "busy" and "too large"; HTTP tells them apart (429: retry; 413: not).
    shared = [kind for kind, status in STATUS.items() if status.grpc == RESOURCE_EXHAUSTED]
    assert shared == [ResourceExhausted, TooLarge]
    assert (STATUS[ResourceExhausted].http, STATUS[TooLarge].http) == (429, 413)
    assert len({status.grpc for status in STATUS.values()}) == len(STATUS) - 1
    # Only a model failing on the request shares a bug's INTERNAL (as Triton reports a backend's
    # failure), with its reason in the message where a bug's stays in the log.
    assert [kind for kind, status in STATUS.items() if status == INTERNAL] == [ModelFailed]
    assert all(400 <= status.http < 600 for status in STATUS.values())
    assert status_of(Unavailable("x")) == (grpc.StatusCode.UNAVAILABLE, 503)


def test_client_errors_are_client_error_kinds() -> None:
    assert all(issubclass(kind, ClientError) for kind in CLIENT_ERRORS.values())
