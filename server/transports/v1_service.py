"""scratchnet.v1.Classifier over the data plane: decode, classify, encode (v1_codec)."""

from __future__ import annotations

from collections.abc import Iterator

import grpc

from scratchnet.api.v1 import classifier_pb2, classifier_pb2_grpc
from scratchnet.errors import InvalidArgument
from server.dataplane import DataPlane
from server.transports import v1_codec
from server.transports.grpc_errors import status_on_error

__all__ = ["SERVICE_NAME", "ClassifierServicer", "add_to_server"]

SERVICE_NAME: str = classifier_pb2.DESCRIPTOR.services_by_name["Classifier"].full_name


class ClassifierServicer:
    """The v1 API over the data plane; a request that names no model goes to `model_name`, or to
    the only model served when there is no such model."""

    def __init__(self, plane: DataPlane, model_name: str, max_message_bytes: int) -> None:
        self._plane = plane
        self._model_name = model_name
        self._max_message_bytes = max_message_bytes

    def Predict(
        self, request: classifier_pb2.PredictRequest, context: grpc.ServicerContext
    ) -> classifier_pb2.PredictResponse:
        """Classify one batch."""
        with status_on_error(context):
            return self._predict(request)

    def PredictStream(
        self,
        request_iterator: Iterator[classifier_pb2.PredictRequest],
        context: grpc.ServicerContext,
    ) -> Iterator[classifier_pb2.PredictResponse]:
        """Classify a stream of batches, one response per request, in order."""
        with status_on_error(context):
            for request in request_iterator:
                yield self._predict(request)

    def GetModelInfo(
        self, request: classifier_pb2.GetModelInfoRequest, context: grpc.ServicerContext
    ) -> classifier_pb2.GetModelInfoResponse:
        """Describe the model."""
        with status_on_error(context):
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

    def _predict(self, request: classifier_pb2.PredictRequest) -> classifier_pb2.PredictResponse:
        default = "" if request.model_name else self._default_model()
        classify = v1_codec.classify_request(request, default)
        return v1_codec.predict_response(self._plane.classify(classify))


def add_to_server(
    server: grpc.Server, plane: DataPlane, model_name: str, max_message_bytes: int
) -> None:
    """Register the v1 Classifier service on `server`, serving `plane`."""
    servicer = ClassifierServicer(plane, model_name, max_message_bytes)
    classifier_pb2_grpc.add_ClassifierServicer_to_server(servicer, server)
