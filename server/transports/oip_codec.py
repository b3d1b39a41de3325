"""Open Inference Protocol messages to and from the data plane's requests, as plain functions.

An input's data arrives raw (`raw_input_contents`, one entry per input, in order) or typed
(`contents`), never both; outputs always go back raw, because tritonclient's `as_numpy` reads
numeric outputs only from `raw_output_contents`. Mistakes only this protocol can make are
reported in the words Triton uses for them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from scratchnet import datatypes
from scratchnet.api.inference import open_inference_grpc_pb2 as pb
from scratchnet.errors import InvalidArgument, Unimplemented, clip
from server import checks
from server.dataplane import InferRequest, InferResponse, RequestedOutput
from server.model import Model
from server.model_config import ModelConfig
from server.repository import IndexEntry
from server.shared_memory import BYTE_SIZE, REGION, Region, SharedMemory, requested_region
from server.statistics import Duration, ModelStatistics
from server.tensors import InputTensor, pack_strings
from server.transports import wire

__all__ = [
    "PLATFORM",
    "Received",
    "check_repository",
    "infer_request",
    "infer_response",
    "model_config",
    "model_metadata",
    "model_statistics",
    "receive",
    "repository_index",
    "shared_memory_status",
]

PLATFORM = "onnxruntime_onnx"
"""The platform Triton reports for ONNX models run by onnxruntime."""


@dataclass(frozen=True)
class Received:
    """A ModelInferRequest as received: the message without its raw input contents, and those
    as views of the received bytes (see server.transports.wire)."""

    message: pb.ModelInferRequest
    raw: Sequence[bytes | memoryview]


_RAW_INPUT_CONTENTS = pb.ModelInferRequest.DESCRIPTOR.fields_by_name["raw_input_contents"].number


def receive(data: bytes) -> Received:
    """Parse a serialized ModelInferRequest, keeping its tensors' bytes uncopied; DecodeError
    when `data` is not one."""
    if len(data) < wire.SPLIT_ABOVE:
        message = pb.ModelInferRequest.FromString(data)
        return Received(message, message.raw_input_contents)
    raw, rest = wire.split(data, _RAW_INPUT_CONTENTS)
    return Received(pb.ModelInferRequest.FromString(rest), raw)


def infer_request(received: Received, shared: SharedMemory | None = None) -> InferRequest:
    """The data plane's request for a received ModelInferRequest; inputs that name a region
    of `shared` memory are read from it in place."""
    message = received.message
    model = clip(message.model_name)
    if message.parameters:
        # Triton's gRPC binding also takes its empty-final-response option, which only
        # decoupled models act on: these answer once, so it changes nothing here.
        checks.check_request_parameters(
            _parameters(message.parameters), message.model_name, (checks.EMPTY_FINAL_RESPONSE,)
        )
    raw = list(received.raw)
    # Each protobuf field is read once: every read of a upb message builds a Python object.
    tensors = [(tensor, tensor.name) for tensor in message.inputs]
    in_memory = [
        requested_region(_parameters(tensor.parameters), _what(name, model))
        if tensor.parameters
        else None
        for tensor, name in tensors
    ]
    sent = len(tensors) - sum(region is not None for region in in_memory)
    # With no inputs or a repeated one, the data plane's words for that mistake say more.
    if raw and len(raw) != sent and tensors and len({name for _, name in tensors}) == len(tensors):
        raise InvalidArgument(
            f"expected {sent} raw_input_contents {'entry' if sent == 1 else 'entries'}"
            f" (one per input not in shared memory) for model '{model}', got {len(raw)}"
        )
    inputs = []
    for (tensor, name), region in zip(tensors, in_memory, strict=True):
        has_contents = tensor.HasField("contents")
        if raw and has_contents:
            raise InvalidArgument(
                f"contents field must not be specified when using raw_input_contents for "
                f"'{clip(name)}' for model '{model}'"
            )
        data: bytes | memoryview | None = None
        if region is not None:
            if has_contents:
                raise InvalidArgument(
                    f"unexpected 'contents' provided when using shared memory for "
                    f"{_what(name, model)}: its data is the region's"
                )
            if shared is None:
                raise InvalidArgument(
                    f"{_what(name, model)}: this transport does not take shared memory"
                )
            data = shared.view(*region, _what(name, model))
        elif raw:
            data = raw.pop(0)
        typed, field = _typed_values(tensor, _what(name, model)) if has_contents else (None, "")
        if data is None and not has_contents and not received.raw:
            raise InvalidArgument(
                f"unable to find data for input tensor '{clip(name)}' for model "
                f"'{model}' in request: expected raw_input_contents or contents"
            )
        inputs.append(InputTensor(name, tensor.datatype, tuple(tensor.shape), data, typed, field))
    outputs = [
        RequestedOutput(output.name, _parameters(output.parameters) if output.parameters else {})
        for output in message.outputs
    ]
    for output in outputs:
        if not output.parameters:
            continue
        # A region that is not there, or too small for its own offset, is refused before the
        # model runs; whether the output fits, once it has (checks.check_output_room).
        what = f"output '{clip(output.name)}' of model '{model}'"
        region = requested_region(output.parameters, what)
        if region is not None:
            if shared is None:
                raise InvalidArgument(f"{what}: this transport does not take shared memory")
            shared.view(*region, what)
    return InferRequest(message.model_name, message.model_version, inputs, outputs, message.id)


def _what(name: str, model: str) -> str:
    return f"input '{clip(name)}' of model '{model}'"


def infer_response(
    response: InferResponse,
    requested: Sequence[RequestedOutput] = (),
    shared: SharedMemory | None = None,
) -> pb.ModelInferResponse:
    """A ModelInferResponse with every output as a raw little-endian tensor, in order; outputs
    `requested` into a region of `shared` memory are written there instead (their raw entry
    left empty, so that the others keep their places)."""
    message = pb.ModelInferResponse(
        model_name=response.model_name, model_version=response.model_version, id=response.id
    )
    regions = {output.name: output.parameters for output in requested}
    for name, value in response.outputs.items():
        datatype = datatypes.by_numpy(value.dtype)
        tensor = message.outputs.add(name=name, datatype=datatype.name, shape=value.shape)
        data = (
            pack_strings(value)
            if datatype.itemsize == 0
            else np.ascontiguousarray(value, dtype=datatype.numpy).tobytes()
        )
        wanted = regions.get(name)
        if not wanted:
            message.raw_output_contents.append(data)
            continue
        what = f"output '{name}' of model '{response.model_name}'"
        region = requested_region(wanted, what)
        if region is None:
            message.raw_output_contents.append(data)
            continue
        if shared is None:
            raise InvalidArgument(f"{what}: this transport does not take shared memory")
        name_of, offset, _ = region
        # The data plane has checked that the output fits its bytes (checks.check_output_room).
        shared.view(name_of, offset, len(data), what)[:] = data
        tensor.parameters[REGION].string_param = name_of
        tensor.parameters[BYTE_SIZE].int64_param = len(data)
        message.raw_output_contents.append(b"")
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


def check_repository(name: str) -> None:
    """Unimplemented for a repository named in a repository request: there is one, unnamed."""
    if name:
        raise Unimplemented(
            f"'repository_name' specification is not supported (got '{clip(name)}'): this "
            "server has one model repository, leave the name empty"
        )


def load_config(request: pb.RepositoryModelLoadRequest) -> str:
    """The JSON model configuration a load request carries in its parameter 'config' ("" if
    none); InvalidArgument for any other parameter, or a 'config' that is not a string."""
    check_repository(request.repository_name)
    config = ""
    for key, value in request.parameters.items():
        if key != "config":
            raise InvalidArgument(
                f"failed to load '{clip(request.model_name)}': parameter '{clip(key)}' is not "
                "supported, expected only 'config' (JSON text)"
            )
        kind = value.WhichOneof("parameter_choice")
        if kind != "string_param":
            raise InvalidArgument(
                f"failed to load '{clip(request.model_name)}': parameter 'config' is "
                f"{kind or 'empty'}, expected a string_param holding the model configuration "
                "as JSON"
            )
        config = value.string_param
    return config


def _parameters(parameters: Mapping[str, pb.InferParameter]) -> dict[str, Any]:
    """Protocol parameters as plain values (None: a parameter with no value set)."""
    plain = {}
    for key, value in parameters.items():
        choice = value.WhichOneof("parameter_choice")
        plain[key] = None if choice is None else getattr(value, choice)
    return plain


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
        # No response cache here, but Triton always sends these, and perf_analyzer reads them.
        inference.cache_hit.SetInParent()
        inference.cache_miss.SetInParent()
        for batch in model.batches:
            added = entry.batch_stats.add(batch_size=batch.batch_size)
            _duration(added.compute_input, batch.compute_input)
            _duration(added.compute_infer, batch.compute_infer)
            _duration(added.compute_output, batch.compute_output)
    return message


def shared_memory_status(regions: Sequence[Region]) -> pb.SystemSharedMemoryStatusResponse:
    """The registered regions, by name."""
    status = pb.SystemSharedMemoryStatusResponse.RegionStatus
    return pb.SystemSharedMemoryStatusResponse(
        regions={
            region.name: status(
                name=region.name,
                key=region.key,
                offset=region.offset,
                byte_size=region.byte_size,
            )
            for region in regions
        }
    )


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
