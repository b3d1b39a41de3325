"""Open Inference Protocol tensors: a ModelInferRequest's image input to an array, outputs back.

The image input arrives raw (`raw_input_contents`, one entry per input) or typed (`contents`),
never both; either way it becomes bytes and goes through server.tensors.images_from_bytes, the
checks both protocols share. Outputs always go back raw with name, datatype and shape, because
tritonclient's `as_numpy` reads numeric outputs only from `raw_output_contents`. Mistakes only
this protocol can make are reported in the words Triton uses for them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import NDArray

from scratchnet_api.inference import open_inference_grpc_pb2 as pb
from server.errors import InvalidArgument
from server.runtime import ModelRuntime
from server.tensors import (
    Datatype,
    check_images_datatype,
    datatype_from_name,
    datatype_of,
    images_from_bytes,
)

__all__ = ["add_outputs", "images_from_request", "requested_outputs"]

# Tensor parameters that ask for a Triton extension this server lacks. Ignoring them would answer
# something else than was asked (a float tensor instead of class strings, data in the message
# instead of a shared-memory region), so they are refused.
_EXTENSION_PARAMETERS = {
    "classification": "classification",
    "shared_memory_region": "shared-memory",
}


def images_from_request(
    request: pb.ModelInferRequest, runtime: ModelRuntime, max_batch: int
) -> NDArray[Any]:
    """The validated images [N, H, W] of a ModelInferRequest (read-only, no copy when raw)."""
    model = runtime.name
    tensor = _image_input(request, runtime)
    raw = request.raw_input_contents
    has_contents = tensor.HasField("contents")
    if raw and has_contents:
        raise InvalidArgument(
            f"contents field must not be specified when using raw_input_contents for "
            f"'{tensor.name}' for model '{model}'"
        )
    if len(raw) > 1:
        raise InvalidArgument(
            f"expected 1 raw_input_contents entry (one per input) for model '{model}', "
            f"got {len(raw)}"
        )
    what = runtime.input_description
    _refuse_extension_parameters(tensor.parameters, what)
    datatype = datatype_from_name(tensor.datatype, what)
    if raw:
        data = raw[0]
    elif has_contents:
        data = _bytes_from_contents(tensor.contents, datatype, runtime)
    else:
        raise InvalidArgument(
            f"unable to find data for input tensor '{tensor.name}' for model '{model}' in "
            "request: expected raw_input_contents or contents"
        )
    return images_from_bytes(data, datatype, tensor.shape, runtime, max_batch)


def requested_outputs(request: pb.ModelInferRequest, runtime: ModelRuntime) -> list[str]:
    """The outputs a ModelInferRequest asks for, once each, in its order; none means all."""
    names: list[str] = []
    for output in request.outputs:
        if output.name not in runtime.outputs:
            raise InvalidArgument(
                f"unexpected inference output '{output.name}' for model '{runtime.name}', "
                f"expected one of {', '.join(runtime.outputs)}"
            )
        _refuse_extension_parameters(
            output.parameters, f"output '{output.name}' of model '{runtime.name}'"
        )
        if output.name not in names:
            names.append(output.name)
    return names or list(runtime.outputs)


def add_outputs(response: pb.ModelInferResponse, results: Mapping[str, NDArray[Any]]) -> None:
    """Append each result to a ModelInferResponse as a raw little-endian tensor, in order."""
    for name, value in results.items():
        datatype = datatype_of(value.dtype)
        response.outputs.add(name=name, datatype=datatype.name, shape=value.shape)
        response.raw_output_contents.append(
            np.ascontiguousarray(value, dtype=datatype.numpy).tobytes()
        )


def _image_input(
    request: pb.ModelInferRequest, runtime: ModelRuntime
) -> pb.ModelInferRequest.InferInputTensor:
    """The request's one input tensor, which must be the model's image input."""
    names = [tensor.name for tensor in request.inputs]
    if not names:
        raise InvalidArgument(
            f"expected 1 inputs but got 0 inputs for model '{runtime.name}'. Got inputs [], but "
            f"missing required inputs ['{runtime.input_name}']. Please provide all required inputs."
        )
    for name in names:
        if name != runtime.input_name:
            raise InvalidArgument(f"unexpected inference input '{name}' for model '{runtime.name}'")
    if len(names) > 1:
        raise InvalidArgument(
            f"input '{runtime.input_name}' already exists in request for model '{runtime.name}': "
            "expected it once"
        )
    return request.inputs[0]


def _refuse_extension_parameters(parameters: Mapping[str, Any], what: str) -> None:
    for key in parameters:
        if key in _EXTENSION_PARAMETERS:
            raise InvalidArgument(
                f"{what}: parameter '{key}' needs Triton's {_EXTENSION_PARAMETERS[key]} "
                "extension, which this server does not support; send the tensor without it"
            )


def _bytes_from_contents(
    contents: pb.InferTensorContents, datatype: Datatype, runtime: ModelRuntime
) -> bytes:
    """The raw bytes of typed `contents`, which must use the field of the tensor's datatype."""
    # Datatype first: the typed field to read depends on it, and an unaccepted one is refused in
    # the same words whichever way the data came.
    check_images_datatype(datatype, runtime)
    if datatype.numpy is None or datatype.contents_field is None:
        raise InvalidArgument(
            f"{runtime.input_description}: datatype {datatype} has no typed contents field, "
            "expected its data in raw_input_contents"
        )
    for field, _ in contents.ListFields():
        if field.name != datatype.contents_field:
            raise InvalidArgument(
                f"unexpected explicit tensor data for input tensor '{runtime.input_name}' for "
                f"model '{runtime.name}' in {field.name}, expected {datatype.contents_field} "
                f"for datatype '{datatype}'"
            )
    values = getattr(contents, datatype.contents_field)
    if datatype.numpy.kind not in "iu":
        return np.asarray(values, dtype=datatype.numpy).tobytes()
    # Narrow integers travel in 32-bit fields: a value that does not fit is refused, not wrapped.
    wide = np.asarray(values, dtype=np.int64)
    limits = np.iinfo(datatype.numpy)
    outside = (wide < limits.min) | (wide > limits.max)
    if outside.any():
        first = int(np.flatnonzero(outside)[0])
        raise InvalidArgument(
            f"{runtime.input_description}: {datatype.contents_field}[{first}] is "
            f"{int(wide[first])}, outside the {datatype} range [{limits.min}, {limits.max}]"
        )
    return wide.astype(datatype.numpy).tobytes()
