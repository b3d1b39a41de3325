"""Three-way parity on the full MNIST test set: scratchnet.forward (numpy float64), onnxruntime and
onnx.reference, for the model exported by the real CLIs with both input dtypes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from export.parity import (
    NUMPY,
    ONNXRUNTIME,
    REFERENCE,
    Outputs,
    run_numpy,
    run_onnxruntime,
    run_reference,
)
from scratchnet.artifact import load_artifact
from scratchnet.datasets import Dataset
from tests.conftest import run_module

DTYPES = ["float32", "uint8"]
RUNTIMES = [ONNXRUNTIME, REFERENCE]
Runs = dict[str, dict[str, Outputs]]


@pytest.fixture(scope="module")
def runs(model_onnx: Path, model_onnx_uint8: Path, article_artifact: Path, mnist: Dataset) -> Runs:
    """Outputs of every runtime on the 10,000 test images, per input dtype."""
    images = mnist.test_images
    assert images.dtype == np.uint8 and len(images) == 10_000
    artifact = load_artifact(article_artifact)
    reference = run_numpy(artifact.weights, artifact.biases, images)
    feeds = {
        "float32": (onnx.load(model_onnx), (images / 255.0).astype(np.float32)),
        "uint8": (onnx.load(model_onnx_uint8), images),
    }
    return {
        dtype: {
            NUMPY: reference,
            ONNXRUNTIME: run_onnxruntime(model, inputs),
            REFERENCE: run_reference(model, inputs),
        }
        for dtype, (model, inputs) in feeds.items()
    }


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("runtime", RUNTIMES)
def test_labels_identical_on_every_image(runs: Runs, dtype: str, runtime: str) -> None:
    outputs, reference = runs[dtype][runtime], runs[dtype][NUMPY]
    assert outputs.labels.dtype == np.int64 and outputs.labels.shape == (10_000,)
    differing = np.flatnonzero(outputs.labels != reference.labels)
    assert differing.size == 0, f"{runtime} ({dtype}) disagrees with numpy on images {differing}"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("runtime", RUNTIMES)
def test_scores_within_1e4_of_numpy(runs: Runs, dtype: str, runtime: str) -> None:
    outputs = runs[dtype][runtime]
    assert outputs.scores.dtype == np.float32 and outputs.scores.shape == (10_000, 10)
    assert np.abs(outputs.scores - runs[dtype][NUMPY].scores).max() <= 1e-4


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("runtime", RUNTIMES)
def test_probabilities_sum_to_one_and_match_numpy(runs: Runs, dtype: str, runtime: str) -> None:
    probabilities = runs[dtype][runtime].probabilities
    assert probabilities.dtype == np.float32 and probabilities.shape == (10_000, 10)
    assert np.abs(probabilities.sum(axis=1, dtype=np.float64) - 1.0).max() <= 1e-6
    # Softmax moves no probability by more than half the largest change in the scores.
    assert np.abs(probabilities - runs[dtype][NUMPY].probabilities).max() <= 0.5 * 1e-4


def test_accuracy_is_the_article_figure(runs: Runs, mnist: Dataset) -> None:
    for dtype in DTYPES:
        assert (runs[dtype][ONNXRUNTIME].labels == mnist.test_labels).sum() == 9104


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_uint8_model_equals_float32_model_bit_for_bit(runs: Runs, runtime: str) -> None:
    from_float, from_uint8 = runs["float32"][runtime], runs["uint8"][runtime]
    np.testing.assert_array_equal(from_uint8.scores, from_float.scores)
    np.testing.assert_array_equal(from_uint8.labels, from_float.labels)
    np.testing.assert_array_equal(from_uint8.probabilities, from_float.probabilities)


def test_check_command_reports_parity(model_onnx: Path) -> None:
    result = run_module("export", "--check", model_onnx)
    lines = dict(line.split(":", 1) for line in result.stdout.splitlines())
    assert lines["accuracy"].split() == ["0.9104", "(9104/10000", "correct)"]
    assert lines["label agreement"].split()[0] == "10000/10000"
    assert "onnxruntime" in lines["max |score - numpy|"]
    assert lines["numpy parameters"].strip().startswith("the model's own initializers")
    assert lines["parity"].strip() == "OK"


def test_check_command_against_the_artifact(
    model_onnx_uint8: Path, article_artifact: Path, mnist: Dataset, tmp_path: Path
) -> None:
    # A smaller data set through --data: a Keras-style npz of the first 500 test images.
    data = tmp_path / "mnist-500.npz"
    np.savez(
        data,
        x_train=mnist.train_images[:100],
        y_train=mnist.train_labels[:100],
        x_test=mnist.test_images[:500],
        y_test=mnist.test_labels[:500],
    )
    result = run_module("export", "--check", model_onnx_uint8, article_artifact, "--data", data)
    lines = dict(line.split(":", 1) for line in result.stdout.splitlines())
    assert lines["images"].strip() == "500"
    assert lines["numpy parameters"].strip() == f"{article_artifact} (float64)"
    assert lines["label agreement"].split()[0] == "500/500"
    assert lines["parity"].strip() == "OK"
