"""End to end: models scratchnet did not export — served if they are classifiers, else refused."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from scratchnet.api.v1 import classifier_pb2 as pb
from scratchnet.api.v1 import classifier_pb2_grpc
from scratchnet.forward import probabilities
from tests.conftest import run_module, start_server
from tests.server.onnx_models import build_classifier, numpy_scores, random_classifier


def test_foreign_classifier_with_other_names_and_shapes_is_served_like_numpy(
    tmp_path: Path,
) -> None:
    classes, height, width = 4, 12, 9
    weights, biases = random_classifier(classes, height, width, seed=3)
    model = build_classifier(
        tmp_path / "foreign.onnx",
        weights,
        biases,
        input_name="pixels",
        channel_axis=True,
        outputs=[("scores", "logits")],
        model_version=7,
    )
    rng = np.random.default_rng(4)
    images = rng.integers(0, 256, size=(50, height, width), dtype=np.uint8)
    floats = rng.random(size=(20, height, width), dtype=np.float32)
    server = start_server(model, "--model-name", "digits", tmp_dir=tmp_path)
    try:
        with grpc.insecure_channel(server.target) as channel:
            stub = classifier_pb2_grpc.ClassifierStub(channel)
            info = stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=30)
            assert (info.model_name, info.model_version) == ("digits", "7")
            assert list(info.input_shape) == [-1, height, width]
            assert list(info.input_dtypes) == [pb.DATA_TYPE_FLOAT32, pb.DATA_TYPE_UINT8]
            assert info.num_classes == classes
            assert list(info.class_labels) == ["0", "1", "2", "3"]
            assert list(info.outputs) == ["label", "scores", "probabilities"]
            for pixels, dtype in ((images, pb.DATA_TYPE_UINT8), (floats, pb.DATA_TYPE_FLOAT32)):
                tensor = pb.Tensor(dtype=dtype, shape=pixels.shape, data=pixels.tobytes())
                response = stub.Predict(
                    pb.PredictRequest(images=tensor, return_scores=True, return_probabilities=True),
                    timeout=30,
                )
                expected = numpy_scores(weights, biases, pixels)
                np.testing.assert_array_equal(response.labels, expected.argmax(axis=1))
                got = np.reshape(response.scores, (-1, classes))
                np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
                np.testing.assert_allclose(
                    np.reshape(response.probabilities, (-1, classes)),
                    probabilities(expected),
                    atol=1e-5,
                )
            wrong = pb.Tensor(dtype=pb.DATA_TYPE_UINT8, shape=[2, 28, 28], data=bytes(2 * 784))
            with pytest.raises(grpc.RpcError) as raised:
                stub.Predict(pb.PredictRequest(images=wrong), timeout=30)
            assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert raised.value.details() == (
                "input 'pixels' of model 'digits': expected shape [-1,12,9], got [2,28,28]"
            )
    finally:
        assert server.stop() == 0


def test_labels_only_uint8_model_serves_labels_and_refuses_scores(tmp_path: Path) -> None:
    weights, biases = random_classifier(3, 5, 6, seed=5)
    model = build_classifier(
        tmp_path / "labels.onnx",
        weights,
        biases,
        input_dtype="uint8",
        input_name="x",
        outputs=[("label", "class_id")],
        metadata={"class_labels": json.dumps(["cat", "dog", "emu"])},
    )
    images = np.random.default_rng(6).integers(0, 256, size=(30, 5, 6), dtype=np.uint8)
    server = start_server(model, tmp_dir=tmp_path)
    try:
        with grpc.insecure_channel(server.target) as channel:
            stub = classifier_pb2_grpc.ClassifierStub(channel)
            info = stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=30)
            assert list(info.input_dtypes) == [pb.DATA_TYPE_UINT8]
            assert list(info.outputs) == ["label"]
            assert list(info.class_labels) == ["cat", "dog", "emu"]
            tensor = pb.Tensor(dtype=pb.DATA_TYPE_UINT8, shape=images.shape, data=images.tobytes())
            response = stub.Predict(pb.PredictRequest(images=tensor), timeout=30)
            expected = numpy_scores(weights, biases, images).argmax(axis=1)
            np.testing.assert_array_equal(response.labels, expected)
            assert response.num_classes == 3
            with pytest.raises(grpc.RpcError) as raised:
                stub.Predict(pb.PredictRequest(images=tensor, return_scores=True), timeout=30)
            assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert raised.value.details() == (
                "model 'scratchnet' cannot return scores: its ONNX graph outputs only label"
            )
    finally:
        assert server.stop() == 0


def _graph_model(
    path: Path,
    inputs: list[tuple[str, int, list[Any]]],
    output: tuple[int, list[Any]],
    nodes: list[onnx.NodeProto],
) -> Path:
    """A small valid ONNX model with the given inputs and one output 'out'."""
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info(*spec) for spec in inputs],
        [helper.make_tensor_value_info("out", *output)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, path)
    return path


F = TensorProto.FLOAT


def _nan_weights(path: Path) -> Path:
    weights, biases = random_classifier(3, 3, 3)
    weights[1, 2, 2] = np.nan
    return build_classifier(path, weights, biases)


REFUSED: dict[str, tuple[Callable[[Path], Path], str]] = {
    "not onnx": (
        lambda p: (p.write_bytes(b"this is not a model"), p)[1],
        "cannot be loaded by onnxruntime",
    ),
    "missing file": (
        lambda p: p,
        "not found, expected an ONNX file (export one with `python -m export`)",
    ),
    # A FIFO exists but is no model: said so, not "not found".
    "a fifo": (
        lambda p: (os.mkfifo(p), p)[1],
        "is not a regular file (a device, FIFO or socket), expected an ONNX file",
    ),
    "NaN weights": (_nan_weights, "weights weights hold NaN or infinity, expected finite"),
}


@pytest.mark.parametrize("case", REFUSED)
def test_a_model_that_cannot_serve_is_refused_at_start_with_one_clear_line(
    case: str, tmp_path: Path
) -> None:
    build, expected = REFUSED[case]
    model = build(tmp_path / "model.onnx")
    result = run_module("server", "--model", model, "--port", "0", check=False, timeout=60)
    assert result.returncode == 2, result.stderr
    assert result.stdout.startswith("listening on 127.0.0.1:")  # bound before the model loads
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"python -m server: error: model {model}")
    assert expected in lines[0]


def test_a_model_failing_at_run_time_gives_onnxruntimes_reason_and_keeps_serving(
    tmp_path: Path,
) -> None:
    # Loads and runs on zeros, but looks pixels up in a table of 10 rows: brighter ones fail.
    graph = helper.make_graph(
        [
            helper.make_node("Cast", ["x"], ["indices"], to=TensorProto.INT64),
            helper.make_node("Gather", ["table", "indices"], ["rows"]),
            helper.make_node("ReduceSum", ["rows", "pixel_axes"], ["scores"], keepdims=0),
        ],
        "brittle",
        [helper.make_tensor_value_info("x", TensorProto.UINT8, ["n", 3, 3])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["n", 4])],
        [
            onnx.numpy_helper.from_array(np.eye(10, 4, dtype=np.float32), "table"),
            onnx.numpy_helper.from_array(np.array([1, 2], dtype=np.int64), "pixel_axes"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, tmp_path / "brittle.onnx")
    server = start_server(tmp_path / "brittle.onnx", tmp_dir=tmp_path)
    try:
        with grpc.insecure_channel(server.target) as channel:
            stub = classifier_pb2_grpc.ClassifierStub(channel)

            def predict(count: int, pixel: int) -> pb.PredictResponse:
                tensor = pb.Tensor(
                    dtype=pb.DATA_TYPE_UINT8, shape=[count, 3, 3], data=bytes([pixel] * 9 * count)
                )
                return stub.Predict(pb.PredictRequest(images=tensor), timeout=30)

            for _ in range(3):
                with pytest.raises(grpc.RpcError) as raised:
                    predict(3, 200)
                # onnxruntime's own INVALID_ARGUMENT: the pixels are outside the model's table.
                assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
                assert raised.value.details() == (
                    "model 'scratchnet': onnxruntime refused the inputs: Non-zero status code "
                    "returned while running Gather node. Name:'' Status Message: indices element "
                    "out of data bounds, idx=200 must be within the inclusive range [-10,9]"
                )
            assert len(predict(2, 0).labels) == 2
    finally:
        assert server.stop() == 0
    assert "Traceback" not in server.stderr()  # not a bug of the server's
