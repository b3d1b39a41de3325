"""The image-classifier view of a model: what scratchnet.v1 serves on top of the plain signature.

A model is an image classifier when it has one input holding a batch of images — [N,H,W],
[N,1,H,W], or flat [N,H·W] when the image size is known from its `input_shape` metadata — and
outputs a class for each. Each output's role comes from the op that computes it: ArgMax gives
the label, Softmax the probabilities, LogSoftmax log-probabilities (served as probabilities after
exp), and any other float [N,C] output the scores. Names decide only where the op does not, and
metadata `output_role.<name>` = label | scores | probabilities | log_probabilities | none
declares a role outright. Whatever the model lacks is derived in numpy: label = argmax,
probabilities = softmax(scores).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from scratchnet import datatypes
from scratchnet.contract import (
    CLASS_LABELS,
    CLASSIFIER_OUTPUTS,
    IMAGE_SHAPE,
    INPUT_SCALE,
    INPUT_SCALE_KEY,
    LABEL,
    PROBABILITIES,
    SCORES,
)
from scratchnet.datatypes import Datatype
from scratchnet.errors import InvalidArgument, ModelError
from scratchnet.forward import probabilities
from server.signature import Signature, TensorSpec, format_dims

__all__ = ["LOG_PROBABILITIES", "ROLE_KEY", "ImageClassifier", "image_classifier"]

LOG_PROBABILITIES = "log_probabilities"
ROLE_KEY = "output_role."
"""Metadata key prefix that declares an output's role: output_role.logits = scores."""
_ROLES = (LABEL, SCORES, PROBABILITIES, LOG_PROBABILITIES)
_ROLE_OPS = {"ArgMax": LABEL, "Softmax": PROBABILITIES, "LogSoftmax": LOG_PROBABILITIES}
# Ops whose float [N,C] output can only be raw scores (a linear layer and what reshapes it).
_SCORE_OPS = {"Gemm", "MatMul", "Add", "Sub", "Reshape", "Flatten", "Squeeze", "Conv", "Relu"}
# Checked in order: "log_prob" before "prob".
_NAME_HINTS: tuple[tuple[str, str], ...] = (
    ("log_prob", LOG_PROBABILITIES),
    ("logsoftmax", LOG_PROBABILITIES),
    ("prob", PROBABILITIES),
    ("softmax", PROBABILITIES),
    ("logit", SCORES),
    ("score", SCORES),
)
_OUTPUT_DTYPES: dict[str, np.dtype[Any]] = {
    LABEL: np.dtype(np.int64),
    SCORES: np.dtype(np.float32),
    PROBABILITIES: np.dtype(np.float32),
}
_UINT8 = datatypes.by_numpy(np.uint8)
_FLOAT32 = datatypes.by_numpy(np.float32)
_log = logging.getLogger(__name__)


class _NotClassifier(Exception):
    """Why a model is not an image classifier; image_classifier returns its message."""


@dataclass(frozen=True)
class _Source:
    """Where one of the classifier's outputs comes from: the ONNX output it reads and the role
    that output has (the same role, or one it is derived from)."""

    onnx_name: str
    role: str


@dataclass(frozen=True)
class ImageClassifier:
    """How to feed a model images [N,H,W] and read labels, scores and probabilities from it."""

    input: TensorSpec
    height: int
    width: int
    num_classes: int
    class_labels: tuple[str, ...]
    input_scale: float
    accepted: tuple[Datatype, ...]
    """The pixel datatypes it takes, the input's own first."""
    outputs: tuple[str, ...]
    """What it can answer, among label, scores, probabilities (in that order)."""
    sources: Mapping[str, _Source]

    @property
    def input_shape(self) -> list[int]:
        """The image tensor clients send: [-1, H, W], -1 standing for the batch size."""
        return [-1, self.height, self.width]

    @property
    def onnx_outputs(self) -> list[str]:
        """The ONNX outputs to run for all of `outputs`."""
        return sorted({source.onnx_name for source in self.sources.values()})

    def output_shape(self, output: str) -> list[int]:
        """[-1] for the label, [-1, C] for scores and probabilities."""
        return [-1] if output == LABEL else [-1, self.num_classes]

    def check_outputs(self, outputs: Collection[str], model: str) -> None:
        """InvalidArgument unless every one of `outputs` is something this model answers."""
        for output in outputs:
            if output not in CLASSIFIER_OUTPUTS:
                raise InvalidArgument(
                    f"model '{model}' has no output '{output}', expected one of "
                    f"{', '.join(self.outputs)}"
                )
            if output not in self.outputs:
                raise InvalidArgument(
                    f"model '{model}' cannot return {output}: its ONNX graph outputs only "
                    f"{', '.join(self.outputs)}"
                )

    def feed(self, images: NDArray[Any]) -> NDArray[Any]:
        """Checked images [N,H,W], already of the input's type, in the model's layout."""
        return np.ascontiguousarray(images.reshape(len(images), *self._model_dims()))

    def answer(
        self, results: Mapping[str, NDArray[Any]], outputs: Sequence[str]
    ) -> dict[str, NDArray[Any]]:
        """The requested `outputs` from the model's raw `results` (ONNX output name -> array)."""
        answer: dict[str, NDArray[Any]] = {}
        for output in outputs:
            source = self.sources[output]
            value = np.asarray(results[source.onnx_name])
            if output == LABEL and source.role != LABEL:
                value = value.reshape(len(value), -1).argmax(axis=1)
            elif output == PROBABILITIES and source.role == SCORES:
                value = probabilities(value.astype(np.float64))
            elif output == PROBABILITIES and source.role == LOG_PROBABILITIES:
                value = np.exp(value.astype(np.float64))
            shaped = value.reshape(-1) if output == LABEL else value.reshape(len(value), -1)
            answer[output] = np.ascontiguousarray(shaped.astype(_OUTPUT_DTYPES[output], copy=False))
        return answer

    def _model_dims(self) -> tuple[int, ...]:
        rank = len(self.input.dims)
        if rank == 2:
            return (self.height * self.width,)
        if rank == 4:
            return (1, self.height, self.width)
        return (self.height, self.width)


def image_classifier(signature: Signature, where: str) -> ImageClassifier | str:
    """The classifier view of `signature`, or why it is not an image classifier (a sentence).

    A model whose outputs are ambiguous is not one (never guessed: the sentence says how to
    declare the roles); ModelError when its declared roles name no output or no role.
    """
    if len(signature.inputs) != 1:
        names = ", ".join(repr(spec.name) for spec in signature.inputs)
        return f"it has {len(signature.inputs)} inputs ({names}), expected one image input"
    spec = signature.inputs[0]
    if spec.datatype != _UINT8 and (spec.datatype.numpy is None or spec.datatype.numpy.kind != "f"):
        return f"its input '{spec.name}' is {spec.datatype}, expected a float or UINT8 image"
    size = _image_size(spec, signature.metadata)
    if isinstance(size, str):
        return size
    try:
        sources = _sources(where, signature)
        num_classes = _num_classes(signature, sources)
    except _NotClassifier as reason:
        return str(reason)
    accepted: tuple[Datatype, ...] = (spec.datatype,)
    if spec.datatype != _UINT8:
        # Its own type first (what ModelMetadata says), then what v1's enum can carry: float32
        # and uint8 pixels, converted to the model's float type.
        accepted = tuple(dict.fromkeys((spec.datatype, _FLOAT32, _UINT8)))
    return ImageClassifier(
        input=spec,
        height=size[0],
        width=size[1],
        num_classes=num_classes,
        class_labels=tuple(_class_labels(where, signature.metadata, num_classes)),
        input_scale=_input_scale(where, signature.metadata),
        accepted=accepted,
        outputs=tuple(output for output in CLASSIFIER_OUTPUTS if output in sources),
        sources=sources,
    )


def _image_size(spec: TensorSpec, metadata: Mapping[str, str]) -> tuple[int, int] | str:
    dims = spec.dims
    problem = (
        f"its input '{spec.name}' has shape {format_dims(dims)}, expected [N,H,W], [N,1,H,W] or "
        "[N,H·W] (with the image size from metadata input_shape, config dims or --image-shape) "
        "with fixed H, W and a dynamic N"
    )
    if not dims or dims[0] > 0 or len(dims) not in (2, 3, 4) or any(d < 1 for d in dims[1:]):
        return problem
    if len(dims) == 4 and dims[1] != 1:
        return problem
    if len(dims) == 2:
        shape = _declared_image_shape(metadata)
        if shape is None or shape[0] * shape[1] != dims[1]:
            return problem
        return shape
    return dims[-2], dims[-1]


def _declared_image_shape(metadata: Mapping[str, str]) -> tuple[int, int] | None:
    try:
        shape = json.loads(metadata.get(IMAGE_SHAPE, "null"))
    except json.JSONDecodeError:
        return None
    valid = isinstance(shape, list) and len(shape) == 2
    if not (valid and all(isinstance(size, int) and size > 0 for size in shape)):
        return None
    return int(shape[0]), int(shape[1])


def _role(where: str, spec: TensorSpec, declared: Mapping[str, str]) -> str | None:
    """The role of one output, or None for an output the classifier does not use."""
    if spec.name in declared:
        role = declared[spec.name]
        return None if role == "none" else role
    rank, kind = len(spec.dims), spec.datatype.numpy.kind if spec.datatype.numpy else ""
    if kind and kind in "iu" and (rank == 1 or (rank == 2 and spec.dims[1] == 1)):
        return LABEL
    if kind != "f" or rank != 2:
        return None
    if spec.producer in _ROLE_OPS:
        return _ROLE_OPS[spec.producer]
    if spec.producer in _SCORE_OPS:
        return SCORES
    lowered = spec.name.lower()
    hinted = next((role for hint, role in _NAME_HINTS if hint in lowered), None)
    if hinted in (SCORES, PROBABILITIES, LOG_PROBABILITIES):
        return hinted
    raise _NotClassifier(
        f"cannot tell what its output {spec} holds (computed by {spec.producer or 'nothing'}): "
        f"declare it with metadata_props or a config parameter {ROLE_KEY}{spec.name} = scores, "
        "probabilities, log_probabilities or none"
    )


def _sources(where: str, signature: Signature) -> dict[str, _Source]:
    declared = _declared_roles(where, signature)
    found: dict[str, str] = {}
    for spec in signature.outputs:
        role = _role(where, spec, declared)
        if role is None:
            continue
        if role in found:
            raise _NotClassifier(
                f"its outputs '{found[role]}' and '{spec.name}' both look like the {role}: declare "
                f"which with metadata_props or a config parameter {ROLE_KEY}<output> = {role} "
                "(and none for the other)"
            )
        found[role] = spec.name
    if not found:
        shown = ", ".join(str(spec) for spec in signature.outputs)
        raise _NotClassifier(
            f"its outputs {shown} include neither scores (float [N,C]) nor labels (int [N])"
        )
    sources = {role: _Source(name, role) for role, name in found.items() if role in _OUTPUT_DTYPES}
    probability_source = found.get(PROBABILITIES) or found.get(LOG_PROBABILITIES)
    if PROBABILITIES not in sources and LOG_PROBABILITIES in found:
        sources[PROBABILITIES] = _Source(found[LOG_PROBABILITIES], LOG_PROBABILITIES)
    if PROBABILITIES not in sources and SCORES in found:
        sources[PROBABILITIES] = _Source(found[SCORES], SCORES)
    if LABEL not in sources:
        # Labels come from scores, else from (log-)probabilities: the argmax of each is the same.
        source_name = found.get(SCORES) or probability_source
        assert source_name is not None
        sources[LABEL] = _Source(source_name, SCORES if SCORES in found else PROBABILITIES)
    return {output: sources[output] for output in CLASSIFIER_OUTPUTS if output in sources}


def _declared_roles(where: str, signature: Signature) -> dict[str, str]:
    declared = {
        key[len(ROLE_KEY) :]: value.strip().lower()
        for key, value in signature.metadata.items()
        if key.startswith(ROLE_KEY)
    }
    names = {spec.name for spec in signature.outputs}
    for name, role in declared.items():
        if name not in names:
            raise ModelError(
                f"{where}: metadata {ROLE_KEY}{name} names no output, expected one of "
                f"{', '.join(sorted(names))}"
            )
        if role not in (*_ROLES, "none"):
            raise ModelError(
                f"{where}: metadata {ROLE_KEY}{name} is {role!r}, expected one of "
                f"{', '.join(_ROLES)} or none"
            )
    return declared


def _num_classes(signature: Signature, sources: Mapping[str, _Source]) -> int:
    widths = {
        spec.dims[1]
        for spec in signature.outputs
        if len(spec.dims) == 2
        and spec.name in {source.onnx_name for source in sources.values()}
        and spec.dims[1] > 1
    }
    if len(widths) > 1:
        raise _NotClassifier(f"its scores and probabilities disagree on the class count {widths}")
    if widths:
        return widths.pop()
    labels = _parse_labels(signature.metadata)
    if labels:
        return len(labels)
    raise _NotClassifier(
        "the number of classes is unknown: give its scores a fixed shape [N,C] or its "
        "metadata_props a class_labels JSON list"
    )


def _parse_labels(metadata: Mapping[str, str]) -> list[str] | None:
    try:
        labels = json.loads(metadata.get(CLASS_LABELS, "null"))
    except json.JSONDecodeError:
        return None
    return [str(label) for label in labels] if isinstance(labels, list) and labels else None


def _class_labels(where: str, metadata: Mapping[str, str], num_classes: int) -> list[str]:
    labels = _parse_labels(metadata)
    if labels is not None and len(labels) == num_classes:
        return labels
    if CLASS_LABELS in metadata:
        # A foreign model may write class_labels in another format: its classes still work.
        _log.warning(
            "%s: ignoring metadata class_labels (expected a JSON list of %d strings)",
            where,
            num_classes,
        )
    return [str(index) for index in range(num_classes)]


def _input_scale(where: str, metadata: Mapping[str, str]) -> float:
    text = metadata.get(INPUT_SCALE_KEY)
    if text is None:
        return INPUT_SCALE
    try:
        scale = float(text)
    except ValueError:
        scale = math.nan
    if not (math.isfinite(scale) and scale > 0):
        raise ModelError(f"{where}: metadata input_scale is {text!r}, expected a positive number")
    return scale
