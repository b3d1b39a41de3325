"""ONNX image classifiers built with onnx.helper: the export contract's form and foreign ones."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from numpy.typing import NDArray
from onnx import TensorProto, helper, numpy_helper

from scratchnet.contract import INPUT_SCALE

ALL_OUTPUTS = (("scores", "scores"), ("label", "label"), ("probabilities", "probabilities"))


def build_classifier(
    path: Path,
    weights: NDArray[np.float64],
    biases: NDArray[np.float64],
    *,
    input_dtype: str = "float32",
    input_name: str = "images",
    channel_axis: bool = False,
    flat: bool = False,
    batch: int | str = "batch",
    outputs: Sequence[tuple[str, str]] = ALL_OUTPUTS,
    metadata: dict[str, str] | None = None,
    model_version: int | None = None,
    producer_name: str = "",
) -> Path:
    """Write a single-layer classifier scores = flatten(x) · Wᵀ + b as ONNX.

    `outputs` pairs a kind (scores, label, probabilities, log_probabilities) with the ONNX
    output's name, so a test can build models with foreign names or only some outputs. The input
    is [batch,H,W], [batch,1,H,W] with `channel_axis`, or [batch,H·W] when `flat`; a uint8 input
    is cast and scaled by input_scale inside the graph, as scratchnet's export does; a float64
    one is cast to float32.
    """
    classes, height, width = weights.shape
    elem = {"uint8": TensorProto.UINT8, "float64": TensorProto.DOUBLE}.get(
        input_dtype, TensorProto.FLOAT
    )
    dims: list[Any] = [batch, 1, height, width] if channel_axis else [batch, height, width]
    if flat:
        dims = [batch, height * width]
    nodes = []
    pixels = input_name
    if input_dtype == "uint8":
        nodes += [
            helper.make_node("Cast", [input_name], ["as_float"], to=TensorProto.FLOAT),
            helper.make_node("Mul", ["as_float", "scale"], ["pixels"]),
        ]
        pixels = "pixels"
    elif input_dtype == "float64":
        nodes.append(helper.make_node("Cast", [input_name], ["pixels"], to=TensorProto.FLOAT))
        pixels = "pixels"
    flat_weights = weights.reshape(classes, -1).T.astype(np.float32)
    initializers = [
        numpy_helper.from_array(np.array([-1, height * width], dtype=np.int64), "flat_shape"),
        numpy_helper.from_array(flat_weights, "weights"),
        numpy_helper.from_array(biases.astype(np.float32), "biases"),
    ]
    if input_dtype == "uint8":
        # Only where used: onnxruntime logs an unused initializer (a console error in a browser).
        initializers.append(
            numpy_helper.from_array(np.array(INPUT_SCALE, dtype=np.float32), "scale")
        )
    names = dict(outputs)
    score_name = names.get("scores", "raw_scores")
    nodes += [
        helper.make_node("Reshape", [pixels, "flat_shape"], ["flat"]),
        helper.make_node("Gemm", ["flat", "weights", "biases"], [score_name]),
    ]
    graph_outputs = []
    for kind, name in outputs:
        if kind == "scores":
            graph_outputs.append(
                helper.make_tensor_value_info(name, TensorProto.FLOAT, [batch, classes])
            )
        elif kind in ("probabilities", "log_probabilities"):
            op = "Softmax" if kind == "probabilities" else "LogSoftmax"
            nodes.append(helper.make_node(op, [score_name], [name], axis=1))
            graph_outputs.append(
                helper.make_tensor_value_info(name, TensorProto.FLOAT, [batch, classes])
            )
        else:
            nodes.append(helper.make_node("ArgMax", [score_name], [name], axis=1, keepdims=0))
            graph_outputs.append(helper.make_tensor_value_info(name, TensorProto.INT64, [batch]))
    graph = helper.make_graph(
        nodes,
        "classifier",
        [helper.make_tensor_value_info(input_name, elem, dims)],
        graph_outputs,
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    if model_version is not None:
        model.model_version = model_version
    model.producer_name = producer_name  # contract.PRODUCER_NAME: the server may slice batches
    for key, value in (metadata or {}).items():
        model.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, path)
    return path


def numpy_scores(
    weights: NDArray[np.float64], biases: NDArray[np.float64], images: NDArray[Any]
) -> NDArray[np.float64]:
    """The reference: scores of images [N, H, W] (uint8 scaled by 1/255) in float64."""
    pixels = images * INPUT_SCALE if images.dtype == np.uint8 else images.astype(np.float64)
    flat_weights = weights.reshape(len(weights), -1)
    return np.asarray(pixels.reshape(len(images), -1) @ flat_weights.T + biases)


def random_classifier(
    classes: int, height: int, width: int, seed: int = 0
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Weights [C, H, W] and biases [C] with well separated scores on random images."""
    rng = np.random.default_rng(seed)
    return rng.normal(size=(classes, height, width)), rng.normal(size=classes)


def contract_metadata(classes: int) -> dict[str, str]:
    """metadata_props as scratchnet's export writes them."""
    return {
        "class_labels": json.dumps([f"class {index}" for index in range(classes)]),
        "input_scale": repr(INPUT_SCALE),
        "accuracy": "0.5",
    }
