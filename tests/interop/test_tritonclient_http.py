"""The official `tritonclient.http` against the real server's HTTP port, unchanged: binary tensors
(its default) on the whole MNIST test set, JSON tensors, both mixed, and its errors.

tritonclient runs in a subprocess (tritonclient_http_session.py), for the reason given in
test_tritonclient.py; the tests assert on parts of its JSON report.
"""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pytest

from scratchnet.datasets import Dataset
from tests.conftest import RunningServer
from tests.interop.conftest import Reference

SESSION = Path(__file__).with_name("tritonclient_http_session.py")
JSON_IMAGES = 100


@pytest.fixture(scope="module")
def report(
    http_server: RunningServer, mnist: Dataset, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """tritonclient.http's session against the float32 model, FP32 pixels in [0, 1]."""
    path = tmp_path_factory.mktemp("tritonclient-http") / "images.npy"
    np.save(path, (mnist.test_images / 255.0).astype(np.float32))
    url = urlsplit(http_server.http_url).netloc
    result = subprocess.run(
        [sys.executable, str(SESSION), "--url", url, "--model", "scratchnet", "--images", str(path),
         "--json-images", str(JSON_IMAGES)],
        capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert result.returncode == 0, f"tritonclient.http session failed:\n{result.stderr}"
    found: dict[str, Any] = json.loads(result.stdout)
    return found


def test_readiness_and_metadata(report: dict[str, Any]) -> None:
    assert report["readiness"] == {
        "server_live": True,
        "server_ready": True,
        "model_ready": True,
        "model_version_ready": True,
        "unknown_model_ready": False,
    }
    assert report["server_metadata"] == {
        "name": "scratchnet",
        "version": version("scratchnet"),
        "extensions": [
            "classification",
            "binary_tensor_data",
            "model_repository",
            "model_configuration",
            "statistics",
        ],
    }
    metadata = report["model_metadata"]
    assert metadata["inputs"] == [{"name": "images", "datatype": "FP32", "shape": [-1, 28, 28]}]
    assert [output["name"] for output in metadata["outputs"]] == [
        "scores",
        "label",
        "probabilities",
    ]


def test_binary_tensors_give_numpy_labels_on_the_whole_test_set(
    report: dict[str, Any], reference: Reference
) -> None:
    assert np.array_equal(report["labels"], reference.labels)


def test_json_tensors_give_the_same_outputs_as_binary_ones(
    report: dict[str, Any], reference: Reference
) -> None:
    as_json, as_binary = report["json"]["outputs"], report["binary"]["outputs"]
    assert (report["json"]["id"], report["binary"]["id"]) == ("json", "binary")
    assert not any(output["binary"] for output in as_json.values())
    assert all(output["binary"] for output in as_binary.values())
    for name, output in as_json.items():
        assert output["values"] == as_binary[name]["values"], name
    assert as_json["label"]["values"] == reference.labels[:JSON_IMAGES].tolist()
    np.testing.assert_allclose(
        as_json["scores"]["values"], reference.scores[:JSON_IMAGES], rtol=1e-5, atol=1e-4
    )


def test_json_and_binary_outputs_mixed(report: dict[str, Any]) -> None:
    mixed = report["mixed"]
    assert list(mixed) == ["label", "probabilities"]
    assert (mixed["label"]["binary"], mixed["probabilities"]["binary"]) == (False, True)
    assert mixed["probabilities"]["values"] == report["json"]["outputs"]["probabilities"]["values"]


def test_errors_have_the_protocol_status_codes(report: dict[str, Any]) -> None:
    errors = report["errors"]
    assert errors["wrong_shape"] == {
        "status": "400",
        "message": "input 'images' of model 'scratchnet': expected shape [-1,28,28], got [2,27,28]",
    }
    assert errors["unknown_model"] == {
        "status": "404",
        "message": "Request for unknown model: 'no-such-model' is not found",
    }
    assert errors["unknown_version"]["status"] == "404"
    assert errors["model_config"] == {
        "status": "404",
        "message": "Request for unknown model: 'no-such-model' is not found",
    }
