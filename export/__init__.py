"""The ONNX exporter: a trainer artifact becomes model.onnx, checked op for op against numpy.

graph     the ONNX graph (ops and opset rules; tensor names come from scratchnet.contract)
metadata  producer, doc string and metadata_props
model     assembling, validating, serializing and writing the ModelProto
parity    numpy vs onnxruntime vs onnx.reference on the same images
triton    a Triton Inference Server model repository
"""

from __future__ import annotations

# First: Ctrl-C while the imports below run is one line, not a traceback (scratchnet.starting).
import scratchnet.starting  # noqa: F401

# isort: split

from export.graph import DEFAULT_OPSET, MIN_OPSET
from export.model import ExportOptions, build_model, export_artifact, model_bytes, write_file
from export.parity import ParityReport, check_parity
from export.triton import config_pbtxt, write_repository
from scratchnet.errors import ExportError

__all__ = [
    "DEFAULT_OPSET",
    "MIN_OPSET",
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
