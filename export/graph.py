"""The ONNX graph of the network, op for op: the numpy forward pass in scratchnet.forward, in ONNX.

images [batch,H,W] ─(uint8 only: Cast, Div 255)─ Unsqueeze ─ Mul weights [C,H,W]
    ─ ReduceSum over H,W ─ Add biases [C] ─> scores [batch,C]
scores ─ ArgMax(axis 1) ─> label [batch];  scores ─ Softmax(axis 1) ─> probabilities [batch,C]
"""

from __future__ import annotations

import numpy as np
import onnx
from numpy.typing import NDArray
from onnx import GraphProto, TensorProto, ValueInfoProto, helper, numpy_helper

from scratchnet.contract import (
    BATCH,
    BIASES,
    INPUT,
    INPUT_DTYPES,
    LABEL,
    PIXEL_MAX,
    PROBABILITIES,
    SCORES,
    WEIGHTS,
)
from scratchnet.errors import ExportError

__all__ = [
    "DEFAULT_OPSET",
    "MIN_OPSET",
    "build_graph",
    "check_opset",
    "declared_dims",
    "ir_version_for",
    "max_opset",
]

DEFAULT_OPSET = 17
# ReduceSum takes its axes as an input (rather than an attribute) from opset 13 on.
MIN_OPSET = 13


def max_opset() -> int:
    """The newest default-domain opset the installed onnx package can write."""
    return int(onnx.defs.onnx_opset_version())


def check_opset(opset: int) -> None:
    """Refuse an opset that cannot express the graph or that the installed onnx cannot write."""
    newest = max_opset()
    if opset < MIN_OPSET:
        raise ExportError(
            f"opset {opset} cannot express the graph (ReduceSum takes its axes as an input only "
            f"from opset {MIN_OPSET}): expected --opset {MIN_OPSET}..{newest}"
        )
    if opset > newest:
        raise ExportError(
            f"opset {opset} is newer than the installed onnx {onnx.__version__} can write: "
            f"expected --opset {MIN_OPSET}..{newest}"
        )


def ir_version_for(opset: int) -> int:
    """The oldest IR version that carries `opset`, so older runtimes load the file (17 -> 8)."""
    return int(helper.find_min_ir_version_for([helper.make_opsetid("", opset)]))


def declared_dims(value: ValueInfoProto) -> list[int]:
    """The dims of a graph input or output, -1 where not fixed (a symbolic or unknown size)."""
    return [
        dim.dim_value if dim.HasField("dim_value") else -1
        for dim in value.type.tensor_type.shape.dim
    ]


def build_graph(
    weights: NDArray[np.floating],
    biases: NDArray[np.floating],
    input_dtype: str,
    name: str,
) -> GraphProto:
    """The graph for parameters weights [C,H,W] and biases [C], taking `input_dtype` images."""
    if input_dtype not in INPUT_DTYPES:
        raise ExportError(
            f"input dtype {input_dtype!r} is not supported: expected one of "
            f"{', '.join(INPUT_DTYPES)}"
        )
    classes, height, width = (int(size) for size in weights.shape)
    initializers = [
        numpy_helper.from_array(_float32(weights, WEIGHTS), WEIGHTS),
        numpy_helper.from_array(_float32(biases, BIASES), BIASES),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "class_axis"),
        numpy_helper.from_array(np.array([2, 3], dtype=np.int64), "pixel_axes"),
    ]
    nodes = []
    pixels = INPUT
    if input_dtype == "uint8":
        # Div, not Mul by 1/255: the pixel scaling rule (scratchnet.contract.scale_uint8).
        initializers.append(numpy_helper.from_array(np.array(PIXEL_MAX, np.float32), "pixel_max"))
        nodes += [
            helper.make_node("Cast", [INPUT], ["pixels_0_255"], "cast", to=TensorProto.FLOAT),
            helper.make_node("Div", ["pixels_0_255", "pixel_max"], ["pixels"], "scale"),
        ]
        pixels = "pixels"
    nodes += [
        helper.make_node("Unsqueeze", [pixels, "class_axis"], ["pixels_per_class"], "unsqueeze"),
        helper.make_node("Mul", ["pixels_per_class", WEIGHTS], ["weighted"], "mul"),
        helper.make_node(
            "ReduceSum", ["weighted", "pixel_axes"], ["dot"], "reduce_sum", keepdims=0
        ),
        helper.make_node("Add", ["dot", BIASES], [SCORES], "add"),
        helper.make_node("ArgMax", [SCORES], [LABEL], "argmax", axis=1, keepdims=0),
        helper.make_node("Softmax", [SCORES], [PROBABILITIES], "softmax", axis=1),
    ]
    scaling = (
        "uint8 pixels 0-255, scaled to [0, 1] inside the graph"
        if input_dtype == "uint8"
        else "float32 pixels already divided by 255, in [0, 1]"
    )
    inputs = [
        _tensor(
            INPUT,
            INPUT_DTYPES[input_dtype].onnx,
            [BATCH, height, width],
            f"images [{BATCH}, {height}, {width}], row-major, 0 = background: {scaling}",
        )
    ]
    outputs = [
        _tensor(
            SCORES,
            TensorProto.FLOAT,
            [BATCH, classes],
            "class scores: sum over pixels of image * weights[c], plus biases[c]",
        ),
        _tensor(LABEL, TensorProto.INT64, [BATCH], "predicted class index: argmax of scores"),
        _tensor(
            PROBABILITIES, TensorProto.FLOAT, [BATCH, classes], "softmax of scores over classes"
        ),
    ]
    return helper.make_graph(nodes, name, inputs, outputs, initializers)


def _float32(values: NDArray[np.floating], name: str) -> NDArray[np.float32]:
    # A float64 parameter beyond float32's range would silently become inf in the model.
    with np.errstate(over="ignore"):
        rounded = np.asarray(values, dtype=np.float32)
    if not np.isfinite(rounded).all():
        worst = values.flat[np.flatnonzero(~np.isfinite(rounded))[0]]
        raise ExportError(
            f"{name} hold {worst:.3g}, which float32 cannot represent: expected finite values "
            f"within ±{np.finfo(np.float32).max:.3g} (the model's parameters are float32)"
        )
    return rounded


def _tensor(name: str, elem_type: int, shape: list[str | int], doc: str) -> ValueInfoProto:
    return helper.make_tensor_value_info(name, elem_type, shape, doc_string=doc)
