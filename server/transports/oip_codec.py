"""Open Inference Protocol messages to and from the data plane's requests, as plain functions.

An input's data arrives raw (`raw_input_contents`, one entry per input, in order) or typed
(`contents`), never both; outputs always go back raw, because tritonclient's `as_numpy` reads
numeric outputs only from `raw_output_contents`. Mistakes only this protocol can make are
reported in the words Triton uses for them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from scratchnet import datatypes
from scratchnet.api.inference import open_inference_grpc_pb2 as pb
from scratchnet.errors import InvalidArgument, clip
from server.dataplane import InferRequest, InferResponse, RequestedOutput
from server.model import Model
from server.model_config import ModelConfig
from server.repository import IndexEntry
from server.statistics import Duration, ModelStatistics
from server.tensors import InputTensor, pack_strings

__all__ = [
    "PLATFORM",
    "infer_request",
    "infer_response",
    "model_config",
    "model_metadata",
    "model_statistics",
    "repository_index",
]

PLATFORM = "onnxruntime_onnx"
"""The platform Triton reports for ONNX models run by onnxruntime."""

# Tensor parameters that ask for a Triton extension this server lacks. Ignoring them would answer
# something else than was asked (data in the message instead of a shared-memory region), so they
# are refused.
_EXTENSION_PARAMETERS = {"shared_memory_region": "shared-memory"}


def infer_request(message: pb.ModelInferRequest) -> InferRequest:
    """The data plane's request for a ModelInferRequest."""
    model = clip(message.model_name)
    raw = message.raw_input_contents
    names = [tensor.name for tensor in message.inputs]
    # With no inputs or a repeated one, the data plane's words for that mistake say more.
    if raw and len(raw) != len(names) and names and len(set(names)) == len(names):
        raise InvalidArgument(
            f"expected {len(names)} raw_input_contents {'entry' if len(names) == 1 else 'entries'}"
            f" (one per input) for model '{model}', got {len(raw)}"
        )
    inputs = []
    for index, tensor in enumerate(message.inputs):
        has_contents = tensor.HasField("contents")
        if raw and has_contents:
            raise InvalidArgument(
                f"contents field must not be specified when using raw_input_contents for "
                f"'{clip(tensor.name)}' for model '{model}'"
            )
        what = f"input '{clip(tensor.name)}' of model '{model}'"
        _refuse_extension_parameters(tensor.parameters, what)
        typed, field = _typed_values(tensor, what) if has_contents else (None, "")
        if not raw and not has_contents:
            raise InvalidArgument(
                f"unable to find data for input tensor '{clip(tensor.name)}' for model "
                f"'{model}' in request: expected raw_input_contents or contents"
            )
        inputs.append(
            InputTensor(
                name=tensor.name,
                datatype=tensor.datatype,
                shape=tuple(tensor.shape),
                raw=raw[index] if index < len(raw) else None,
                typed=typed,
                typed_field=field,
            )
        )
    outputs = []
    for output in message.outputs:
        _refuse_extension_parameters(
            output.parameters, f"output '{clip(output.name)}' of model '{model}'"
        )
        outputs.append(RequestedOutput(output.name, _parameters(output.parameters)))
    return InferRequest(
        model_name=message.model_name,
        model_version=message.model_version,
        inputs=inputs,
        outputs=outputs,
        id=message.id,
    )


def infer_response(response: InferResponse) -> pb.ModelInferResponse:
    """A ModelInferResponse with every output as a raw little-endian tensor, in order."""
    message = pb.ModelInferResponse(
        model_name=response.model_name, model_version=response.model_version, id=response.id
    )
    for name, value in response.outputs.items():
        datatype = datatypes.by_numpy(value.dtype)
        message.outputs.add(name=name, datatype=datatype.name, shape=value.shape)
        if datatype.itemsize == 0:
            message.raw_output_contents.append(pack_strings(value))
        else:
            message.raw_output_contents.append(
                np.ascontiguousarray(value, dtype=datatype.numpy).tobytes()
            )
    return message


def model_metadata(
    model: Model, versions: Sequence[str], properties: Mapping[str, str]
) -> pb.ModelMetadataResponse:
    """The model's `versions`, platform, inputs and outputs as clients see them, and its ONNX
    metadata_props as `properties`."""
    tensor = pb.ModelMetadataResponse.TensorMetadata
    return pb.ModelMetadataResponse(
        name=model.name,
        versions=versions,
        platform=PLATFORM,
        inputs=[
            tensor(name=spec.name, datatype=spec.datatype.name, shape=spec.dims)
            for spec in model.inputs
        ],
        outputs=[
            tensor(name=spec.name, datatype=spec.datatype.name, shape=spec.dims)
            for spec in model.outputs
        ],
        properties=properties,
    )


def model_config(model: Model) -> pb.ModelConfigResponse:
    """The model's configuration: its config.pbtxt completed from the ONNX file (as Triton's
    auto-complete does), or the one the ONNX file alone gives."""
    config = ModelConfig()
    if model.config is not None:
        config.CopyFrom(model.config)
    config.name = model.name
    if not config.backend:
        config.platform = PLATFORM
    config.max_batch_size = model.max_batch
    batch = 1 if model.max_batch > 0 else 0
    if not config.input:
        for spec in model.inputs:
            config.input.add(name=spec.name, data_type=spec.datatype.triton, dims=spec.dims[batch:])
    if not config.output:
        for spec in model.outputs:
            entry = config.output.add(
                name=spec.name, data_type=spec.datatype.triton, dims=spec.dims[batch:]
            )
            if not entry.dims:
                # Triton needs a shape: a [batch] output is [batch, 1] reshaped to [batch].
                entry.dims.append(1)
                entry.reshape.SetInParent()
    return pb.ModelConfigResponse(config=config)


def repository_index(entries: Sequence[IndexEntry]) -> pb.RepositoryIndexResponse:
    """Triton's repository index: one row per model version (or per model not loaded)."""
    return pb.RepositoryIndexResponse(
        models=[
            pb.RepositoryIndexResponse.ModelIndex(
                name=entry.name, version=entry.version, state=entry.state, reason=entry.reason
            )
            for entry in entries
        ]
    )


def _parameters(parameters: Mapping[str, pb.InferParameter]) -> dict[str, Any]:
    """Protocol parameters as plain values."""
    return {
        key: getattr(value, value.WhichOneof("parameter_choice") or "string_param")
        for key, value in parameters.items()
    }


def model_statistics(stats: list[ModelStatistics]) -> pb.ModelStatisticsResponse:
    """Triton's statistics of each model version, in the order given."""
    message = pb.ModelStatisticsResponse()
    for model in stats:
        entry = message.model_stats.add(
            name=model.name,
            version=model.version,
            last_inference=model.last_inference_ms,
            inference_count=model.inference_count,
            execution_count=model.execution_count,
        )
        inference = entry.inference_stats
        for field in ("success", "fail", "queue", "compute_input", "compute_infer"):
            _duration(getattr(inference, field), getattr(model, field))
        _duration(inference.compute_output, model.compute_output)
        for batch in model.batches:
            added = entry.batch_stats.add(batch_size=batch.batch_size)
            _duration(added.compute_input, batch.compute_input)
            _duration(added.compute_infer, batch.compute_infer)
            _duration(added.compute_output, batch.compute_output)
    return message


def _duration(message: pb.StatisticDuration, duration: Duration) -> None:
    message.count, message.ns = duration.count, duration.ns


def _typed_values(
    tensor: pb.ModelInferRequest.InferInputTensor, what: str
) -> tuple[Sequence[Any], str]:
    """The typed contents of a tensor (not copied: the data plane counts them before it converts
    them) and the one field holding them."""
    fields = [field.name for field, _ in tensor.contents.ListFields()]
    if len(fields) > 1:
        raise InvalidArgument(
            f"{what}: contents has data in {', '.join(fields)}, expected one field"
        )
    if fields:
        return getattr(tensor.contents, fields[0]), fields[0]
    # Empty contents: the data plane reports the count against the shape, in the right field.
    datatype = datatypes.by_name(tensor.datatype)
    return [], (datatype.contents_field if datatype and datatype.contents_field else "contents")


def _refuse_extension_parameters(parameters: Mapping[str, Any], what: str) -> None:
    for key in parameters:
        if key in _EXTENSION_PARAMETERS:
            raise InvalidArgument(
                f"{what}: parameter '{key}' needs Triton's {_EXTENSION_PARAMETERS[key]} "
                "extension, which this server does not support; send the tensor without it"
            )
