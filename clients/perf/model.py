"""What perf learns about the served model before a run: its input, datatypes, outputs and batch
limit, from scratchnet.v1 GetModelInfo or the Open Inference Protocol's ModelMetadata and
ModelConfig."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import grpc

from clients.credentials import PLAINTEXT, Credentials
from clients.errors import from_rpc_error
from clients.targets import open_channel, parse_targets
from scratchnet.api.inference import open_inference_grpc_pb2 as oip
from scratchnet.api.v1 import classifier_pb2 as v1
from scratchnet.errors import ClientError, ScratchnetError

__all__ = ["CHANNEL_OPTIONS", "V1_DATATYPES", "ModelSpec", "describe", "sync_channel"]

V1_DATATYPES = {v1.DATA_TYPE_UINT8: "UINT8", v1.DATA_TYPE_FLOAT32: "FP32"}
"""scratchnet.v1's pixel types by their Open Inference Protocol names."""
# Replies as large as the server makes them; requests as large as the batch asks.
CHANNEL_OPTIONS: list[tuple[str, int | str]] = [
    ("grpc.max_receive_message_length", -1),
    ("grpc.max_send_message_length", -1),
]


@dataclass(frozen=True)
class ModelSpec:
    """What requests need to know about the served model, as its server describes it."""

    name: str
    version: str
    input_name: str
    image_dims: tuple[int, ...]
    """One image's dimensions, the input's shape without the batch axis, e.g. (28, 28)."""
    datatypes: tuple[str, ...]
    """Input datatypes accepted (OIP names, e.g. "FP32"), the model's own first."""
    outputs: tuple[str, ...]
    max_batch: int = 0
    """Most images per request (0: the server does not say)."""


def describe(
    target: str,
    api: str,
    model: str | None = None,
    version: str = "",
    timeout: float = 10.0,
    credentials: Credentials = PLAINTEXT,
) -> ModelSpec:
    """Ask the server at `target` about its model: v1 GetModelInfo, v2 ModelMetadata (the model's
    name from v1 GetModelInfo when `model` is None)."""
    metadata = credentials.metadata
    with sync_channel(target, credentials) as channel:
        try:
            if api == "v1":
                return _describe_v1(channel, timeout, metadata, model or "", version)
            if model is None:  # the server's default model, as v1 names it
                model = _describe_v1(channel, timeout, metadata, "", "").name
            return _describe_v2(channel, model, version, timeout, metadata)
        except grpc.RpcError as error:
            if isinstance(error, grpc.Call) and error.code() == grpc.StatusCode.UNIMPLEMENTED:
                raise ClientError(_unimplemented(target, api, model), error.code()) from None
            raise from_rpc_error(error, target, timeout, credentials=credentials) from None


def _unimplemented(target: str, api: str, model: str | None) -> str:
    if api == "v1":
        return (
            f"the server at {target} does not implement scratchnet.v1.Classifier: "
            "for an Open Inference Protocol server, pass --api v2"
        )
    if model is None:
        return (
            f"the server at {target} has no scratchnet.v1.Classifier to say its model's name: "
            "pass --model NAME"
        )
    return f"the server at {target} does not implement the Open Inference Protocol's ModelMetadata"


def sync_channel(target: str, credentials: Credentials) -> grpc.Channel:
    """A channel to `target` (replicas get round robin and retries), over TLS if told."""
    return open_channel(parse_targets(target), credentials, CHANNEL_OPTIONS)


def _describe_v1(
    channel: grpc.Channel,
    timeout: float,
    metadata: tuple[tuple[str, str], ...],
    model: str,
    version: str,
) -> ModelSpec:
    call = channel.unary_unary(
        "/scratchnet.v1.Classifier/GetModelInfo",
        v1.GetModelInfoRequest.SerializeToString,
        v1.GetModelInfoResponse.FromString,
    )
    request = v1.GetModelInfoRequest(model_name=model, model_version=version)
    info: v1.GetModelInfoResponse = call(request, timeout=timeout, metadata=metadata)
    return ModelSpec(
        name=info.model_name,
        version=info.model_version,
        input_name="images",  # v1 carries no input name
        image_dims=_image_dims(info.model_name, "images", info.input_shape),
        datatypes=tuple(V1_DATATYPES.get(dtype, str(dtype)) for dtype in info.input_dtypes),
        outputs=tuple(info.outputs),
        max_batch=int(info.max_batch_size),
    )


def _describe_v2(
    channel: grpc.Channel,
    model: str,
    version: str,
    timeout: float,
    metadata: tuple[tuple[str, str], ...],
) -> ModelSpec:
    call = channel.unary_unary(
        "/inference.GRPCInferenceService/ModelMetadata",
        oip.ModelMetadataRequest.SerializeToString,
        oip.ModelMetadataResponse.FromString,
    )
    meta: oip.ModelMetadataResponse = call(
        oip.ModelMetadataRequest(name=model, version=version), timeout=timeout, metadata=metadata
    )
    if len(meta.inputs) != 1:
        names = ", ".join(repr(tensor.name) for tensor in meta.inputs)
        raise ScratchnetError(
            f"model '{model}' has {len(meta.inputs)} inputs ({names}): perf sends one, the images"
        )
    image = meta.inputs[0]
    return ModelSpec(
        name=meta.name or model,
        version=version or (meta.versions[0] if meta.versions else ""),
        input_name=image.name,
        image_dims=_image_dims(model, image.name, image.shape),
        datatypes=(image.datatype,),
        outputs=tuple(tensor.name for tensor in meta.outputs),
        max_batch=_max_batch_v2(channel, model, version, timeout, metadata),
    )


def _max_batch_v2(
    channel: grpc.Channel,
    model: str,
    version: str,
    timeout: float,
    metadata: tuple[tuple[str, str], ...],
) -> int:
    """The model's max_batch_size from its configuration (Triton's model configuration
    extension); 0 from a server that does not say."""
    call = channel.unary_unary(
        "/inference.GRPCInferenceService/ModelConfig",
        oip.ModelConfigRequest.SerializeToString,
        oip.ModelConfigResponse.FromString,
    )
    try:
        reply = call(oip.ModelConfigRequest(name=model, version=version), timeout=timeout,
                     metadata=metadata)  # fmt: skip
    except grpc.RpcError:
        return 0  # not every KServe v2 server has the extension: the server will decide
    return int(reply.config.max_batch_size)


def _image_dims(model: str, name: str, shape: Sequence[int]) -> tuple[int, ...]:
    dims = tuple(int(size) for size in shape[1:])
    if len(shape) < 2 or shape[0] != -1 or any(size < 1 for size in dims):
        raise ScratchnetError(
            f"input '{name}' of model '{model}' has shape {list(shape)}: perf needs a variable "
            "batch axis and fixed image dimensions, e.g. [-1,28,28]"
        )
    return dims
