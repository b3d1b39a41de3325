"""model.onnx run in process by onnxruntime, with no server: what each Ray actor opens once.

Takes what the server takes: one image input [batch, H, W], float32 (pixels in [0, 1]; uint8
pixels are divided by 255 first, the model's `input_scale`) or uint8; a label output (int64
[batch]) or class scores (float32 [batch, C], whose argmax is the label), and probabilities
when the model has them. Importing this module loads onnxruntime: only the Ray engine does.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray

from clients.client import ModelInfo, Prediction
from scratchnet.contract import (
    CLASS_LABELS,
    INPUT_SCALE,
    INPUT_SCALE_KEY,
    LABEL,
    PROBABILITIES,
    SCORES,
    scale_uint8,
)
from scratchnet.errors import ModelError, ScratchnetError

__all__ = ["OnnxModel"]

_DTYPES: dict[str, np.dtype[Any]] = {
    "tensor(float)": np.dtype(np.float32),
    "tensor(uint8)": np.dtype(np.uint8),
}


class OnnxModel:
    """An image classifier in an onnxruntime session on the CPU, one intra-op thread."""

    def __init__(self, model: bytes, where: str) -> None:
        """Open the ONNX bytes `model`; `where` (its path) names it in messages."""
        options = ort.SessionOptions()
        # One thread per actor: Ray gives each actor one CPU and scales out by adding actors.
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        try:
            self._session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime raises its own unrelated classes for bad files
            lines = str(error).strip().splitlines()
            reason = lines[0] if lines else type(error).__name__
            raise ModelError(f"model {where} cannot be loaded by onnxruntime: {reason}") from None
        inputs = self._session.get_inputs()
        if len(inputs) != 1 or inputs[0].type not in _DTYPES or len(inputs[0].shape) != 3:
            raise ModelError(
                f"model {where}: expected one float32 or uint8 input [batch, H, W], got "
                + _describe(inputs)
            )
        self._input = inputs[0].name
        self.dtype = _DTYPES[inputs[0].type]
        height, width = inputs[0].shape[1:]
        if not (isinstance(height, int) and isinstance(width, int)):
            raise ModelError(f"model {where}: input '{self._input}' has no fixed H and W")
        self.image_shape = (height, width)
        outputs = {output.name: output for output in self._session.get_outputs()}
        self._outputs = tuple(name for name in (LABEL, SCORES, PROBABILITIES) if name in outputs)
        if LABEL not in outputs and SCORES not in outputs:
            raise ModelError(
                f"model {where}: expected an output '{LABEL}' or '{SCORES}', got "
                + _describe(list(outputs.values()))
            )
        meta = self._session.get_modelmeta()
        metadata = meta.custom_metadata_map
        self._scale = float(metadata.get(INPUT_SCALE_KEY, INPUT_SCALE))
        classes = next(
            (outputs[name].shape[1] for name in (SCORES, PROBABILITIES) if name in outputs), None
        )
        try:
            labels = json.loads(metadata[CLASS_LABELS]) if CLASS_LABELS in metadata else None
        except ValueError:
            raise ModelError(f"model {where}: metadata '{CLASS_LABELS}' is not JSON") from None
        if not isinstance(classes, int):
            classes = len(labels) if labels else 0
        self.info = ModelInfo(
            name=Path(where).stem,
            version=str(meta.version) if meta.version > 0 else "1",
            input_dtypes=(self.dtype.name,),
            image_shape=self.image_shape,
            num_classes=classes,
            class_labels=tuple(labels) if labels else tuple(map(str, range(classes))),
            max_batch_size=0,
            max_message_bytes=0,
            outputs=self._outputs,
            metadata=dict(metadata),
        )

    def predict(self, images: NDArray[Any]) -> Prediction:
        """Classify images [N, H, W]: uint8 pixels 0-255, or float32 in [0, 1]."""
        if images.dtype == np.uint8 and self.dtype == np.float32:
            images = scale_uint8(images, self._scale)
        elif images.dtype != self.dtype:
            raise ScratchnetError(
                f"model {self.info.name} takes {self.dtype.name} pixels, got {images.dtype}"
            )
        arrays = self._session.run(list(self._outputs), {self._input: images})
        values = dict(zip(self._outputs, arrays, strict=True))
        scores = values.get(SCORES)
        labels = values[LABEL] if LABEL in values else np.argmax(values[SCORES], axis=1)
        return Prediction(
            labels=np.asarray(labels, dtype=np.int64),
            scores=scores,
            probabilities=values.get(PROBABILITIES),
        )


def _describe(values: list[Any]) -> str:
    return ", ".join(f"{v.name} {v.type} {v.shape}" for v in values) or "none"
