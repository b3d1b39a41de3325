"""server.runtime without a network: what it reads from a model file and what it computes."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from server.errors import InvalidArgument
from server.runtime import ModelRuntime
from tests.server.onnx_models import build_classifier, numpy_scores, random_classifier
from trainer.model import probabilities


def test_uint8_pixels_on_a_float32_model_equal_the_scaled_floats(tmp_path: Path) -> None:
    weights, biases = random_classifier(5, 6, 7)
    runtime = ModelRuntime(build_classifier(tmp_path / "m.onnx", weights, biases))
    images = np.random.default_rng(0).integers(0, 256, size=(40, 6, 7), dtype=np.uint8)
    from_uint8 = runtime.predict(images, ["scores"])["scores"]
    from_float = runtime.predict((images / 255.0).astype(np.float32), ["scores"])["scores"]
    np.testing.assert_array_equal(from_uint8, from_float)
    np.testing.assert_allclose(from_uint8, numpy_scores(weights, biases, images), atol=1e-4)


def test_missing_outputs_are_computed_from_the_scores(tmp_path: Path) -> None:
    weights, biases = random_classifier(4, 3, 3)
    path = build_classifier(tmp_path / "m.onnx", weights, biases, outputs=[("scores", "logits")])
    runtime = ModelRuntime(path)
    images = np.random.default_rng(1).random((9, 3, 3), dtype=np.float32)
    result = runtime.predict(images, ["probabilities", "label"])
    assert list(result) == ["probabilities", "label"]
    expected = numpy_scores(weights, biases, images)
    assert result["label"].dtype == np.int64
    np.testing.assert_array_equal(result["label"], expected.argmax(axis=1))
    assert result["probabilities"].dtype == np.float32
    np.testing.assert_allclose(result["probabilities"], probabilities(expected), atol=1e-6)


def test_a_probabilities_only_model_serves_labels_and_probabilities(tmp_path: Path) -> None:
    weights, biases = random_classifier(4, 3, 3)
    outputs = [("probabilities", "softmax_out")]
    runtime = ModelRuntime(build_classifier(tmp_path / "m.onnx", weights, biases, outputs=outputs))
    assert runtime.outputs == ("label", "probabilities")
    images = np.random.default_rng(2).random((5, 3, 3), dtype=np.float32)
    label = runtime.predict(images)["label"]
    np.testing.assert_array_equal(label, numpy_scores(weights, biases, images).argmax(axis=1))
    with pytest.raises(InvalidArgument, match="cannot return scores"):
        runtime.predict(images, ["scores"])
    with pytest.raises(InvalidArgument, match="has no output 'logits'"):
        runtime.predict(images, ["logits"])


def test_metadata_is_read_and_bad_class_labels_fall_back_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    weights, biases = random_classifier(3, 2, 2)
    metadata = {"class_labels": json.dumps(["a", "b"]), "input_scale": "0.5", "note": "x"}
    path = build_classifier(
        tmp_path / "m.onnx", weights, biases, metadata=metadata, model_version=12
    )
    with caplog.at_level(logging.WARNING):
        runtime = ModelRuntime(path, "named")
    assert (runtime.name, runtime.version, runtime.input_scale) == ("named", "12", 0.5)
    assert runtime.class_labels == ["0", "1", "2"]
    assert runtime.metadata == metadata
    assert "ignoring metadata class_labels" in caplog.text


@pytest.mark.parametrize("model_version", [None, 0])
def test_an_unset_or_zero_model_version_is_version_1(
    model_version: int | None, tmp_path: Path
) -> None:
    weights, biases = random_classifier(2, 2, 2)
    path = build_classifier(tmp_path / "m.onnx", weights, biases, model_version=model_version)
    assert ModelRuntime(path).version == "1"
