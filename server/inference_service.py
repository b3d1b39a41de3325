"""inference.GRPCInferenceService: the Open Inference Protocol (KServe v2) over the serving state.

Health, metadata and ModelInfer as the protocol's specification defines them, plus Triton's
streaming extension ModelStreamInfer (what tritonclient's `start_stream` calls). The one model is
served under --model-name with the version from its ONNX file. Status codes and message texts
follow Triton where the specification leaves them open; docs/open-inference.md lists the choices.
"""

from __future__ import annotations

from collections.abc import Iterator

import grpc

from scratchnet_api.inference import open_inference_grpc_pb2 as pb
from scratchnet_api.inference import open_inference_grpc_pb2_grpc as pb_grpc
from server.errors import NotFound, RequestError, status_on_error
from server.oip_tensors import add_outputs, images_from_request, requested_outputs
from server.runtime import OUTPUT_DTYPES, ModelRuntime
from server.state import ServingState
from server.tensors import datatype_of
from trainer.versions import scratchnet_version

__all__ = [
    "EXTENSIONS",
    "PLATFORM",
    "SERVER_NAME",
    "SERVICE_NAME",
    "InferenceServicer",
    "add_to_server",
]

SERVICE_NAME: str = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name
SERVER_NAME = "scratchnet"
PLATFORM = "onnxruntime_onnx"
"""The platform Triton reports for ONNX models run by onnxruntime."""
EXTENSIONS: tuple[str, ...] = ()
"""None of Triton's named extensions (classification, shared memory, statistics, ...); the
streaming RPC is not one of them, it is part of Triton's service definition."""


class InferenceServicer:
    """The Open Inference Protocol over the shared serving state."""

    def __init__(self, state: ServingState) -> None:
        self._state = state
        self._version = scratchnet_version()

    def ServerLive(
        self, request: pb.ServerLiveRequest, context: grpc.ServicerContext
    ) -> pb.ServerLiveResponse:
        """Live whenever the process answers, also while the model loads."""
        return pb.ServerLiveResponse(live=True)

    def ServerReady(
        self, request: pb.ServerReadyRequest, context: grpc.ServicerContext
    ) -> pb.ServerReadyResponse:
        """Ready while the model is loaded and the server is not shutting down."""
        return pb.ServerReadyResponse(ready=self._state.ready)

    def ModelReady(
        self, request: pb.ModelReadyRequest, context: grpc.ServicerContext
    ) -> pb.ModelReadyResponse:
        """Whether this model and version can infer now; false (not an error) for unknown ones,
        as Triton answers."""
        try:
            self._model(request.name, request.version)
        except RequestError:  # still loading, or not this model or version
            return pb.ModelReadyResponse(ready=False)
        return pb.ModelReadyResponse(ready=self._state.ready)

    def ServerMetadata(
        self, request: pb.ServerMetadataRequest, context: grpc.ServicerContext
    ) -> pb.ServerMetadataResponse:
        """The server's name, version and protocol extensions."""
        return pb.ServerMetadataResponse(
            name=SERVER_NAME, version=self._version, extensions=EXTENSIONS
        )

    def ModelMetadata(
        self, request: pb.ModelMetadataRequest, context: grpc.ServicerContext
    ) -> pb.ModelMetadataResponse:
        """The model's versions, platform, input and outputs, and its ONNX metadata_props."""
        with status_on_error(context):
            runtime = self._model(request.name, request.version)
            tensor = pb.ModelMetadataResponse.TensorMetadata
            return pb.ModelMetadataResponse(
                name=runtime.name,
                versions=[runtime.version],
                platform=PLATFORM,
                inputs=[
                    tensor(
                        name=runtime.input_name,
                        datatype=datatype_of(runtime.input_dtype).name,
                        shape=runtime.input_shape,
                    )
                ],
                outputs=[
                    tensor(
                        name=output,
                        datatype=datatype_of(OUTPUT_DTYPES[output]).name,
                        shape=runtime.output_shape(output),
                    )
                    for output in runtime.outputs
                ],
                properties=runtime.metadata,
            )

    def ModelInfer(
        self, request: pb.ModelInferRequest, context: grpc.ServicerContext
    ) -> pb.ModelInferResponse:
        """Classify the images of one request."""
        with status_on_error(context):
            return self._infer(request)

    def ModelStreamInfer(
        self, request_iterator: Iterator[pb.ModelInferRequest], context: grpc.ServicerContext
    ) -> Iterator[pb.ModelStreamInferResponse]:
        """One response per request, in order; a failed request is reported in its response's
        `error_message` (with its id, as Triton does) and the stream goes on."""
        with status_on_error(context):
            for request in request_iterator:
                try:
                    yield pb.ModelStreamInferResponse(infer_response=self._infer(request))
                except RequestError as error:
                    yield pb.ModelStreamInferResponse(
                        error_message=str(error),
                        infer_response=pb.ModelInferResponse(id=request.id),
                    )

    def _infer(self, request: pb.ModelInferRequest) -> pb.ModelInferResponse:
        runtime = self._model(request.model_name, request.model_version)
        outputs = requested_outputs(request, runtime)
        images = images_from_request(request, runtime, self._state.max_batch)
        response = pb.ModelInferResponse(
            model_name=runtime.name, model_version=runtime.version, id=request.id
        )
        add_outputs(response, runtime.predict(images, outputs))
        return response

    def _model(self, name: str, model_version: str) -> ModelRuntime:
        """The runtime serving `name` at `model_version` ("" = its only one); NotFound if none."""
        runtime = self._state.require_runtime()
        if name != runtime.name:
            raise NotFound(f"Request for unknown model: '{name}' is not found")
        if model_version not in ("", runtime.version):
            raise NotFound(
                f"Request for unknown model: '{name}' version {model_version} is not found"
            )
        return runtime


def add_to_server(server: grpc.Server, state: ServingState) -> None:
    """Register inference.GRPCInferenceService on `server`, serving `state`."""
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(InferenceServicer(state), server)
