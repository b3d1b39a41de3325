"""server.classifier through the data plane, in process: roles, derived outputs, metadata."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from scratchnet.errors import InvalidArgument, ModelError
from scratchnet.forward import probabilities
from server.dataplane import InferRequest, RequestedOutput
from server.model import load_model
from tests.server.conftest import classify, infer, plane_with, tensor
from tests.server.onnx_models import build_classifier, numpy_scores, random_classifier


def test_uint8_pixels_on_a_float32_model_equal_the_scaled_floats(tmp_path: Path) -> None:
    weights, biases = random_classifier(5, 6, 7)
    plane = plane_with(build_classifier(tmp_path / "m.onnx", weights, biases))
    images = np.random.default_rng(0).integers(0, 256, size=(40, 6, 7), dtype=np.uint8)
    from_uint8 = classify(plane, images, "scores")["scores"]
    from_float = classify(plane, (images / 255.0).astype(np.float32), "scores")["scores"]
    np.testing.assert_array_equal(from_uint8, from_float)
    np.testing.assert_allclose(from_uint8, numpy_scores(weights, biases, images), atol=1e-4)


def test_a_float64_model_takes_its_own_type_and_float32_or_uint8_pixels(tmp_path: Path) -> None:
    weights, biases = random_classifier(3, 4, 5)
    path = build_classifier(tmp_path / "m.onnx", weights, biases, input_dtype="float64")
    plane = plane_with(path, "double")
    pixels = np.random.default_rng(2).integers(0, 256, size=(6, 4, 5), dtype=np.uint8)
    scaled = pixels / 255.0
    expected = numpy_scores(weights, biases, pixels)
    for images in (scaled, scaled.astype(np.float32), pixels):
        request = InferRequest("double", "", [tensor(images)], [RequestedOutput("scores")])
        scores = infer(plane, request).outputs["scores"]
        np.testing.assert_allclose(scores, expected, atol=1e-4)
    with pytest.raises(InvalidArgument, match="expected datatype FP64, FP32 or UINT8, got INT32"):
        infer(plane, InferRequest("double", "", [tensor(pixels.astype(np.int32))]))


def test_missing_outputs_are_computed_from_the_scores(tmp_path: Path) -> None:
    weights, biases = random_classifier(4, 3, 3)
    path = build_classifier(tmp_path / "m.onnx", weights, biases, outputs=[("scores", "logits")])
    images = np.random.default_rng(1).random((9, 3, 3), dtype=np.float32)
    result = classify(plane_with(path), images, "probabilities", "label")
    assert list(result) == ["probabilities", "label"]
    expected = numpy_scores(weights, biases, images)
    assert result["label"].dtype == np.int64
    np.testing.assert_array_equal(result["label"], expected.argmax(axis=1))
    assert result["probabilities"].dtype == np.float32
    np.testing.assert_allclose(result["probabilities"], probabilities(expected), atol=1e-6)


def test_a_probabilities_only_model_serves_labels_and_probabilities(tmp_path: Path) -> None:
    weights, biases = random_classifier(4, 3, 3)
    outputs = [("probabilities", "softmax_out")]
    path = build_classifier(tmp_path / "m.onnx", weights, biases, outputs=outputs)
    model = load_model(path, "m", max_batch=8)
    assert model.classifier is not None
    assert model.classifier.outputs == ("label", "probabilities")
    plane = plane_with(path)
    images = np.random.default_rng(2).random((5, 3, 3), dtype=np.float32)
    label = classify(plane, images)["label"]
    np.testing.assert_array_equal(label, numpy_scores(weights, biases, images).argmax(axis=1))
    with pytest.raises(InvalidArgument, match="cannot return scores"):
        classify(plane, images, "scores")
    with pytest.raises(InvalidArgument, match="has no output 'logits'"):
        classify(plane, images, "logits")


def test_metadata_is_read_and_bad_class_labels_fall_back_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    weights, biases = random_classifier(3, 2, 2)
    metadata = {"class_labels": json.dumps(["a", "b"]), "input_scale": "0.5", "note": "x"}
    path = build_classifier(
        tmp_path / "m.onnx", weights, biases, metadata=metadata, model_version=12
    )
    with caplog.at_level(logging.WARNING):
        model = load_model(path, "named", max_batch=8)
    assert model.classifier is not None
    assert (model.name, model.version, model.classifier.input_scale) == ("named", "12", 0.5)
    assert model.classifier.class_labels == ("0", "1", "2")
    assert model.signature.metadata == metadata
    assert "ignoring metadata class_labels" in caplog.text


@pytest.mark.parametrize("model_version", [None, 0])
def test_an_unset_or_zero_model_version_is_version_1(
    model_version: int | None, tmp_path: Path
) -> None:
    weights, biases = random_classifier(2, 2, 2)
    path = build_classifier(tmp_path / "m.onnx", weights, biases, model_version=model_version)
    assert load_model(path, "m", max_batch=8).version == "1"


def test_an_output_role_can_be_declared_in_metadata(tmp_path: Path) -> None:
    weights, biases = random_classifier(3, 2, 2)
    path = build_classifier(
        tmp_path / "m.onnx", weights, biases, outputs=[("scores", "out")],
        metadata={"output_role.out": "probabilities"},
    )  # fmt: skip
    model = load_model(path, "m", max_batch=8)
    assert model.classifier is not None
    assert model.classifier.sources["probabilities"].role == "probabilities"
    bad = build_classifier(
        tmp_path / "bad.onnx", weights, biases, outputs=[("scores", "out")],
        metadata={"output_role.nope": "scores"},
    )  # fmt: skip
    with pytest.raises(ModelError, match=r"metadata output_role.nope names no output"):
        load_model(bad, "m", max_batch=8)
