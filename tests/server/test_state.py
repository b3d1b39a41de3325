"""server.state and server.errors without a network: readiness, health and status codes."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2

from server.errors import STATUS_CODES, RequestError, Unavailable
from server.runtime import ModelRuntime
from server.state import ServingState
from tests.server.onnx_models import build_classifier, random_classifier

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class _Context:
    """The one ServicerContext method HealthServicer.Check calls on success."""

    def set_code(self, code: grpc.StatusCode) -> None:
        raise AssertionError(f"unexpected status {code}")


def _status(state: ServingState, service: str) -> int:
    request = health_pb2.HealthCheckRequest(service=service)
    return int(state.health.Check(request, _Context()).status)


def test_health_is_serving_only_between_load_and_shutdown(tmp_path: Path) -> None:
    state = ServingState("digits", 8, 1024)
    state.add_service("scratchnet.v1.Classifier")
    assert not state.ready
    assert _status(state, "") == _status(state, "scratchnet.v1.Classifier") == NOT_SERVING
    with pytest.raises(Unavailable, match="model 'digits' is still loading"):
        state.require_runtime()
    weights, biases = random_classifier(2, 3, 3)
    runtime = ModelRuntime(build_classifier(tmp_path / "m.onnx", weights, biases), "digits")
    state.set_runtime(runtime)
    assert state.ready and state.require_runtime() is runtime
    assert _status(state, "") == _status(state, "scratchnet.v1.Classifier") == SERVING
    state.begin_shutdown()
    assert not state.ready
    assert _status(state, "") == _status(state, "scratchnet.v1.Classifier") == NOT_SERVING
    assert state.require_runtime() is runtime  # calls in flight finish


def test_every_request_error_kind_has_exactly_one_status_code() -> None:
    kinds = set(RequestError.__subclasses__())
    assert set(STATUS_CODES) == kinds
    assert grpc.StatusCode.INTERNAL not in STATUS_CODES.values()
    assert Unavailable("x").code == grpc.StatusCode.UNAVAILABLE
