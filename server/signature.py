"""What an ONNX file offers, read from the file without running it: its inputs and outputs (name,
datatype, dims with -1 where dynamic), the op that produces each output, its metadata_props,
model_version and producer.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from google.protobuf.message import DecodeError
from onnx import numpy_helper

from scratchnet import datatypes
from scratchnet.datatypes import Datatype
from scratchnet.errors import ModelError, clip
from scratchnet.files import require_model_file

__all__ = ["Signature", "TensorSpec", "format_dims", "read_signature"]

# Ops that pass a tensor on unchanged: an output's role is decided by the op before them.
_PASS_THROUGH = {"Identity", "Cast"}


def format_dims(dims: Sequence[int | str]) -> str:
    """A shape the way Triton prints it: [-1,28,28]; a client's shape of thousands of
    dimensions is cut short (scratchnet.errors.clip), so that its message stays one short line."""
    return clip("[" + ",".join(str(dim) for dim in dims) + "]")


@dataclass(frozen=True)
class TensorSpec:
    """One input or output of a model."""

    name: str
    datatype: Datatype
    dims: tuple[int, ...]
    """Sizes, -1 where the graph leaves a dimension open (the batch, usually)."""
    producer: str = ""
    """For an output, the op type that computes it ("Softmax"); "" for inputs."""
    model_dims: tuple[int, ...] | None = None
    """The shape the graph itself takes or gives, where a config reshape makes it differ from
    `dims` (what clients send and receive); None when they are the same."""

    def __str__(self) -> str:
        return f"'{self.name}' {self.datatype} {format_dims(self.dims)}"


@dataclass(frozen=True)
class Signature:
    """A model's inputs, outputs and ONNX metadata."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    metadata: dict[str, str] = field(default_factory=dict)
    model_version: int = 0
    """The ModelProto's model_version; 0 when unset."""
    nonfinite: tuple[str, ...] = ()
    """Initializers (weights) holding NaN or infinity."""
    producer_name: str = ""
    """The ModelProto's producer_name: the tool that wrote the file."""
    fixed_inputs: tuple[str, ...] = ()
    """Graph inputs that are also initializers (which ONNX lets a caller override): served as
    the weights they hold, not as inputs."""

    def output(self, name: str) -> TensorSpec | None:
        """The output called `name`, or None."""
        return next((spec for spec in self.outputs if spec.name == name), None)


def read_signature(path: str | os.PathLike[str]) -> Signature:
    """Read the signature of the ONNX file at `path`; ModelError naming the file if it cannot."""
    where = f"model {path}"
    require_model_file(path, where)
    try:
        model = onnx.load(os.fspath(path), load_external_data=False)
    except (DecodeError, OSError, ValueError) as error:
        reason = " ".join(str(error).split()) or type(error).__name__
        raise ModelError(f"{where} is not a readable ONNX file: {reason}") from None
    graph = model.graph
    initializers = {tensor.name for tensor in graph.initializer}
    producers = {output: node for node in graph.node for output in node.output}
    inputs = tuple(
        _spec(where, "input", value) for value in graph.input if value.name not in initializers
    )
    outputs = tuple(
        _spec(where, "output", value, _producer(value.name, producers)) for value in graph.output
    )
    if not inputs or not outputs:
        raise ModelError(f"{where} has no {'inputs' if not inputs else 'outputs'}")
    return Signature(
        inputs=inputs,
        outputs=outputs,
        metadata={prop.key: prop.value for prop in model.metadata_props},
        model_version=max(0, int(model.model_version)),
        nonfinite=tuple(
            tensor.name for tensor in graph.initializer if not _finite(tensor, Path(path).parent)
        ),
        producer_name=model.producer_name,
        fixed_inputs=tuple(value.name for value in graph.input if value.name in initializers),
    )


def _spec(where: str, kind: str, value: onnx.ValueInfoProto, producer: str = "") -> TensorSpec:
    if not value.type.HasField("tensor_type"):
        raise ModelError(f"{where}: {kind} '{value.name}' is not a tensor, expected tensors only")
    tensor = value.type.tensor_type
    datatype = datatypes.by_onnx(tensor.elem_type)
    if datatype is None:
        type_name = onnx.TensorProto.DataType.Name(tensor.elem_type)
        raise ModelError(
            f"{where}: {kind} '{value.name}' is {type_name}, which has no Open Inference Protocol "
            "datatype"
        )
    dims = tuple(
        dim.dim_value if dim.HasField("dim_value") and dim.dim_value > 0 else -1
        for dim in tensor.shape.dim
    )
    return TensorSpec(value.name, datatype, dims, producer)


def _finite(tensor: onnx.TensorProto, folder: Path) -> bool:
    """Whether a float initializer holds only finite values (others always do)."""
    datatype = datatypes.by_onnx(tensor.data_type)
    if datatype is None or not datatype.is_float or datatype.numpy is None:
        return True
    try:
        values = numpy_helper.to_array(tensor, base_dir=str(folder))
    except (OSError, ValueError):
        return True  # unreadable external data: onnxruntime's load reports it
    return bool(np.isfinite(values).all())


def _producer(name: str, producers: dict[str, onnx.NodeProto]) -> str:
    node = producers.get(name)
    seen = set()
    while node is not None and node.op_type in _PASS_THROUGH and node.input[0] not in seen:
        seen.add(node.input[0])
        node = producers.get(node.input[0])
    return node.op_type if node is not None else ""
