"""ONNX models this project did not export, built with onnx.helper (no downloads): the kinds users
bring — a flat logistic regression as skl2onnx writes it, a small CNN, a model with two inputs,
INT64 / FP16 / BOOL tensors, Softmax and LogSoftmax outputs under misleading names."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

F = TensorProto.FLOAT


def save(path: Path, graph: onnx.GraphProto, version: int = 0) -> Path:
    """`graph` as an opset-17, IR-8 model at `path`, checked by onnx's full checker."""
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    if version:
        model.model_version = version
    onnx.checker.check_model(model, full_check=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, path)
    return path


def _weights(rows: int, columns: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return (
        rng.normal(size=(rows, columns)).astype(np.float32),
        rng.normal(size=columns).astype(np.float32),
    )


def logistic_regression(path: Path, pixels: int, classes: int, seed: int = 0) -> Path:
    """skl2onnx's signature for LogisticRegression with zipmap=False: float_input [N, pixels] ->
    output_label int64 [N], output_probability float [N, C]."""
    weights, biases = _weights(pixels, classes, seed)
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["float_input", "coef"], ["mul"]),
            helper.make_node("Add", ["mul", "intercept"], ["decision"]),
            helper.make_node("Softmax", ["decision"], ["output_probability"], axis=1),
            helper.make_node("ArgMax", ["decision"], ["output_label"], axis=1, keepdims=0),
        ],
        "LinearClassifier",
        [helper.make_tensor_value_info("float_input", F, [None, pixels])],
        [
            helper.make_tensor_value_info("output_label", TensorProto.INT64, [None]),
            helper.make_tensor_value_info("output_probability", F, [None, classes]),
        ],
        [numpy_helper.from_array(weights, "coef"), numpy_helper.from_array(biases, "intercept")],
    )
    return save(path, graph)


def cnn(path: Path, height: int, width: int, classes: int, seed: int = 0) -> Path:
    """input [N,1,H,W] -> Conv 3x3 (4 filters) -> Relu -> Flatten -> Gemm -> logits [N,C]."""
    rng = np.random.default_rng(seed)
    kernels = rng.normal(size=(4, 1, 3, 3)).astype(np.float32)
    dense, bias = _weights(4 * (height - 2) * (width - 2), classes, seed + 1)
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["input", "kernels"], ["conv"]),
            helper.make_node("Relu", ["conv"], ["relu"]),
            helper.make_node("Flatten", ["relu"], ["flat"]),
            helper.make_node("Gemm", ["flat", "dense", "bias"], ["logits"]),
        ],
        "cnn",
        [helper.make_tensor_value_info("input", F, ["N", 1, height, width])],
        [helper.make_tensor_value_info("logits", F, ["N", classes])],
        [
            numpy_helper.from_array(kernels, "kernels"),
            numpy_helper.from_array(dense, "dense"),
            numpy_helper.from_array(bias, "bias"),
        ],
    )
    return save(path, graph)


def two_inputs(path: Path) -> Path:
    """a, b float [N,3] -> sum = a + b, product = a * b."""
    graph = helper.make_graph(
        [
            helper.make_node("Add", ["a", "b"], ["sum"]),
            helper.make_node("Mul", ["a", "b"], ["product"]),
        ],
        "pair",
        [helper.make_tensor_value_info(name, F, ["N", 3]) for name in ("a", "b")],
        [helper.make_tensor_value_info(name, F, ["N", 3]) for name in ("sum", "product")],
    )
    return save(path, graph)


def typed(path: Path) -> Path:
    """ids int64 [N,4] -> doubled; half fp16 [N,2] -> half + 1; mask bool [N,3] -> not mask."""
    graph = helper.make_graph(
        [
            helper.make_node("Add", ["ids", "ids"], ["doubled"]),
            helper.make_node("Add", ["half", "one"], ["half_plus_one"]),
            helper.make_node("Not", ["mask"], ["inverted"]),
        ],
        "typed",
        [
            helper.make_tensor_value_info("ids", TensorProto.INT64, ["N", 4]),
            helper.make_tensor_value_info("half", TensorProto.FLOAT16, ["N", 2]),
            helper.make_tensor_value_info("mask", TensorProto.BOOL, ["N", 3]),
        ],
        [
            helper.make_tensor_value_info("doubled", TensorProto.INT64, ["N", 4]),
            helper.make_tensor_value_info("half_plus_one", TensorProto.FLOAT16, ["N", 2]),
            helper.make_tensor_value_info("inverted", TensorProto.BOOL, ["N", 3]),
        ],
        [numpy_helper.from_array(np.array(1, dtype=np.float16), "one")],
    )
    return save(path, graph)


def strings(path: Path) -> Path:
    """text STRING [N,1] -> echo (Identity): what a BYTES tensor reaches the model as."""
    graph = helper.make_graph(
        [helper.make_node("Identity", ["text"], ["echo"])],
        "strings",
        [helper.make_tensor_value_info("text", TensorProto.STRING, ["N", 1])],
        [helper.make_tensor_value_info("echo", TensorProto.STRING, ["N", 1])],
    )
    return save(path, graph)


def misnamed(path: Path, op: str, name: str, height: int, width: int, classes: int) -> Path:
    """images [N,H,W] -> Flatten -> Gemm -> `op` (Softmax or LogSoftmax) -> output `name`, a
    name that suggests the other thing."""
    dense, bias = _weights(height * width, classes, 7)
    graph = helper.make_graph(
        [
            helper.make_node("Flatten", ["images"], ["flat"]),
            helper.make_node("Gemm", ["flat", "dense", "bias"], ["raw"]),
            helper.make_node(op, ["raw"], [name], axis=1),
        ],
        f"{op.lower()}-as-{name}",
        [helper.make_tensor_value_info("images", F, ["N", height, width])],
        [helper.make_tensor_value_info(name, F, ["N", classes])],
        [numpy_helper.from_array(dense, "dense"), numpy_helper.from_array(bias, "bias")],
    )
    return save(path, graph)
