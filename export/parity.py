"""Three-way parity: the same images through scratchnet.forward (numpy float64, the reference),
onnxruntime and onnx's reference evaluator must give the same labels and near-equal scores.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray
from onnx import ModelProto, TensorProto, ValueInfoProto, numpy_helper
from onnx.reference import ReferenceEvaluator
from onnxruntime.capi import onnxruntime_pybind11_state as ort_errors

from export.graph import declared_dims
from export.model import model_bytes
from scratchnet import forward as numpy_model
from scratchnet.contract import BIASES, INPUT, INPUT_DTYPES, OUTPUTS, SCORES, WEIGHTS
from scratchnet.errors import ExportError

__all__ = [
    "NUMPY",
    "ONNXRUNTIME",
    "PROBABILITY_SUM_TOLERANCE",
    "REFERENCE",
    "SCORE_TOLERANCE",
    "Outputs",
    "ParityReport",
    "check_parity",
    "format_report",
    "initializer_parameters",
    "run_numpy",
    "run_onnxruntime",
    "run_reference",
]

NUMPY = "numpy"
ONNXRUNTIME = "onnxruntime"
REFERENCE = "onnx.reference"
SCORE_TOLERANCE = 1e-4
PROBABILITY_SUM_TOLERANCE = 1e-6
# Images per run: the graph's Mul holds batch x C x H x W floats (31 MB for 1000 MNIST images).
_CHUNK = 1000
_ORT_LOAD_ERRORS = (
    ort_errors.Fail,
    ort_errors.InvalidArgument,
    ort_errors.InvalidGraph,
    ort_errors.InvalidProtobuf,
    ort_errors.NotImplemented,
)


@dataclass(frozen=True)
class Outputs:
    """What one runtime gives for a set of images."""

    scores: NDArray[np.floating]
    labels: NDArray[np.int64]
    probabilities: NDArray[np.floating]


@dataclass(frozen=True)
class ParityReport:
    """How the runtimes compare with numpy on one data set."""

    images: int
    correct: int
    agreeing: int
    max_score_difference: dict[str, float]
    max_probability_sum_error: dict[str, float]
    closest_call: float

    @property
    def accuracy(self) -> float:
        """Share of images whose ONNX label (onnxruntime) is the true one."""
        return self.correct / self.images

    @property
    def passed(self) -> bool:
        """Every label equal across runtimes, every score and probability sum within tolerance."""
        return (
            self.agreeing == self.images
            and max(self.max_score_difference.values()) <= SCORE_TOLERANCE
            and max(self.max_probability_sum_error.values()) <= PROBABILITY_SUM_TOLERANCE
        )


def _model_inputs(model: ModelProto, images: NDArray[np.generic]) -> NDArray[np.generic]:
    """`images` [N,H,W] (uint8 0-255 or floats in [0,1]) as the model's input tensor takes them."""
    elem_type, dims = _declared(model, model.graph.input, INPUT)
    if elem_type not in {d.onnx for d in INPUT_DTYPES.values()} or len(dims) != 3:
        raise ExportError(
            f"input '{INPUT}' of model '{model.graph.name}': expected float32 or uint8 "
            f"[batch,H,W], got {TensorProto.DataType.Name(elem_type).lower()} {_shape(dims)}"
        )
    if images.ndim != 3 or list(images.shape[1:]) != dims[1:]:
        raise ExportError(
            f"input '{INPUT}' of model '{model.graph.name}': expected shape {_shape(dims)}, "
            f"got {_shape(images.shape)}"
        )
    if elem_type == TensorProto.FLOAT:
        return numpy_model.scale_pixels(images).astype(np.float32)
    if images.dtype != np.uint8:
        raise ExportError(
            f"input '{INPUT}' of model '{model.graph.name}': expected uint8 pixels 0-255, got "
            f"{images.dtype} images (export the model with --input-dtype float32 for these)"
        )
    return images


def run_numpy(
    weights: NDArray[np.floating], biases: NDArray[np.floating], images: NDArray[np.generic]
) -> Outputs:
    """The reference: scratchnet.forward's float64 forward pass."""
    scores = numpy_model.scores(weights, biases, images)
    return Outputs(
        scores, scores.argmax(axis=1).astype(np.int64), numpy_model.probabilities(scores)
    )


def run_onnxruntime(model: ModelProto, inputs: NDArray[np.generic]) -> Outputs:
    """The model's outputs from onnxruntime's CPU provider."""
    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: load-time warnings would clutter --check
    try:
        session = ort.InferenceSession(
            model_bytes(model), options, providers=["CPUExecutionProvider"]
        )
    except _ORT_LOAD_ERRORS as error:
        raise ExportError(
            f"onnxruntime {ort.__version__} cannot load model '{model.graph.name}': "
            f"{' '.join(str(error).split())}"
        ) from None
    return _run_chunked(lambda chunk: session.run(list(OUTPUTS), {INPUT: chunk}), inputs)


def run_reference(model: ModelProto, inputs: NDArray[np.generic]) -> Outputs:
    """The model's outputs from onnx.reference, the ONNX specification written in numpy."""
    evaluator = ReferenceEvaluator(model)
    return _run_chunked(lambda chunk: evaluator.run(list(OUTPUTS), {INPUT: chunk}), inputs)


def initializer_parameters(
    model: ModelProto,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """The model's own weights and biases (float32, widened to float64) for the numpy reference."""
    found = {tensor.name: tensor for tensor in model.graph.initializer}
    missing = [name for name in (WEIGHTS, BIASES) if name not in found]
    if missing:
        raise ExportError(
            f"model '{model.graph.name}' has no initializer {', '.join(missing)}: --check reads "
            "the parameters of models written by scratchnet-export, or pass the ARTIFACT"
        )
    weights, biases = (numpy_helper.to_array(found[name]) for name in (WEIGHTS, BIASES))
    return weights.astype(np.float64), biases.astype(np.float64)


def _compare(outputs: dict[str, Outputs], labels: NDArray[np.integer]) -> ParityReport:
    """Compare every runtime in `outputs` with outputs[NUMPY] and the true `labels`."""
    reference = outputs[NUMPY]
    others = {name: value for name, value in outputs.items() if name != NUMPY}
    agree = np.ones(len(labels), dtype=bool)
    for value in others.values():
        agree &= value.labels == reference.labels
    top_two = np.sort(reference.scores, axis=1)[:, -2:] if reference.scores.shape[1] > 1 else None
    return ParityReport(
        images=len(labels),
        correct=int((outputs[ONNXRUNTIME].labels == labels).sum()),
        agreeing=int(agree.sum()),
        max_score_difference={
            name: float(np.abs(value.scores - reference.scores).max())
            for name, value in others.items()
        },
        max_probability_sum_error={
            name: float(np.abs(value.probabilities.sum(axis=1, dtype=np.float64) - 1.0).max())
            for name, value in others.items()
        },
        closest_call=float((top_two[:, 1] - top_two[:, 0]).min()) if top_two is not None else 0.0,
    )


def check_parity(
    model: ModelProto,
    images: NDArray[np.generic],
    labels: NDArray[np.integer],
    weights: NDArray[np.floating],
    biases: NDArray[np.floating],
) -> ParityReport:
    """Run `images` through numpy (with `weights`, `biases`), onnxruntime and onnx.reference."""
    inputs = _model_inputs(model, images)
    # Parameters of another shape would otherwise end in a numpy broadcasting error mid-run.
    _, scores_dims = _declared(model, model.graph.output, SCORES)
    expected = [scores_dims[-1], *images.shape[1:]]
    if list(weights.shape) != expected or list(biases.shape) != expected[:1]:
        raise ExportError(
            f"numpy parameters weights {_shape(weights.shape)}, biases {_shape(biases.shape)} "
            f"do not fit model '{model.graph.name}': expected weights {_shape(expected)}, "
            f"biases {_shape(expected[:1])}"
        )
    outputs = {
        NUMPY: run_numpy(weights, biases, images),
        ONNXRUNTIME: run_onnxruntime(model, inputs),
        REFERENCE: run_reference(model, inputs),
    }
    return _compare(outputs, labels)


def format_report(report: ParityReport, context: Sequence[tuple[str, str]] = ()) -> str:
    """The report as aligned `name: value` lines, after the `context` rows (model, data…)."""
    largest = max(report.max_score_difference.values())
    margin = (
        f", {report.closest_call / largest:.0f}x the largest score difference" if largest else ""
    )
    rows = [
        *context,
        ("images", str(report.images)),
        ("accuracy", f"{report.accuracy:.4f} ({report.correct}/{report.images} correct)"),
        (
            "label agreement",
            f"{report.agreeing}/{report.images} images with equal labels from "
            f"{', '.join([NUMPY, *report.max_score_difference])}",
        ),
        (
            "max |score - numpy|",
            _per_runtime(report.max_score_difference) + f" (tolerance {SCORE_TOLERANCE:.0e})",
        ),
        (
            "max |sum(prob) - 1|",
            _per_runtime(report.max_probability_sum_error)
            + f" (tolerance {PROBABILITY_SUM_TOLERANCE:.0e})",
        ),
        ("closest call", f"top two numpy scores {report.closest_call:.2e} apart{margin}"),
        ("parity", "OK" if report.passed else "FAILED"),
    ]
    width = max(len(name) for name, _ in rows) + 2
    return "\n".join(f"{name + ':':<{width}}{value}" for name, value in rows)


def _per_runtime(values: dict[str, float]) -> str:
    return ", ".join(f"{name} {value:.2e}" for name, value in values.items())


def _declared(
    model: ModelProto, values: Sequence[ValueInfoProto], name: str
) -> tuple[int, list[int]]:
    """Element type and dims (-1 where not fixed) of the graph input or output `name`."""
    value = next((value for value in values if value.name == name), None)
    if value is None:
        raise ExportError(
            f"model '{model.graph.name}' has no tensor '{name}': expected a model written by "
            "scratchnet-export"
        )
    return value.type.tensor_type.elem_type, declared_dims(value)


def _run_chunked(run: Callable[[NDArray[Any]], Any], inputs: NDArray[Any]) -> Outputs:
    parts = [run(inputs[start : start + _CHUNK]) for start in range(0, len(inputs), _CHUNK)]
    scores, labels, probabilities = (np.concatenate(column) for column in zip(*parts, strict=True))
    return Outputs(scores, labels, probabilities)


def _shape(dims: Sequence[int]) -> str:
    return f"[{','.join(map(str, dims))}]"
