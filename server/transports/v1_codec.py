"""scratchnet.v1 messages to and from the data plane's classifier requests, as plain functions."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from scratchnet import datatypes
from scratchnet.api.v1 import classifier_pb2 as pb
from scratchnet.contract import LABEL, PROBABILITIES, SCORES
from server.dataplane import ClassifyRequest, ClassifyResponse
from server.model import Model
from server.tensors import InputTensor
from server.transports import wire

__all__ = ["Received", "classify_request", "model_info", "predict_response", "receive"]

_IMAGES = pb.PredictRequest.DESCRIPTOR.fields_by_name["images"].number
_DATA = pb.Tensor.DESCRIPTOR.fields_by_name["data"].number
_MATRICES = tuple(
    (name, pb.PredictResponse.DESCRIPTOR.fields_by_name[name].number)
    for name in (SCORES, PROBABILITIES)
)


@dataclass(frozen=True)
class Received:
    """A PredictRequest as received: the message without its pixels, and those as a view of the
    received bytes (see server.transports.wire); None when it has no images tensor."""

    message: pb.PredictRequest
    pixels: bytes | memoryview | None


def receive(data: bytes) -> Received:
    """Parse a serialized PredictRequest, keeping its pixels uncopied; DecodeError when `data`
    is not one."""
    if len(data) < wire.SPLIT_ABOVE:
        message = pb.PredictRequest.FromString(data)
        return Received(message, message.images.data if message.HasField("images") else None)
    tensors, rest = wire.split(data, _IMAGES)
    message = pb.PredictRequest.FromString(rest)
    pixels = None
    for tensor in tensors:  # several occurrences of a message field merge, as protobuf's do
        data_fields, tensor_rest = wire.split(tensor, _DATA)
        message.images.MergeFromString(tensor_rest)
        pixels = data_fields[-1] if data_fields else pixels
    if tensors and pixels is None:
        pixels = memoryview(b"")
    return Received(message, pixels)


def classify_request(received: Received, default_model: str) -> ClassifyRequest:
    """The data plane's request for a PredictRequest (to `default_model` if it names none)."""
    message = received.message
    outputs = [LABEL]
    if message.return_scores:
        outputs.append(SCORES)
    if message.return_probabilities:
        outputs.append(PROBABILITIES)
    images = None
    if received.pixels is not None:
        tensor = message.images
        images = InputTensor(
            name="images",
            datatype=_datatype_name(tensor.dtype),
            shape=tuple(tensor.shape),
            raw=received.pixels,
        )
    return ClassifyRequest(
        message.model_name or default_model,
        message.model_version,
        images,
        outputs,
        message.request_id,
    )


def predict_response(response: ClassifyResponse) -> bytes:
    """A serialized PredictResponse: labels, and scores and probabilities row-major when asked
    for (written from numpy as packed floats, see server.transports.wire)."""
    message = pb.PredictResponse(
        num_classes=response.num_classes,
        model_name=response.model_name,
        model_version=response.model_version,
        request_id=response.id,
    )
    # tolist() hands protobuf plain Python numbers in one C loop.
    message.labels.extend(response.outputs[LABEL].tolist())
    parts = [message.SerializeToString()]
    for name, field in _MATRICES:
        if name in response.outputs:
            floats = response.outputs[name].astype("<f4", copy=False)
            parts.append(wire.length_delimited(field, floats.tobytes()))
    return b"".join(parts)


def model_info(
    model: Model, metadata: Mapping[str, str], max_message_bytes: int
) -> pb.GetModelInfoResponse:
    """What a client needs to call Predict on an image classifier."""
    classifier = model.classifier
    assert classifier is not None  # the service only describes classifiers
    return pb.GetModelInfoResponse(
        model_name=model.name,
        model_version=model.version,
        input_dtypes=[pb.DataType.Name(type.v1) for type in classifier.accepted if type.v1],
        input_shape=classifier.input_shape,
        num_classes=classifier.num_classes,
        class_labels=classifier.class_labels,
        max_batch_size=model.max_batch,
        metadata=metadata,
        outputs=classifier.outputs,
        max_message_bytes=max_message_bytes,
    )


def _datatype_name(value: int) -> str:
    """The protocol name of a v1 DataType, or the v1 name of one without a datatype (so that
    the data plane's message shows what was sent)."""
    datatype = datatypes.by_v1(value)
    if datatype is not None:
        return datatype.name
    return pb.DataType.Name(value) if value in pb.DataType.values() else f"DataType value {value}"
