"""Server test fixtures: servers on the exported models, shared by a module where they can be."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from scratchnet_api.v1 import classifier_pb2_grpc
from tests.conftest import RunningServer, start_server


@pytest.fixture(scope="session")
def uint8_server(
    model_onnx_uint8: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    """One server for the session on the uint8 article model."""
    running = start_server(model_onnx_uint8, tmp_dir=tmp_path_factory.mktemp("server-uint8"))
    yield running
    assert running.stop() == 0


@pytest.fixture(scope="session")
def classifier(server: RunningServer) -> Iterator[classifier_pb2_grpc.ClassifierStub]:
    """A v1 stub on the shared float32 server."""
    with grpc.insecure_channel(server.target) as channel:
        yield classifier_pb2_grpc.ClassifierStub(channel)


@pytest.fixture(scope="session")
def uint8_classifier(uint8_server: RunningServer) -> Iterator[classifier_pb2_grpc.ClassifierStub]:
    """A v1 stub on the shared uint8 server."""
    with grpc.insecure_channel(uint8_server.target) as channel:
        yield classifier_pb2_grpc.ClassifierStub(channel)
