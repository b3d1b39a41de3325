"""A Triton Inference Server model repository for model.onnx, so the same file moves to Triton:

DIR/<name>/config.pbtxt          platform onnxruntime_onnx, batching, the model's signature
DIR/<name>/labels.txt            class labels, one a line (Triton's classification extension)
DIR/<name>/<version>/model.onnx  the version directory is the ModelProto's model_version
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from onnx import ModelProto, TensorProto, ValueInfoProto

from export.graph import declared_dims
from export.model import model_bytes, write_file
from scratchnet import datatypes
from scratchnet.contract import CLASS_LABELS, PROBABILITIES, SCORES
from scratchnet.errors import ExportError
from scratchnet.files import check_writable

__all__ = ["LABELS_FILE", "config_pbtxt", "write_repository"]

LABELS_FILE = "labels.txt"


def config_pbtxt(model: ModelProto, max_batch_size: int) -> str:
    """config.pbtxt for `model`: its inputs and outputs without the batch dimension."""
    if max_batch_size < 1:
        raise ExportError(f"max batch size {max_batch_size}: expected an integer >= 1")
    inputs = ",\n".join(_tensor_config(value) for value in model.graph.input)
    outputs = ",\n".join(
        _tensor_config(value, LABELS_FILE if value.name in (SCORES, PROBABILITIES) else None)
        for value in model.graph.output
    )
    return (
        f"# Triton model configuration of {model.graph.name!r}, written by scratchnet-export.\n"
        f"name: {json.dumps(model.graph.name)}\n"
        'platform: "onnxruntime_onnx"\n'
        f"max_batch_size: {max_batch_size}\n"
        f"input [\n{inputs}\n]\n"
        f"output [\n{outputs}\n]\n"
        # Triton merges concurrent requests into one batch of up to max_batch_size images.
        "dynamic_batching { }\n"
    )


def write_repository(
    directory: str | os.PathLike[str], model: ModelProto, max_batch_size: int
) -> Path:
    """Write `model` as a Triton model repository under `directory`; return the model's folder.

    Everything is checked before the first file is written.
    """
    folder = Path(directory) / model.graph.name
    config = config_pbtxt(model, max_batch_size)
    props = {prop.key: prop.value for prop in model.metadata_props}
    labels = json.loads(props[CLASS_LABELS])
    for label in labels:
        if "\n" in label or "\r" in label:
            raise ExportError(
                f"class label {label!r} holds a line break: expected one line per label, as "
                f"Triton's {LABELS_FILE} has one label a line"
            )
    files = [folder / LABELS_FILE, folder / str(model.model_version) / "model.onnx"]
    files.append(folder / "config.pbtxt")  # last: Triton never sees a config without its model
    for path in files:
        check_writable(path)
    contents = ["".join(f"{label}\n" for label in labels).encode(), model_bytes(model)]
    for path, data in zip(files, [*contents, config.encode()], strict=True):
        write_file(path, data)
    return folder


def _tensor_config(value: ValueInfoProto, label_filename: str | None = None) -> str:
    tensor = value.type.tensor_type
    dims = declared_dims(value)
    if not dims or dims[0] != -1:
        raise ExportError(
            f"tensor '{value.name}': expected a dynamic batch dimension first, got shape {dims}"
        )
    datatype = datatypes.by_onnx(tensor.elem_type)
    if datatype is None:
        raise ExportError(
            f"tensor '{value.name}': {TensorProto.DataType.Name(tensor.elem_type)} has no Triton "
            "type"
        )
    lines = [f"    name: {json.dumps(value.name)}", f"    data_type: {datatype.triton}"]
    if dims[1:]:
        lines.append(f"    dims: [ {', '.join(map(str, dims[1:]))} ]")
    else:
        # A tensor of shape [batch] is [batch, 1] to Triton, which needs a non-empty shape.
        lines += ["    dims: [ 1 ]", "    reshape: { shape: [ ] }"]
    if label_filename:
        lines.append(f"    label_filename: {json.dumps(label_filename)}")
    return "  {\n" + "\n".join(lines) + "\n  }"
