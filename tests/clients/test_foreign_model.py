"""The client and both CLIs with a classifier this project did not export: other image size, other
class count, uint8 input only, labels only. Nothing about MNIST may be assumed."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray

from clients import Client, InvalidArgumentError
from tests.conftest import RunningServer, run_module, start_server
from tests.server.onnx_models import (
    build_classifier,
    contract_metadata,
    numpy_scores,
    random_classifier,
)

CLASSES, HEIGHT, WIDTH = 5, 12, 9


@pytest.fixture(scope="module")
def parameters() -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Weights [C, H, W] and biases [C] of the foreign model."""
    return random_classifier(CLASSES, HEIGHT, WIDTH, seed=4)


@pytest.fixture(scope="module")
def foreign_server(
    parameters: tuple[NDArray[np.float64], NDArray[np.float64]],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[RunningServer]:
    """A server on a uint8, labels-only model with foreign input and output names."""
    folder = tmp_path_factory.mktemp("foreign")
    model = build_classifier(
        folder / "foreign.onnx",
        *parameters,
        input_dtype="uint8",
        input_name="digits",
        outputs=[("label", "predicted")],
        metadata=contract_metadata(CLASSES),
    )
    running = start_server(model, tmp_dir=folder)
    yield running
    assert running.stop() == 0


@pytest.fixture(scope="module")
def images() -> NDArray[np.uint8]:
    """Random uint8 images of the foreign model's size."""
    return np.random.default_rng(5).integers(0, 256, size=(700, HEIGHT, WIDTH), dtype=np.uint8)


def reference(
    parameters: tuple[NDArray[np.float64], NDArray[np.float64]], images: NDArray[np.uint8]
) -> NDArray[np.int64]:
    """Labels of the numpy forward pass."""
    return np.asarray(numpy_scores(*parameters, images).argmax(axis=1), dtype=np.int64)


def test_client_reads_the_model_and_matches_numpy(
    foreign_server: RunningServer,
    parameters: tuple[NDArray[np.float64], NDArray[np.float64]],
    images: NDArray[np.uint8],
) -> None:
    with Client(foreign_server.target, batch_size=64) as client:
        info = client.model_info()
        assert (info.image_shape, info.num_classes) == ((HEIGHT, WIDTH), CLASSES)
        assert info.input_dtypes == ("uint8",) and info.outputs == ("label",)
        labels = client.predict(images).labels
        with pytest.raises(InvalidArgumentError):
            client.predict(images[:3], probabilities=True)
        with pytest.raises(InvalidArgumentError, match="UINT8"):
            client.predict((images[:3] / 255).astype(np.float32))
    np.testing.assert_array_equal(labels, reference(parameters, images))


def test_score_cli_on_a_foreign_data_set(
    foreign_server: RunningServer,
    parameters: tuple[NDArray[np.float64], NDArray[np.float64]],
    images: NDArray[np.uint8],
    tmp_path: Path,
) -> None:
    rng = np.random.default_rng(6)
    labels = rng.integers(0, CLASSES, size=len(images))
    data = tmp_path / "foreign.npz"
    np.savez(
        data, x_train=images, y_train=np.arange(len(images)) % CLASSES, x_test=images, y_test=labels
    )
    args = ("--target", foreign_server.target, "--data", data, "--json")
    report = json.loads(run_module("clients.score", *args).stdout)
    assert report["accuracy"] == np.mean(reference(parameters, images) == labels)
    assert np.array(report["confusion_matrix"]).shape == (CLASSES, CLASSES)
    assert [c["label"] for c in report["classes"]] == [f"class {k}" for k in range(CLASSES)]


def test_predict_cli_prints_labels_only(
    foreign_server: RunningServer,
    parameters: tuple[NDArray[np.float64], NDArray[np.float64]],
    images: NDArray[np.uint8],
    tmp_path: Path,
) -> None:
    np.save(tmp_path / "three.npy", images[:3])
    args = ("clients.predict", "--target", foreign_server.target, tmp_path / "three.npy")
    expected = reference(parameters, images[:3])
    lines = run_module(*args).stdout.splitlines()
    assert [line.split("  ", 1)[1] for line in lines] == [f"class {k}" for k in expected]
    report = json.loads(run_module(*args, "--json").stdout)
    assert [p["label"] for p in report["predictions"]] == expected.tolist()
    assert all("probabilities" not in p for p in report["predictions"])
