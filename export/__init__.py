"""The ONNX exporter: a trainer artifact becomes model.onnx, checked op for op against numpy.

graph     the ONNX graph (tensor names, ops, opset rules)
metadata  producer, doc string and metadata_props
model     assembling, validating, serializing and writing the ModelProto
parity    numpy vs onnxruntime vs onnx.reference on the same images
triton    a Triton Inference Server model repository
"""

from __future__ import annotations

from export.errors import ExportError
from export.graph import (
    BATCH,
    DEFAULT_OPSET,
    INPUT,
    INPUT_DTYPES,
    LABEL,
    MIN_OPSET,
    OUTPUTS,
    PROBABILITIES,
    SCORES,
)
from export.model import (
    DEFAULT_MODEL,
    ExportOptions,
    build_model,
    export_artifact,
    model_bytes,
    write_file,
)
from export.parity import ParityReport, check_parity
from export.triton import config_pbtxt, write_repository

__all__ = [
    "BATCH",
    "DEFAULT_MODEL",
    "DEFAULT_OPSET",
    "INPUT",
    "INPUT_DTYPES",
    "LABEL",
    "MIN_OPSET",
    "OUTPUTS",
    "PROBABILITIES",
    "SCORES",
    "ExportError",
    "ExportOptions",
    "ParityReport",
    "build_model",
    "check_parity",
    "config_pbtxt",
    "export_artifact",
    "model_bytes",
    "write_file",
    "write_repository",
]
