"""The official `tritonclient[grpc]` against the real server, unchanged, on both input dtypes.

tritonclient runs in a subprocess (tritonclient_session.py): it and our generated code both
register the protobuf package `inference`, which one Python process refuses. Each server is
driven once through the whole session, and the tests below assert on different parts of its
JSON report.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest

from scratchnet.contract import DEFAULT_MAX_BATCH
from scratchnet.datasets import Dataset
from tests.conftest import RunningServer
from tests.interop.conftest import DIGITS, DIGITS_MAX_BATCH, Reference

SESSION = Path(__file__).with_name("tritonclient_session.py")
BATCH = 1000


@dataclass(frozen=True)
class Session:
    """One server as tritonclient saw it, and what it should have seen."""

    report: dict[str, Any]
    model_name: str
    model_version: str
    datatype: str
    max_batch: int


def run_session(
    server: RunningServer, model_name: str, images: np.ndarray[Any, Any], tmp_path: Path
) -> dict[str, Any]:
    """Run tritonclient_session.py against `server` on `images` and return its JSON report."""
    path = tmp_path / "images.npy"
    np.save(path, images)
    result = subprocess.run(
        [
            sys.executable,
            str(SESSION),
            "--target",
            server.target,
            "--model",
            model_name,
            "--images",
            str(path),
            "--batch-size",
            str(BATCH),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, f"tritonclient session failed:\n{result.stderr}"
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def model_version(model: Path) -> str:
    """The ONNX file's model_version, which the server serves the model as."""
    return str(onnx.load(model).model_version)


@pytest.fixture(scope="module", params=["FP32", "UINT8"])
def session(
    request: pytest.FixtureRequest,
    mnist: Dataset,
    tmp_path_factory: pytest.TempPathFactory,
) -> Session:
    """The FP32 model (default name) and the UINT8 model (served as `digits`), each driven once."""
    tmp_path = tmp_path_factory.mktemp(f"tritonclient-{request.param}")
    if request.param == "FP32":
        server: RunningServer = request.getfixturevalue("server")
        model: Path = request.getfixturevalue("model_onnx")
        name, images = "scratchnet", (mnist.test_images / 255.0).astype(np.float32)
        max_batch = DEFAULT_MAX_BATCH
    else:
        server = request.getfixturevalue("digits_server")
        model = request.getfixturevalue("model_onnx_uint8")
        name, images, max_batch = DIGITS, mnist.test_images, DIGITS_MAX_BATCH
    report = run_session(server, name, images, tmp_path)
    return Session(report, name, model_version(model), request.param, max_batch)


def test_health_and_readiness(session: Session) -> None:
    assert session.report["readiness"] == {
        "server_live": True,
        "server_ready": True,
        "model_ready": True,
        "model_version_ready": True,
        "unknown_model_ready": False,
        "unknown_version_ready": False,
    }


def test_server_metadata(session: Session) -> None:
    server = session.report["metadata"]["server"]
    assert server["name"] == "scratchnet"
    assert server["version"] == version("scratchnet")
    assert server.get("extensions", []) == [
        "classification",
        "model_repository",
        "model_configuration",
        "system_shared_memory",
        "statistics",
    ]


def test_model_metadata(session: Session, mnist: Dataset) -> None:
    height, width = mnist.image_shape
    classes = str(mnist.num_classes)
    expected = {
        "name": session.model_name,
        "versions": [session.model_version],
        "platform": "onnxruntime_onnx",
        # int64 fields come as strings in protobuf's JSON.
        "inputs": [
            {
                "name": "images",
                "datatype": session.datatype,
                "shape": ["-1", str(height), str(width)],
            }
        ],
        # The graph's outputs in graph order, as Triton's onnxruntime backend lists them.
        "outputs": [
            {"name": "scores", "datatype": "FP32", "shape": ["-1", classes]},
            {"name": "label", "datatype": "INT64", "shape": ["-1"]},
            {"name": "probabilities", "datatype": "FP32", "shape": ["-1", classes]},
        ],
    }
    assert session.report["metadata"]["model"] == expected
    assert session.report["metadata"]["model_versioned"] == expected


def test_infer_labels_equal_numpy_on_the_test_set(session: Session, reference: Reference) -> None:
    assert np.array_equal(session.report["infer"]["labels"], reference.labels)


def test_infer_returns_raw_outputs_with_metadata(session: Session, reference: Reference) -> None:
    first = session.report["infer"]["first_batch"]
    classes = reference.scores.shape[1]
    assert first["id"] == "batch-0"
    assert (first["model_name"], first["model_version"]) == (
        session.model_name,
        session.model_version,
    )
    assert first["outputs"] == [
        {"name": "scores", "datatype": "FP32", "shape": [BATCH, classes]},
        {"name": "label", "datatype": "INT64", "shape": [BATCH]},
        {"name": "probabilities", "datatype": "FP32", "shape": [BATCH, classes]},
    ]
    np.testing.assert_allclose(first["scores"], reference.scores[:BATCH], rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(
        first["probabilities"], reference.probabilities[:BATCH], rtol=1e-4, atol=1e-6
    )


def test_requested_output_subsets(session: Session, reference: Reference) -> None:
    subsets = session.report["subsets"]
    assert [o["name"] for o in subsets["label"]["outputs"]] == ["label"]
    assert subsets["label"]["values"]["label"] == reference.labels[:3].tolist()
    assert [o["name"] for o in subsets["probabilities,scores"]["outputs"]] == [
        "probabilities",
        "scores",
    ]
    assert [o["name"] for o in subsets["scores"]["outputs"]] == ["scores"]
    np.testing.assert_allclose(
        subsets["scores"]["values"]["scores"], reference.scores[:3], rtol=1e-5, atol=1e-4
    )


def test_stream_answers_in_order_and_survives_a_bad_request(
    session: Session, reference: Reference, mnist: Dataset
) -> None:
    stream = session.report["stream"]
    responses = stream["responses"]
    bad = responses.pop(stream["bad_at"])
    height, width = mnist.image_shape
    assert (
        f"expected shape [-1,{height},{width}], got [{BATCH},{height},{width - 1}]" in bad["error"]
    )
    assert [r["id"] for r in responses] == [f"chunk-{i}" for i in range(len(responses))]
    labels = [label for r in responses for label in r["labels"]]
    assert np.array_equal(labels, reference.labels)


def test_errors_have_the_protocol_status_codes(session: Session, mnist: Dataset) -> None:
    errors = session.report["errors"]
    height, width = mnist.image_shape
    model = session.model_name
    invalid = "StatusCode.INVALID_ARGUMENT"
    assert errors["wrong_shape"]["status"] == invalid
    assert (
        f"input 'images' of model '{model}': expected shape [-1,{height},{width}], "
        f"got [2,{height - 1},{width}]" in errors["wrong_shape"]["message"]
    )
    assert errors["wrong_datatype"]["status"] == invalid
    assert "got FP64" in errors["wrong_datatype"]["message"]
    assert errors["byte_size"]["status"] == invalid
    itemsize = 4 if session.datatype == "FP32" else 1
    pixels = height * width
    assert (
        f"expected {pixels * itemsize} bytes for shape [1,{height},{width}]"
        in errors["byte_size"]["message"]
    )
    assert errors["byte_size"]["message"].endswith(f"got {2 * pixels * itemsize}")
    assert errors["unknown_input"] == {
        "status": invalid,
        "message": f"unexpected inference input 'pixels' for model '{model}', expected images",
    }
    assert errors["unknown_output"]["status"] == invalid
    assert errors["unknown_output"]["message"].startswith(
        f"unexpected inference output 'logits' for model '{model}'"
    )
    assert errors["unknown_model"] == {
        "status": "StatusCode.NOT_FOUND",
        "message": "Request for unknown model: 'no-such-model' is not found",
    }
    assert errors["unknown_model_metadata"] == errors["unknown_model"]
    assert errors["unknown_version"] == {
        "status": "StatusCode.NOT_FOUND",
        "message": f"Request for unknown model: '{model}' version 999999 is not found",
    }


def test_class_count_answers_the_top_classes_with_their_labels(
    session: Session, reference: Reference
) -> None:
    found = session.report["classification"]
    assert [output["datatype"] for output in found["outputs"]] == ["BYTES", "BYTES"]
    assert [output["shape"] for output in found["outputs"]] == [[5, 3], [5, 3]]
    for name, values in (("probabilities", reference.probabilities), ("scores", reference.scores)):
        for row, strings in zip(values[:5], found[name], strict=True):
            parsed = [text.split(":") for text in strings]
            indices = [int(index) for _, index, _ in parsed]
            assert indices == list(np.argsort(-row, kind="stable")[:3])
            assert [label for _, _, label in parsed] == [str(index) for index in indices]
            assert [float(value) for value, _, _ in parsed] == pytest.approx(
                row[indices], abs=2e-6, rel=1e-4
            )


def test_model_config_is_the_completed_configuration(session: Session, mnist: Dataset) -> None:
    config = session.report["config"]["config"]
    height, width = mnist.image_shape
    assert config["name"] == session.model_name
    assert config["platform"] == "onnxruntime_onnx"
    assert config["max_batch_size"] == session.max_batch
    assert config["input"] == [
        {
            "name": "images",
            "data_type": f"TYPE_{session.datatype}",
            "dims": [str(height), str(width)],
        }
    ]
    assert [output["name"] for output in config["output"]] == ["scores", "label", "probabilities"]


def test_statistics_count_the_session_calls(session: Session, mnist: Dataset) -> None:
    (stats,) = session.report["statistics"]["model_stats"]
    assert stats["name"] == session.model_name
    # At least every infer batch and stream chunk of the session succeeded.
    batches = -(-len(mnist.test_images) // BATCH)
    assert int(stats["inference_stats"]["success"]["count"]) >= 2 * batches
    assert int(stats["inference_stats"]["fail"]["count"]) >= 1
    assert int(stats["inference_count"]) >= 2 * len(mnist.test_images)


def test_tensors_in_system_shared_memory(
    server: RunningServer, mnist: Dataset, reference: Reference, tmp_path: Path
) -> None:
    images = (mnist.test_images[:64] / 255.0).astype(np.float32)
    np.save(tmp_path / "images.npy", images)
    result = subprocess.run(
        [sys.executable, str(SESSION.with_name("tritonclient_shm.py")), "--target",
         server.target, "--model", "scratchnet", "--images", str(tmp_path / "images.npy")],
        capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert set(report["status"]["regions"]) == {"in", "out"}
    np.testing.assert_allclose(report["scores"], reference.scores[:64], rtol=1e-5, atol=1e-4)
    assert report["label"] == reference.labels[:64].tolist()
    assert report["unknown_region"]["status"] == "StatusCode.INVALID_ARGUMENT"
    assert "shared memory region 'nope' is not registered" in report["unknown_region"]["message"]
    assert report["short_region"]["status"] == "StatusCode.INVALID_ARGUMENT"
    scores_bytes = reference.scores[:64].size * 4
    assert (
        f"output 'scores' of model 'scratchnet': {scores_bytes} bytes do not fit in the "
        f"{scores_bytes - 4} bytes given in shared memory region 'out'"
    ) in report["short_region"]["message"]
    assert report["status_after"].get("regions", {}) == {}
