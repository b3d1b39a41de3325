"""The model runtime: one ONNX image classifier run by onnxruntime, described by its own file.

The input is one tensor [N, H, W] or [N, 1, H, W] of float32 or uint8 with a dynamic batch
dimension. Outputs are recognised by name, then by form: an integer [N] tensor is the label, a
float [N, C] tensor is the scores, or the probabilities when its name says so ("prob", "softmax").
Whatever the model lacks is computed in numpy: label = argmax, probabilities = softmax(scores). A
model with labels only cannot serve scores or probabilities; requests for them are refused.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Collection
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray

from server.errors import InvalidArgument, ModelError
from trainer.model import INPUT_SCALE, probabilities

__all__ = ["OUTPUTS", "OUTPUT_DTYPES", "ModelRuntime"]

OUTPUTS = ("label", "scores", "probabilities")
"""What predict() can return, in this order."""
OUTPUT_DTYPES: dict[str, np.dtype[Any]] = {
    "label": np.dtype(np.int64),
    "scores": np.dtype(np.float32),
    "probabilities": np.dtype(np.float32),
}

_log = logging.getLogger(__name__)
_INPUT_TYPES: dict[str, np.dtype[Any]] = {
    "tensor(float)": np.dtype(np.float32),
    "tensor(uint8)": np.dtype(np.uint8),
}
_FLOAT_TYPES = {"tensor(float)", "tensor(double)", "tensor(float16)"}
_INT_TYPES = {"tensor(int64)", "tensor(int32)"}
_PROBABILITY_HINTS = ("prob", "softmax")
_UNSET_VERSION = 2**63 - 1


class ModelRuntime:
    """An onnxruntime session for one image classifier, with what the server needs to know."""

    def __init__(self, path: str | os.PathLike[str], name: str = "scratchnet", threads: int = 0):
        """Load the ONNX file at `path`, served as `name`; `threads` intra-op threads (0 = auto).

        Raises ModelError with a one-line reason if the file is missing, unreadable or not a
        classifier of the accepted form.
        """
        self.name = name
        self.path = Path(path)
        self._session = _open_session(self.path, threads)
        where = f"model {self.path}"
        meta = self._session.get_modelmeta()
        # onnxruntime reports an unset model_version as INT64_MAX; unset or 0 is version "1".
        self.version: str = str(meta.version) if 0 < meta.version < _UNSET_VERSION else "1"
        self.metadata: dict[str, str] = dict(meta.custom_metadata_map)

        inputs = self._session.get_inputs()
        if len(inputs) != 1:
            names = ", ".join(repr(i.name) for i in inputs)
            raise ModelError(
                f"{where} has {len(inputs)} inputs ({names}), expected one image input"
            )
        image_input = inputs[0]
        self.input_name: str = image_input.name
        self.input_description: str = f"input '{self.input_name}' of model '{self.name}'"
        """How messages name the image input: "input 'images' of model 'scratchnet'"."""
        if image_input.type not in _INPUT_TYPES:
            raise ModelError(
                f"{where}: input '{self.input_name}' is {image_input.type}, "
                "expected tensor(float) or tensor(uint8)"
            )
        self.input_dtype: np.dtype[Any] = _INPUT_TYPES[image_input.type]
        self.height, self.width, self._channel_axis = _image_dims(where, image_input)
        # A float32 model also takes uint8 pixels (scaled here); a uint8 model takes only uint8.
        self.accepted_dtypes: tuple[np.dtype[Any], ...] = (self.input_dtype,)
        if self.input_dtype == np.float32:
            self.accepted_dtypes += (np.dtype(np.uint8),)

        output_names = _find_outputs(where, self._session.get_outputs())
        self.num_classes: int = _num_classes(
            where, self._session.get_outputs(), output_names, self.metadata
        )
        self._sources = _output_sources(output_names)
        self.outputs: tuple[str, ...] = tuple(self._sources)
        self.class_labels: list[str] = _class_labels(where, self.metadata, self.num_classes)
        self.input_scale: float = _input_scale(where, self.metadata)
        # uint8 pixels for a float32 model are divided by 1/input_scale in float32: for 1/255 that
        # is exactly float32(pixel / 255), what a client scaling in float64 sends, whereas
        # multiplying by float32(1/255) is one ulp off for 126 of the 256 values.
        self._pixel_divisor = np.float32(1.0 / self.input_scale)

    @property
    def input_shape(self) -> list[int]:
        """The image tensor clients send: [-1, H, W], -1 standing for the batch size."""
        return [-1, self.height, self.width]

    def output_shape(self, output: str) -> list[int]:
        """The shape of one of `outputs`: [-1] for the label, [-1, C] for the others."""
        return [-1] if output == "label" else [-1, self.num_classes]

    def predict(
        self, images: NDArray[Any], outputs: Collection[str] = ("label",)
    ) -> dict[str, NDArray[Any]]:
        """Classify validated images [N, H, W] (see server.tensors.images_from_bytes).

        Returns the requested `outputs` among label (int64 [N]), scores and probabilities
        (float32 [N, C]). A float32 model also takes uint8 pixels, scaled by input_scale here.
        """
        self._check_outputs(outputs)
        feed = self._model_input(images)
        names = sorted({self._sources[output].onnx_name for output in outputs})
        results = dict(zip(names, self._session.run(names, {self.input_name: feed}), strict=True))
        answer: dict[str, NDArray[Any]] = {}
        for output in outputs:
            source = self._sources[output]
            value = np.asarray(results[source.onnx_name])
            if source.derived:
                value = (
                    value.argmax(axis=1)
                    if output == "label"
                    else probabilities(value.astype(np.float64))
                )
            answer[output] = np.ascontiguousarray(value, dtype=OUTPUT_DTYPES[output])
        return answer

    def _check_outputs(self, outputs: Collection[str]) -> None:
        for output in outputs:
            if output not in OUTPUTS:
                raise InvalidArgument(
                    f"model '{self.name}' has no output '{output}', expected one of "
                    f"{', '.join(self.outputs)}"
                )
            if output not in self.outputs:
                raise InvalidArgument(
                    f"model '{self.name}' cannot return {output}: its ONNX graph outputs only "
                    f"{', '.join(self.outputs)}"
                )

    def _model_input(self, images: NDArray[Any]) -> NDArray[Any]:
        if images.dtype == self.input_dtype:
            feed = images
        elif images.dtype == np.uint8 and self.input_dtype == np.float32:
            feed = images.astype(np.float32) / self._pixel_divisor
        else:
            expected = " or ".join(str(dtype) for dtype in self.accepted_dtypes)
            raise InvalidArgument(
                f"{self.input_description}: expected {expected} pixels, got {images.dtype}"
            )
        if self._channel_axis:
            feed = feed.reshape(len(feed), 1, self.height, self.width)
        return np.ascontiguousarray(feed)


def _open_session(path: Path, threads: int) -> ort.InferenceSession:
    if not path.is_file():
        raise ModelError(f"model {path} not found (export one with `python -m export`)")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3  # errors only: warnings would clutter the server's stderr
    # Idle intra-op threads would otherwise spin between inferences, taking the cores that the
    # gRPC workers need to decode the next requests.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime raises its own unrelated classes for bad files
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ModelError(f"model {path} cannot be loaded by onnxruntime: {reason}") from None


def _is_dim(value: object) -> bool:
    return isinstance(value, int) and value > 0


def _image_dims(where: str, node: Any) -> tuple[int, int, bool]:
    """(H, W, has a channel axis) of the image input [N, H, W] or [N, 1, H, W]."""
    shape = list(node.shape)
    expected = "expected [N,H,W] or [N,1,H,W] with fixed H, W and a dynamic N"
    shown = "[" + ",".join(str(dim) for dim in shape) + "]"
    if len(shape) == 4 and shape[1] == 1:
        shape = [shape[0], *shape[2:]]
        channel_axis = True
    elif len(shape) == 3:
        channel_axis = False
    else:
        raise ModelError(f"{where}: input '{node.name}' has shape {shown}, {expected}")
    fixed_batch = isinstance(shape[0], int) and shape[0] > 0
    if fixed_batch or not (_is_dim(shape[1]) and _is_dim(shape[2])):
        raise ModelError(f"{where}: input '{node.name}' has shape {shown}, {expected}")
    return int(shape[1]), int(shape[2]), channel_axis


def _find_outputs(where: str, nodes: list[Any]) -> dict[str, str]:
    """Map label / scores / probabilities to the names of the ONNX outputs that hold them."""
    found: dict[str, str] = {}
    for node in nodes:
        rank = len(node.shape)
        if node.type in _INT_TYPES and rank == 1:
            found.setdefault("label", node.name)
        elif node.type in _FLOAT_TYPES and rank == 2:
            hinted = any(hint in node.name.lower() for hint in _PROBABILITY_HINTS)
            found.setdefault("probabilities" if hinted else "scores", node.name)
    if not found:
        shown = ", ".join(f"'{n.name}' {n.type} {list(n.shape)}" for n in nodes)
        raise ModelError(
            f"{where}: outputs {shown} include neither scores (float [N,C]) nor labels "
            "(int64 or int32 [N])"
        )
    return found


class _Source(NamedTuple):
    """Where predict() gets one of OUTPUTS: the ONNX output it reads, and whether numpy derives
    it from that output (label = argmax, probabilities = softmax) instead of returning it."""

    onnx_name: str
    derived: bool


def _output_sources(names: dict[str, str]) -> dict[str, _Source]:
    """The model's OUTPUTS, in order, each with its source; `names` maps those the ONNX graph
    holds to its output names (see _find_outputs)."""
    sources = {kind: _Source(name, derived=False) for kind, name in names.items()}
    # Labels come from scores, else from probabilities; probabilities need scores.
    if "label" not in sources:
        sources["label"] = _Source(names.get("scores") or names["probabilities"], derived=True)
    if "probabilities" not in sources and "scores" in names:
        sources["probabilities"] = _Source(names["scores"], derived=True)
    return {kind: sources[kind] for kind in OUTPUTS if kind in sources}


def _num_classes(
    where: str, nodes: list[Any], names: dict[str, str], metadata: dict[str, str]
) -> int:
    widths = {
        node.shape[1]
        for node in nodes
        if node.name in (names.get("scores"), names.get("probabilities"))
    }
    fixed = {width for width in widths if _is_dim(width)}
    if len(fixed) > 1:
        raise ModelError(f"{where}: scores and probabilities disagree on the class count {fixed}")
    if fixed:
        return int(fixed.pop())
    labels = _parse_labels(metadata)
    if labels:
        return len(labels)
    raise ModelError(
        f"{where}: cannot tell the number of classes: give its scores a fixed shape [N,C] or "
        "its metadata_props a class_labels JSON list"
    )


def _parse_labels(metadata: dict[str, str]) -> list[str] | None:
    try:
        labels = json.loads(metadata.get("class_labels", "null"))
    except json.JSONDecodeError:
        return None
    return [str(label) for label in labels] if isinstance(labels, list) and labels else None


def _class_labels(where: str, metadata: dict[str, str], num_classes: int) -> list[str]:
    labels = _parse_labels(metadata)
    if labels is not None and len(labels) == num_classes:
        return labels
    if "class_labels" in metadata:
        # A foreign model may write class_labels in another format: its classes still work.
        _log.warning(
            "%s: ignoring metadata class_labels (expected a JSON list of %d strings)",
            where,
            num_classes,
        )
    return [str(index) for index in range(num_classes)]


def _input_scale(where: str, metadata: dict[str, str]) -> float:
    text = metadata.get("input_scale")
    if text is None:
        return INPUT_SCALE
    try:
        scale = float(text)
    except ValueError:
        scale = math.nan
    if not (math.isfinite(scale) and scale > 0):
        raise ModelError(f"{where}: metadata input_scale is {text!r}, expected a positive number")
    return scale
