"""inference.GRPCInferenceService: the Open Inference Protocol (KServe v2) over the data plane.

Health, metadata and ModelInfer as the protocol's specification defines them, plus Triton's
streaming extension ModelStreamInfer (what tritonclient's `start_stream` calls). Each RPC decodes
its message, asks the data plane and encodes the answer (oip_codec). Status codes and message
texts follow Triton where the specification leaves them open; docs/open-inference.md lists them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import grpc
from google.protobuf.descriptor import MethodDescriptor

from scratchnet.api.inference import open_inference_grpc_pb2 as pb
from scratchnet.errors import FailedPrecondition, InvalidArgument, NotFound, RequestError, clip
from scratchnet.versions import scratchnet_version
from server.dataplane import DataPlane
from server.model_control import ModelControl
from server.repository import READY
from server.transports import oip_codec
from server.transports.grpc_errors import status_on_error

__all__ = ["EXTENSIONS", "SERVER_NAME", "SERVICE_NAME", "InferenceServicer", "add_to_server"]

SERVICE_NAME: str = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name
SERVER_NAME = "scratchnet"
EXTENSIONS: tuple[str, ...] = (
    "classification",
    "model_repository",
    "model_configuration",
    "statistics",
)
"""Triton's named extensions this server implements (the streaming RPC is not one of them: it
is part of Triton's service definition)."""


class InferenceServicer:
    """The Open Inference Protocol over the data plane."""

    def __init__(self, plane: DataPlane, control: ModelControl) -> None:
        self._plane = plane
        self._control = control
        self._version = scratchnet_version()

    def ServerLive(
        self, request: pb.ServerLiveRequest, context: grpc.ServicerContext
    ) -> pb.ServerLiveResponse:
        """Live whenever the process answers, also while the models load."""
        return pb.ServerLiveResponse(live=True)

    def ServerReady(
        self, request: pb.ServerReadyRequest, context: grpc.ServicerContext
    ) -> pb.ServerReadyResponse:
        """Ready while the models are loaded and the server is not shutting down."""
        return pb.ServerReadyResponse(ready=self._plane.ready)

    def ModelReady(
        self, request: pb.ModelReadyRequest, context: grpc.ServicerContext
    ) -> pb.ModelReadyResponse:
        """Whether this model and version can infer now; false (not an error) for unknown ones,
        as Triton answers."""
        try:
            self._plane.model(request.name, request.version)
        except RequestError:  # still loading, or not this model or version
            return pb.ModelReadyResponse(ready=False)
        return pb.ModelReadyResponse(ready=not self._plane.shutting_down)

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
        """The model's versions, platform, inputs and outputs, and its ONNX metadata_props."""
        with status_on_error(context):
            model = self._plane.model(request.name, request.version)
            versions = [request.version] if request.version else self._versions(model.name)
            return oip_codec.model_metadata(model, versions, self._plane.metadata(model))

    def ModelConfig(
        self, request: pb.ModelConfigRequest, context: grpc.ServicerContext
    ) -> pb.ModelConfigResponse:
        """Triton's model configuration extension: the model's config, completed."""
        with status_on_error(context):
            return oip_codec.model_config(self._plane.model(request.name, request.version))

    def RepositoryIndex(
        self, request: pb.RepositoryIndexRequest, context: grpc.ServicerContext
    ) -> pb.RepositoryIndexResponse:
        """Every model of the repository with each version's state (only READY ones if asked)."""
        with status_on_error(context):
            entries = self._plane.repository.index(self._control.source.names())
            if request.ready:
                entries = [entry for entry in entries if entry.state == READY]
            return oip_codec.repository_index(entries)

    def RepositoryModelLoad(
        self, request: pb.RepositoryModelLoadRequest, context: grpc.ServicerContext
    ) -> pb.RepositoryModelLoadResponse:
        """Load (or reload) a model; its parameter 'config' may replace its config, as JSON."""
        with status_on_error(context):
            self._check_explicit("load")
            config = ""
            for key, value in request.parameters.items():
                if key != "config" or value.WhichOneof("parameter_choice") != "string_param":
                    raise InvalidArgument(
                        f"failed to load '{clip(request.model_name)}': parameter "
                        f"'{clip(key)}' is not supported, expected only 'config' (JSON text)"
                    )
                config = value.string_param
            self._control.load(request.model_name, config)
            return pb.RepositoryModelLoadResponse()

    def RepositoryModelUnload(
        self, request: pb.RepositoryModelUnloadRequest, context: grpc.ServicerContext
    ) -> pb.RepositoryModelUnloadResponse:
        """Stop serving every version of a model."""
        with status_on_error(context):
            self._check_explicit("unload")
            if request.model_name not in self._control.source.names():
                raise NotFound(
                    f"failed to unload '{clip(request.model_name)}': no such model in the "
                    "repository"
                )
            self._control.unload(request.model_name)
            return pb.RepositoryModelUnloadResponse()

    def ModelStatistics(
        self, request: pb.ModelStatisticsRequest, context: grpc.ServicerContext
    ) -> pb.ModelStatisticsResponse:
        """Triton's statistics: every loaded model version, or those of one model or version."""
        with status_on_error(context):
            if request.name:
                if request.version:
                    models = [self._plane.model(request.name, request.version)]
                else:
                    self._plane.model(request.name)  # NotFound for an unknown name
                    loaded = self._plane.repository.models()
                    models = [model for model in loaded if model.name == request.name]
            else:
                models = self._plane.repository.models()
            keys = [(model.name, model.version) for model in models]
            return oip_codec.model_statistics(self._plane.statistics.of(keys))

    def ModelInfer(
        self, request: pb.ModelInferRequest, context: grpc.ServicerContext
    ) -> pb.ModelInferResponse:
        """Run a model on one request."""
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

    def _versions(self, name: str) -> list[str]:
        return [model.version for model in self._plane.repository.models() if model.name == name]

    def _check_explicit(self, action: str) -> None:
        if self._control.mode != "explicit":
            raise FailedPrecondition(
                f"explicit model {action} is not allowed with --model-control-mode "
                f"{self._control.mode}: start the server with --model-control-mode explicit"
            )

    def _infer(self, request: pb.ModelInferRequest) -> pb.ModelInferResponse:
        return oip_codec.infer_response(self._plane.infer(oip_codec.infer_request(request)))


def add_to_server(server: grpc.Server, plane: DataPlane, control: ModelControl) -> None:
    """Register inference.GRPCInferenceService on `server`, serving `plane` and `control`.

    Only the RPCs InferenceServicer implements are registered (the generated
    add_GRPCInferenceServiceServicer_to_server would register every RPC of the .proto, Triton's
    other extensions included). gRPC answers the others itself, as any unknown method: status
    UNIMPLEMENTED, "Method not found!", and nothing logged.
    """
    servicer = InferenceServicer(plane, control)
    handlers = {
        method.name: _handler(method, getattr(servicer, method.name))
        for method in pb.DESCRIPTOR.services_by_name["GRPCInferenceService"].methods
        if hasattr(servicer, method.name)
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),))
    # As the generated code does: the registered-method fast path (missing from grpc-stubs).
    registered: Any = server
    registered.add_registered_method_handlers(SERVICE_NAME, handlers)


# grpc's handler factories by (client streaming, server streaming).
_HANDLER_FACTORIES: dict[tuple[bool, bool], Callable[..., Any]] = {
    (False, False): grpc.unary_unary_rpc_method_handler,
    (False, True): grpc.unary_stream_rpc_method_handler,
    (True, False): grpc.stream_unary_rpc_method_handler,
    (True, True): grpc.stream_stream_rpc_method_handler,
}


def _handler(method: MethodDescriptor, behavior: Callable[..., Any]) -> Any:
    """The gRPC handler of `method`, served by `behavior`, as the generated code makes it."""
    factory = _HANDLER_FACTORIES[method.client_streaming, method.server_streaming]
    return factory(
        behavior,
        request_deserializer=getattr(pb, method.input_type.name).FromString,
        response_serializer=getattr(pb, method.output_type.name).SerializeToString,
    )
