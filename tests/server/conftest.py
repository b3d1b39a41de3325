"""Server test fixtures: stubs on the shared servers, and a data plane in this process."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from numpy.typing import NDArray

from scratchnet import datatypes
from scratchnet.api.v1 import classifier_pb2_grpc
from server.dataplane import ClassifyRequest, DataPlane, InferRequest, InferResponse, Outcome
from server.model import load_model
from server.repository import ModelRepository
from server.tensors import InputTensor
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


def plane_with(
    path: Path, name: str = "scratchnet", max_batch: int = 1024, **options: Any
) -> DataPlane:
    """A data plane serving the ONNX file at `path` as `name`, in this process; `options` go to
    DataPlane (limits, batching, budget_bytes, ...)."""
    repository = ModelRepository()
    repository.add(load_model(path, name, max_batch=max_batch))
    return DataPlane(repository, **options)


def recorded(plane: DataPlane) -> list[Outcome]:
    """Every outcome `plane`'s observers hear of from now on, as it grows."""
    seen: list[Outcome] = []

    class Recorder:
        def observe(self, outcome: Outcome) -> None:
            seen.append(outcome)

    plane.observers.append(Recorder())
    return seen


def tensor(array: NDArray[Any], name: str = "images", datatype: str = "") -> InputTensor:
    """`array` as a request's raw tensor (its datatype from the table unless given)."""
    return InputTensor(
        name, datatype or datatypes.by_numpy(array.dtype).name, array.shape, raw=array.tobytes()
    )


def classify(
    plane: DataPlane, images: NDArray[Any], *outputs: str, model: str = "scratchnet"
) -> dict[str, NDArray[Any]]:
    """plane.classify on `images` for `outputs` (label only if none)."""
    request = ClassifyRequest(model, "", tensor(images), outputs or ("label",))
    return asyncio.run(plane.classify(request)).outputs


def infer(plane: DataPlane, request: InferRequest) -> InferResponse:
    """plane.infer, awaited on an event loop of its own."""
    return asyncio.run(plane.infer(request))
