"""scratchnet.status: every kind of request error has exactly one status on each transport."""

from __future__ import annotations

import grpc

from scratchnet.errors import ClientError, ModelFailed, RequestError, Unavailable
from scratchnet.status import CLIENT_ERRORS, INTERNAL, STATUS, status_of


def test_every_request_error_kind_has_exactly_one_status() -> None:
    assert set(STATUS) == set(RequestError.__subclasses__())
    assert len({status.grpc for status in STATUS.values()}) == len(STATUS)
    # Only a model failing on the request shares a bug's INTERNAL (as Triton reports a backend's
    # failure), with its reason in the message where a bug's stays in the log.
    assert [kind for kind, status in STATUS.items() if status == INTERNAL] == [ModelFailed]
    assert all(400 <= status.http < 600 for status in STATUS.values())
    assert status_of(Unavailable("x")) == (grpc.StatusCode.UNAVAILABLE, 503)


def test_client_errors_are_client_error_kinds() -> None:
    assert all(issubclass(kind, ClientError) for kind in CLIENT_ERRORS.values())
