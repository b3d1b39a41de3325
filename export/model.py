"""model.onnx from a trainer artifact: assembled, validated, serialized the same way every time."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import onnx
from onnx import ModelProto, helper

from export.graph import DEFAULT_OPSET, build_graph, check_opset, ir_version_for
from export.metadata import metadata_props, model_doc_string
from scratchnet.artifact import Artifact, load_artifact
from scratchnet.contract import DEFAULT_MODEL_NAME, MODEL_NAME, MODEL_NAME_RULE, PRODUCER_NAME
from scratchnet.errors import ExportError
from scratchnet.files import atomic_write, check_writable
from scratchnet.versions import scratchnet_version

__all__ = [
    "ExportOptions",
    "artifact_sha256",
    "build_model",
    "export_artifact",
    "model_bytes",
    "validate_model",
    "write_file",
]

_INT64_MAX = 2**63 - 1
"""The largest ModelProto.model_version."""


@dataclass(frozen=True)
class ExportOptions:
    """Everything besides the artifact that decides the bytes of model.onnx."""

    input_dtype: str = "float32"
    opset: int = DEFAULT_OPSET
    model_version: int = 1
    name: str = DEFAULT_MODEL_NAME


def export_artifact(path: str | os.PathLike[str], options: ExportOptions) -> ModelProto:
    """Load the artifact at `path` and return its validated ONNX model."""
    return build_model(load_artifact(path), artifact_sha256(path), options)


def artifact_sha256(path: str | os.PathLike[str]) -> str:
    """The SHA-256 of the artifact file, recorded in the model's metadata."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def build_model(artifact: Artifact, artifact_sha256: str, options: ExportOptions) -> ModelProto:
    """The ONNX model of `artifact`, validated (checker full check and shape inference)."""
    check_opset(options.opset)
    if not MODEL_NAME.fullmatch(options.name):
        raise ExportError(
            f"model name {options.name!r}: expected {MODEL_NAME_RULE} (it names the Triton "
            "model folder)"
        )
    if not 1 <= options.model_version <= _INT64_MAX:
        raise ExportError(
            f"model version {options.model_version}: expected an integer from 1 to {_INT64_MAX} "
            "(ONNX's model_version is an int64)"
        )
    graph = build_graph(artifact.weights, artifact.biases, options.input_dtype, options.name)
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", options.opset)],
        ir_version=ir_version_for(options.opset),
        producer_name=PRODUCER_NAME,
        producer_version=scratchnet_version(),
        model_version=options.model_version,
        doc_string=model_doc_string(artifact, options.input_dtype),
    )
    helper.set_model_props(model, metadata_props(artifact, artifact_sha256, options.input_dtype))
    validate_model(model)
    return model


def validate_model(model: ModelProto) -> None:
    """Run onnx's full check and strict shape inference; the inferred outputs must match ours."""
    try:
        onnx.checker.check_model(model, full_check=True)
        inferred = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as error:
        raise ExportError(f"the exported model failed validation: {_one_line(error)}") from None
    declared, derived = list(model.graph.output), list(inferred.graph.output)
    if derived != declared:
        raise ExportError(
            "the exported model failed validation: shape inference gives outputs "
            f"{_one_line(derived)}, the graph declares {_one_line(declared)}"
        )


def model_bytes(model: ModelProto) -> bytes:
    """The serialized model; deterministic, so equal models give equal bytes."""
    return model.SerializeToString(deterministic=True)


def write_file(path: str | os.PathLike[str], data: bytes) -> None:
    """Write `data` atomically to `path`; any failure is a one-line ScratchnetError and no file."""
    check_writable(path)
    with atomic_write(path) as handle:
        handle.write(data)


def _one_line(value: object) -> str:
    return " ".join(str(value).split())
