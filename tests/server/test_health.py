"""server.health and readiness without a network: SERVING only between load and shutdown."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2

from scratchnet.errors import Unavailable
from server.dataplane import DataPlane
from server.health import Health
from server.model import load_model
from server.repository import ModelRepository
from tests.server.onnx_models import build_classifier, random_classifier

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class _Context:
    """The one ServicerContext method HealthServicer.Check calls on success."""

    def set_code(self, code: grpc.StatusCode) -> None:
        raise AssertionError(f"unexpected status {code}")


def _status(health: Health, service: str) -> int:
    request = health_pb2.HealthCheckRequest(service=service)
    return int(health.servicer.Check(request, _Context()).status)


def test_health_is_serving_only_between_load_and_shutdown(tmp_path: Path) -> None:
    plane = DataPlane(ModelRepository(loading=("digits",)))
    health = Health(["scratchnet.v1.Classifier"])
    assert not plane.ready
    assert _status(health, "") == _status(health, "scratchnet.v1.Classifier") == NOT_SERVING
    with pytest.raises(Unavailable, match="model 'digits' is still loading"):
        plane.model("digits")
    weights, biases = random_classifier(2, 3, 3)
    model = load_model(
        build_classifier(tmp_path / "m.onnx", weights, biases), "digits", max_batch=8
    )
    plane.repository.add(model)
    plane.repository.started()
    health.serving()
    assert plane.ready and plane.model("digits") is model
    assert _status(health, "") == _status(health, "scratchnet.v1.Classifier") == SERVING
    plane.shutting_down = True
    health.shutdown()
    assert not plane.ready
    assert _status(health, "") == _status(health, "scratchnet.v1.Classifier") == NOT_SERVING
    assert plane.model("digits") is model  # calls in flight finish
