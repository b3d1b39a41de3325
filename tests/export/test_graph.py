"""The graph op for op, its signature and opset rules, and hand-made inputs with exact answers."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from numpy.typing import NDArray
from onnx import TensorProto, numpy_helper

import export
from export import ExportError, ExportOptions, model_bytes
from export.graph import ir_version_for, max_opset
from export.model import validate_model
from export.parity import run_numpy
from scratchnet import contract
from scratchnet import forward as numpy_model

DTYPES = ["float32", "uint8"]
CORE = ["Unsqueeze", "Mul", "ReduceSum", "Add", "ArgMax", "Softmax"]


def _initializer(model: onnx.ModelProto, name: str) -> NDArray[np.generic]:
    (tensor,) = (t for t in model.graph.initializer if t.name == name)
    return numpy_helper.to_array(tensor)


def _node(model: onnx.ModelProto, op_type: str) -> onnx.NodeProto:
    (node,) = (n for n in model.graph.node if n.op_type == op_type)
    return node


def _lit(images: NDArray[np.uint8], dtype: str) -> NDArray[np.generic]:
    """Images as the model of `dtype` takes them."""
    if dtype == "uint8":
        return images
    return numpy_model.scale_pixels(images).astype(np.float32)


@pytest.mark.parametrize("dtype", DTYPES)
def test_ops_are_exactly_the_core(make_artifact, build, dtype: str) -> None:
    model = build(make_artifact(), input_dtype=dtype)
    ops = [node.op_type for node in model.graph.node]
    assert ops == (["Cast", "Div"] if dtype == "uint8" else []) + CORE
    assert not {"MatMul", "Gemm"} & set(ops)


def test_op_attributes_and_constants(make_artifact, build) -> None:
    model = build(make_artifact(), input_dtype="uint8")
    attributes = {
        node.op_type: {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        for node in model.graph.node
    }
    assert attributes["Cast"] == {"to": TensorProto.FLOAT}
    assert attributes["ReduceSum"] == {"keepdims": 0}
    assert attributes["ArgMax"] == {"axis": 1, "keepdims": 0}
    assert attributes["Softmax"] == {"axis": 1}
    unsqueeze, reduce_sum = _node(model, "Unsqueeze"), _node(model, "ReduceSum")
    assert _initializer(model, unsqueeze.input[1]).tolist() == [1]
    assert _initializer(model, reduce_sum.input[1]).tolist() == [2, 3]
    divisor = _initializer(model, _node(model, "Div").input[1])
    assert divisor.dtype == np.float32 and divisor.shape == () and float(divisor) == 255.0


@pytest.mark.parametrize("dtype", DTYPES)
def test_signature_names_types_and_shapes(make_artifact, build, dtype: str) -> None:
    model = build(make_artifact(shape=(4, 6, 9)), input_dtype=dtype)

    def signature(value: onnx.ValueInfoProto) -> tuple[str, int, list[str | int]]:
        tensor = value.type.tensor_type
        dims = [d.dim_param or d.dim_value for d in tensor.shape.dim]
        return value.name, tensor.elem_type, dims

    expected_input = TensorProto.UINT8 if dtype == "uint8" else TensorProto.FLOAT
    assert [signature(v) for v in model.graph.input] == [
        ("images", expected_input, ["batch", 6, 9])
    ]
    assert [signature(v) for v in model.graph.output] == [
        ("scores", TensorProto.FLOAT, ["batch", 4]),
        ("label", TensorProto.INT64, ["batch"]),
        ("probabilities", TensorProto.FLOAT, ["batch", 4]),
    ]
    assert all(v.doc_string for v in [*model.graph.input, *model.graph.output])
    assert contract.OUTPUTS == ("scores", "label", "probabilities") and contract.INPUT == "images"


def test_parameters_are_the_artifact_in_float32(make_artifact, build) -> None:
    artifact = make_artifact()
    model = build(artifact, input_dtype="uint8")
    weights, biases = _initializer(model, "weights"), _initializer(model, "biases")
    assert weights.dtype == np.float32 and biases.dtype == np.float32
    np.testing.assert_array_equal(weights, artifact.weights.astype(np.float32))
    np.testing.assert_array_equal(biases, artifact.biases.astype(np.float32))


def test_default_opset_17_with_ir_8(make_artifact, build) -> None:
    model = build(make_artifact())
    assert export.DEFAULT_OPSET == 17
    assert [(o.domain, o.version) for o in model.opset_import] == [("", 17)]
    assert model.ir_version == 8


# The oldest IR version carrying each opset; None: whatever the installed onnx says for its newest.
@pytest.mark.parametrize(("opset", "ir"), [(13, 7), (15, 8), (18, 8), (21, 10), (None, None)])
def test_other_opsets_build_and_run(
    make_artifact, build, run_both, opset: int | None, ir: int | None
) -> None:
    opset = max_opset() if opset is None else opset
    artifact = make_artifact()
    model = build(artifact, opset=opset)
    assert [(o.domain, o.version) for o in model.opset_import] == [("", opset)]
    assert model.ir_version == (ir_version_for(opset) if ir is None else ir) <= onnx.IR_VERSION
    images = np.random.default_rng(1).integers(0, 256, (4, 5, 7), dtype=np.uint8)
    expected = run_numpy(artifact.weights, artifact.biases, images)
    for outputs in run_both(model, _lit(images, "float32")):
        np.testing.assert_allclose(outputs.scores, expected.scores, atol=1e-5)


@pytest.mark.parametrize(
    ("opset", "words"),
    [(12, "cannot express the graph"), (1, "cannot express the graph"), (None, "newer than")],
)
def test_unusable_opsets_are_refused(make_artifact, build, opset: int | None, words: str) -> None:
    opset = max_opset() + 1 if opset is None else opset
    with pytest.raises(ExportError, match=words) as caught:
        build(make_artifact(), opset=opset)
    assert f"--opset 13..{max_opset()}" in str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("dtype", DTYPES)
def test_all_zero_images_score_the_biases(make_artifact, build, run_both, dtype: str) -> None:
    artifact = make_artifact()
    model = build(artifact, input_dtype=dtype)
    images = np.zeros((2, 5, 7), dtype=np.uint8)
    biases32 = artifact.biases.astype(np.float32)
    for outputs in run_both(model, _lit(images, dtype)):
        np.testing.assert_array_equal(outputs.scores, np.stack([biases32, biases32]))
        assert outputs.labels.tolist() == [int(biases32.argmax())] * 2
        np.testing.assert_allclose(
            outputs.probabilities[0], numpy_model.probabilities(artifact.biases), atol=1e-7
        )
    np.testing.assert_array_equal(
        run_numpy(artifact.weights, artifact.biases, images).scores[0], artifact.biases
    )


@pytest.mark.parametrize("dtype", DTYPES)
def test_one_lit_pixel_scores_its_weight_plus_the_bias(
    make_artifact, build, run_both, dtype: str
) -> None:
    artifact = make_artifact()
    model = build(artifact, input_dtype=dtype)
    classes, height, width = artifact.weights.shape
    # One image per pixel position, that pixel at full ink (255 -> 1.0), all others 0.
    images = (np.eye(height * width, dtype=np.uint8) * 255).reshape(-1, height, width)
    weights32 = artifact.weights.astype(np.float32).reshape(classes, -1)
    expected = weights32.T + artifact.biases.astype(np.float32)  # one float32 rounding, as ONNX
    for outputs in run_both(model, _lit(images, dtype)):
        np.testing.assert_array_equal(outputs.scores, expected)
        np.testing.assert_array_equal(outputs.labels, expected.argmax(axis=1))
    exact = artifact.weights.reshape(classes, -1).T + artifact.biases
    np.testing.assert_allclose(
        run_numpy(artifact.weights, artifact.biases, images).scores, exact, rtol=0, atol=1e-15
    )


def test_ties_go_to_the_first_class_everywhere(make_artifact, build, run_both) -> None:
    artifact = make_artifact()
    artifact.weights[2] = artifact.weights[0]
    artifact.biases[2] = artifact.biases[0] = artifact.biases.max() + 100.0
    model = build(artifact)
    images = np.random.default_rng(2).random((5, 5, 7)).astype(np.float32)
    assert run_numpy(artifact.weights, artifact.biases, images).labels.tolist() == [0] * 5
    for outputs in run_both(model, images):
        assert outputs.labels.tolist() == [0] * 5


def test_uint8_model_gives_bit_identical_outputs_to_float32_model(
    make_artifact, build, run_both
) -> None:
    artifact = make_artifact(shape=(3, 16, 16))
    float_model, uint8_model = (build(artifact, input_dtype=d) for d in DTYPES)
    # Each image holds every pixel value 0..255 once, shifted by one position per image.
    images = np.arange(256, dtype=np.uint8)[None, :] + np.arange(8, dtype=np.uint8)[:, None]
    images = images.reshape(8, 16, 16)
    for from_float, from_uint8 in zip(
        run_both(float_model, _lit(images, "float32")), run_both(uint8_model, images), strict=True
    ):
        for name in ("scores", "labels", "probabilities"):
            np.testing.assert_array_equal(getattr(from_uint8, name), getattr(from_float, name))


def test_batch_is_dynamic(make_artifact, build, run_both) -> None:
    model = build(make_artifact())
    images = np.random.default_rng(3).random((9, 5, 7)).astype(np.float32)
    whole = run_both(model, images)
    first, rest = run_both(model, images[:1]), run_both(model, images[1:])
    for all_at_once, one, others in zip(whole, first, rest, strict=True):
        assert all_at_once.scores.shape == (9, 3) and one.scores.shape == (1, 3)
        np.testing.assert_allclose(
            all_at_once.scores, np.concatenate([one.scores, others.scores]), rtol=0, atol=1e-6
        )


def test_same_inputs_give_identical_bytes(make_artifact, build) -> None:
    first = model_bytes(build(make_artifact()))
    assert model_bytes(build(make_artifact())) == first
    assert model_bytes(build(make_artifact(), model_version=2)) != first
    assert model_bytes(build(make_artifact(seed=1))) != first


def test_validation_failure_is_one_line_export_error(make_artifact, build) -> None:
    model = build(make_artifact())
    model.graph.output[0].type.tensor_type.shape.dim[1].dim_value = 99
    with pytest.raises(ExportError, match="failed validation") as caught:
        validate_model(model)
    assert "\n" not in str(caught.value)
    model = build(make_artifact())
    model.graph.node[1].input[1] = "no_such_tensor"
    with pytest.raises(ExportError, match="failed validation"):
        validate_model(model)


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"input_dtype": "float16"}, "expected one of float32, uint8"),
        ({"model_version": 0}, "expected an integer from 1 to"),
        ({"name": "a/b"}, "model name"),
        ({"name": ""}, "model name"),
        ({"name": ".."}, "model name"),
    ],
)
def test_bad_options_are_refused(make_artifact, options: dict[str, object], words: str) -> None:
    with pytest.raises(ExportError, match=words):
        export.build_model(make_artifact(), "0" * 64, ExportOptions(**options))  # type: ignore[arg-type]
