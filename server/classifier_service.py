"""scratchnet.v1.Classifier: messages to arrays, the runtime's predict, arrays back to messages."""

from __future__ import annotations

from collections.abc import Iterator

import grpc

from scratchnet_api.v1 import classifier_pb2, classifier_pb2_grpc
from server.errors import InvalidArgument, status_on_error
from server.runtime import ModelRuntime
from server.state import ServingState
from server.tensors import datatype_from_v1, datatype_of, images_from_bytes

__all__ = ["SERVICE_NAME", "ClassifierServicer", "add_to_server"]

SERVICE_NAME: str = classifier_pb2.DESCRIPTOR.services_by_name["Classifier"].full_name


class ClassifierServicer:
    """The v1 API over the shared serving state."""

    def __init__(self, state: ServingState) -> None:
        self._state = state

    def Predict(
        self, request: classifier_pb2.PredictRequest, context: grpc.ServicerContext
    ) -> classifier_pb2.PredictResponse:
        """Classify one batch."""
        with status_on_error(context):
            return self._predict(self._state.require_runtime(), request)

    def PredictStream(
        self,
        request_iterator: Iterator[classifier_pb2.PredictRequest],
        context: grpc.ServicerContext,
    ) -> Iterator[classifier_pb2.PredictResponse]:
        """Classify a stream of batches, one response per request, in order."""
        with status_on_error(context):
            runtime = self._state.require_runtime()
            for request in request_iterator:
                yield self._predict(runtime, request)

    def GetModelInfo(
        self, request: classifier_pb2.GetModelInfoRequest, context: grpc.ServicerContext
    ) -> classifier_pb2.GetModelInfoResponse:
        """Describe the loaded model."""
        with status_on_error(context):
            runtime = self._state.require_runtime()
            return classifier_pb2.GetModelInfoResponse(
                model_name=runtime.name,
                model_version=runtime.version,
                input_dtypes=[datatype_of(dtype).v1 for dtype in runtime.accepted_dtypes],
                input_shape=runtime.input_shape,
                num_classes=runtime.num_classes,
                class_labels=runtime.class_labels,
                max_batch_size=self._state.max_batch,
                metadata=runtime.metadata,
                outputs=runtime.outputs,
                max_message_bytes=self._state.max_message_bytes,
            )

    def _predict(
        self, runtime: ModelRuntime, request: classifier_pb2.PredictRequest
    ) -> classifier_pb2.PredictResponse:
        if not request.HasField("images"):
            raise InvalidArgument(f"{runtime.input_description}: the request has no images tensor")
        tensor = request.images
        datatype = datatype_from_v1(tensor.dtype, runtime.input_description)
        images = images_from_bytes(
            tensor.data, datatype, tensor.shape, runtime, self._state.max_batch
        )
        outputs = ["label"]
        if request.return_scores:
            outputs.append("scores")
        if request.return_probabilities:
            outputs.append("probabilities")
        result = runtime.predict(images, outputs)
        response = classifier_pb2.PredictResponse(
            num_classes=runtime.num_classes,
            model_name=runtime.name,
            model_version=runtime.version,
            request_id=request.request_id,
        )
        # tolist() hands protobuf plain Python numbers in one C loop.
        response.labels.extend(result["label"].tolist())
        if "scores" in result:
            response.scores.extend(result["scores"].ravel().tolist())
        if "probabilities" in result:
            response.probabilities.extend(result["probabilities"].ravel().tolist())
        return response


def add_to_server(server: grpc.Server, state: ServingState) -> None:
    """Register the v1 Classifier service on `server`, serving `state`."""
    classifier_pb2_grpc.add_ClassifierServicer_to_server(ClassifierServicer(state), server)
