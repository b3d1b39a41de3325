"""Fixtures for the Open Inference Protocol tests: a second server (the uint8 model under another
--model-name), the numpy reference on the MNIST test set, and stubs of our own generated code.

Nothing here imports tritonclient: it runs only in the subprocess of tritonclient_session.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import pytest
from numpy.typing import NDArray

from scratchnet.api.inference import open_inference_grpc_pb2_grpc
from scratchnet.artifact import Artifact
from scratchnet.datasets import Dataset
from scratchnet.forward import probabilities, scores
from tests.conftest import RunningServer, start_server

DIGITS = "digits"
"""The --model-name of the uint8 server (the float32 one keeps the default, scratchnet)."""
DIGITS_MAX_BATCH = 2000
"""The uint8 server's --max-batch: above the tritonclient session's batches of 1000."""


@dataclass(frozen=True)
class Reference:
    """scratchnet.forward's forward pass on the MNIST test set: what every answer must match."""

    labels: NDArray[np.int64]
    scores: NDArray[np.float64]
    probabilities: NDArray[np.float64]


@pytest.fixture(scope="session")
def reference(artifact: Artifact, mnist: Dataset) -> Reference:
    """Labels, scores and probabilities of the article artifact on every test image."""
    class_scores = scores(artifact.weights, artifact.biases, mnist.test_images)
    return Reference(class_scores.argmax(axis=1), class_scores, probabilities(class_scores))


@pytest.fixture(scope="session")
def digits_server(
    model_onnx_uint8: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    """The uint8 article model served as `digits` with --max-batch DIGITS_MAX_BATCH."""
    running = start_server(
        model_onnx_uint8,
        "--model-name",
        DIGITS,
        "--max-batch",
        str(DIGITS_MAX_BATCH),
        tmp_dir=tmp_path_factory.mktemp("digits-server"),
    )
    yield running
    assert running.stop() == 0


@pytest.fixture(scope="session")
def oip(server: RunningServer) -> Iterator[open_inference_grpc_pb2_grpc.GRPCInferenceServiceStub]:
    """Our own generated OIP stub on the shared float32 server (model `scratchnet`)."""
    with grpc.insecure_channel(server.target) as channel:
        yield open_inference_grpc_pb2_grpc.GRPCInferenceServiceStub(channel)


@pytest.fixture(scope="session")
def digits_oip(
    digits_server: RunningServer,
) -> Iterator[open_inference_grpc_pb2_grpc.GRPCInferenceServiceStub]:
    """Our own generated OIP stub on the uint8 server (model `digits`)."""
    with grpc.insecure_channel(digits_server.target) as channel:
        yield open_inference_grpc_pb2_grpc.GRPCInferenceServiceStub(channel)
