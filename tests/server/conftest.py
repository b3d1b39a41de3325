"""Server test fixtures: servers on the exported models, shared by a module where they can be."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest

from scratchnet_api.v1 import classifier_pb2_grpc
from tests.conftest import RunningServer


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
