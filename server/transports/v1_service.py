"""scratchnet.v1.Classifier over the data plane: decode, classify, encode (v1_codec)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc

from scratchnet.api.v1 import classifier_pb2
from scratchnet.errors import InvalidArgument, RequestError
from server.dataplane import DataPlane
from server.transports import v1_codec
from server.transports.grpc_calls import Context, Timeouts, add_service, call_of

__all__ = ["SERVICE", "SERVICE_NAME", "ClassifierServicer", "add_to_server"]

SERVICE = classifier_pb2.DESCRIPTOR.services_by_name["Classifier"]
SERVICE_NAME: str = SERVICE.full_name
API = "v1"
INFERENCE_METHODS = ("Predict", "PredictStream")
"""The methods that run a model: counted and logged, refused or not (server.metrics, logs)."""


class ClassifierServicer:
    """The v1 API over the data plane; a request that names no model goes to `model_name`, or to
    the only model served when there is no such model."""

    def __init__(self, plane: DataPlane, model_name: str, max_message_bytes: int) -> None:
        self._plane = plane
        self._model_name = model_name
        self._max_message_bytes = max_message_bytes

    async def Predict(self, request: v1_codec.Received, context: Context) -> bytes:
        """Classify one batch."""
        return await self._predict(request, context, "Predict")

    async def PredictStream(
        self,
        requests: AsyncIterator[v1_codec.Received],
        context: Context,
    ) -> AsyncIterator[bytes]:
        """Classify a stream of batches, one response per request, in order."""
        async for request in requests:
            yield await self._predict(request, context, "PredictStream")

    async def GetModelInfo(
        self, request: classifier_pb2.GetModelInfoRequest, context: Context
    ) -> classifier_pb2.GetModelInfoResponse:
        """Describe the model."""
        name = request.model_name or self._default_model()
        model = self._plane.model(name, request.model_version)
        if model.classifier is None:
            raise InvalidArgument(
                f"model '{model.name}' is not an image classifier: {model.not_classifier}"
            )
        metadata = self._plane.metadata(model)
        return v1_codec.model_info(model, metadata, self._max_message_bytes)

    def _default_model(self) -> str:
        return self._plane.repository.default(self._model_name).name

    async def _predict(self, request: v1_codec.Received, context: Context, method: str) -> bytes:
        call = call_of(context, API, method)
        message = request.message
        name = message.model_name
        try:
            name = name or self._default_model()
        except RequestError as error:
            self._plane.refused(call, error)
            raise
        try:
            classify = v1_codec.classify_request(request, name)
        except RequestError as error:
            raise self._plane.refused_naming(call, error, name, message.model_version) from None
        return v1_codec.predict_response(await self._plane.classify(classify, call))


def add_to_server(
    server: grpc.aio.Server,
    plane: DataPlane,
    model_name: str,
    max_message_bytes: int,
    timeouts: Timeouts,
) -> None:
    """Register the v1 Classifier service on `server`, serving `plane`."""
    servicer = ClassifierServicer(plane, model_name, max_message_bytes)
    # Predict's pixels are read in place, not copied by protobuf (server.transports.wire).
    parsers = dict.fromkeys(INFERENCE_METHODS, v1_codec.receive)
    add_service(server, SERVICE, servicer, timeouts, plane, API, parsers)
