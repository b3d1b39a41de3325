"""server.health and readiness without a network: SERVING only between load and shutdown."""

from __future__ import annotations

import asyncio
from pathlib import Path

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


async def _status(health: Health, service: str) -> int:
    request = health_pb2.HealthCheckRequest(service=service)
    response = await health.servicer.Check(request, None)
    return int(response.status)


def test_health_is_serving_only_between_load_and_shutdown(tmp_path: Path) -> None:
    weights, biases = random_classifier(2, 3, 3)
    model = load_model(
        build_classifier(tmp_path / "m.onnx", weights, biases), "digits", max_batch=8
    )

    async def scenario() -> None:
        plane = DataPlane(ModelRepository(loading=("digits",)))
        health = Health(["scratchnet.v1.Classifier"])
        await health.loading()
        assert not plane.ready
        for service in ("", "scratchnet.v1.Classifier"):
            assert await _status(health, service) == NOT_SERVING
        with pytest.raises(Unavailable, match="model 'digits' is still loading"):
            plane.model("digits")
        plane.repository.add(model)
        plane.repository.started()
        await health.serving()
        assert plane.ready and plane.model("digits") is model
        for service in ("", "scratchnet.v1.Classifier"):
            assert await _status(health, service) == SERVING
        plane.shutting_down = True
        await health.shutdown()
        assert not plane.ready
        for service in ("", "scratchnet.v1.Classifier"):
            assert await _status(health, service) == NOT_SERVING
        assert plane.model("digits") is model  # calls in flight finish
        with pytest.raises(Unavailable, match="shutting down"):
            async with plane.call_opened():
                pass  # a new call is refused

    asyncio.run(scenario())
