"""inference.GRPCInferenceService: the Open Inference Protocol (KServe v2) over the data plane.

Health, metadata and ModelInfer as the protocol's specification defines them, plus Triton's
streaming extension ModelStreamInfer (what tritonclient's `start_stream` calls). Each RPC decodes
its message, asks the data plane and encodes the answer (oip_codec). Status codes and message
texts follow Triton where the specification leaves them open; docs/open-inference.md lists them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc

from scratchnet.api.inference import open_inference_grpc_pb2 as pb
from scratchnet.errors import RequestError
from scratchnet.versions import scratchnet_version
from server.dataplane import DataPlane
from server.model_control import ModelControl
from server.shared_memory import SharedMemory
from server.transports import oip_codec
from server.transports.grpc_calls import Context, Timeouts, add_service, call_of

__all__ = [
    "EXTENSIONS",
    "SERVER_NAME",
    "SERVICE",
    "SERVICE_NAME",
    "InferenceServicer",
    "add_to_server",
]

SERVICE = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"]
SERVICE_NAME: str = SERVICE.full_name
API = "v2"
INFERENCE_METHODS = ("ModelInfer", "ModelStreamInfer")
"""The methods that run a model: counted and logged, refused or not (server.metrics, logs)."""
SERVER_NAME = "scratchnet"
SHARED_MEMORY = "system_shared_memory"
EXTENSIONS: tuple[str, ...] = (
    "classification",
    "model_repository",
    "model_configuration",
    SHARED_MEMORY,
    "statistics",
)
"""Triton's named extensions this server implements (the streaming RPC is not one of them: it
is part of Triton's service definition); system shared memory only when it is on."""


class InferenceServicer:
    """The Open Inference Protocol over the data plane."""

    def __init__(self, plane: DataPlane, control: ModelControl, shared: SharedMemory) -> None:
        self._plane = plane
        self._control = control
        self._shared = shared
        self._version = scratchnet_version()

    async def ServerLive(
        self, request: pb.ServerLiveRequest, context: Context
    ) -> pb.ServerLiveResponse:
        """Live whenever the process answers, also while the models load."""
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(
        self, request: pb.ServerReadyRequest, context: Context
    ) -> pb.ServerReadyResponse:
        """Ready while the models are loaded and the server is not shutting down."""
        return pb.ServerReadyResponse(ready=self._plane.ready)

    async def ModelReady(
        self, request: pb.ModelReadyRequest, context: Context
    ) -> pb.ModelReadyResponse:
        """Whether this model and version can infer now; false (not an error) for unknown ones,
        INVALID_ARGUMENT for a version that is not a number, as Triton answers."""
        return pb.ModelReadyResponse(ready=self._plane.model_ready(request.name, request.version))

    async def ServerMetadata(
        self, request: pb.ServerMetadataRequest, context: Context
    ) -> pb.ServerMetadataResponse:
        """The server's name, version and protocol extensions."""
        extensions = [name for name in EXTENSIONS if name != SHARED_MEMORY or self._shared.enabled]
        return pb.ServerMetadataResponse(
            name=SERVER_NAME, version=self._version, extensions=extensions
        )

    async def ModelMetadata(
        self, request: pb.ModelMetadataRequest, context: Context
    ) -> pb.ModelMetadataResponse:
        """The model's versions, platform, inputs and outputs, and its ONNX metadata_props."""
        model = self._plane.model(request.name, request.version)
        versions = (
            [model.version] if request.version else self._plane.repository.versions(model.name)
        )
        return oip_codec.model_metadata(model, versions, self._plane.metadata(model))

    async def ModelConfig(
        self, request: pb.ModelConfigRequest, context: Context
    ) -> pb.ModelConfigResponse:
        """Triton's model configuration extension: the model's config, completed."""
        return oip_codec.model_config(self._plane.model(request.name, request.version))

    async def RepositoryIndex(
        self, request: pb.RepositoryIndexRequest, context: Context
    ) -> pb.RepositoryIndexResponse:
        """Every model of the repository with each version's state (only READY ones if asked)."""
        oip_codec.check_repository(request.repository_name)
        return oip_codec.repository_index(self._control.index(request.ready))

    async def RepositoryModelLoad(
        self, request: pb.RepositoryModelLoadRequest, context: Context
    ) -> pb.RepositoryModelLoadResponse:
        """Load (or reload) a model; its parameter 'config' may replace its config, as JSON."""
        config = oip_codec.load_config(request)
        # In a thread: loading reads and checks the file, and the loop goes on serving.
        await asyncio.to_thread(self._control.load_requested, request.model_name, config)
        return pb.RepositoryModelLoadResponse()

    async def RepositoryModelUnload(
        self, request: pb.RepositoryModelUnloadRequest, context: Context
    ) -> pb.RepositoryModelUnloadResponse:
        """Stop serving every version of a model."""
        oip_codec.check_repository(request.repository_name)
        await asyncio.to_thread(self._control.unload_requested, request.model_name)
        return pb.RepositoryModelUnloadResponse()

    async def ModelStatistics(
        self, request: pb.ModelStatisticsRequest, context: Context
    ) -> pb.ModelStatisticsResponse:
        """Triton's statistics: every loaded model version, or those of one model or version."""
        stats = self._plane.model_statistics(request.name, request.version)
        return oip_codec.model_statistics(stats)

    async def ModelInfer(
        self, request: oip_codec.Received, context: Context
    ) -> pb.ModelInferResponse:
        """Run a model on one request."""
        return await self._infer(request, context, "ModelInfer")

    async def ModelStreamInfer(
        self, requests: AsyncIterator[oip_codec.Received], context: Context
    ) -> AsyncIterator[pb.ModelStreamInferResponse]:
        """One response per request, in order; a failed request is reported in its response's
        `error_message` (with its id, as Triton does) and the stream goes on. Each response is
        its request's last (these models answer once): Triton's `triton_final_response`, which
        streaming clients wait for, says so."""
        async for request in requests:
            try:
                response = await self._infer(request, context, "ModelStreamInfer")
            except RequestError as error:
                message = request.message
                response = pb.ModelInferResponse(
                    id=message.id,
                    model_name=message.model_name,
                    model_version=message.model_version,
                )
                response.parameters[FINAL_RESPONSE].bool_param = True
                yield pb.ModelStreamInferResponse(error_message=str(error), infer_response=response)
                continue
            response.parameters[FINAL_RESPONSE].bool_param = True
            yield pb.ModelStreamInferResponse(infer_response=response)

    async def SystemSharedMemoryRegister(
        self, request: pb.SystemSharedMemoryRegisterRequest, context: Context
    ) -> pb.SystemSharedMemoryRegisterResponse:
        """Map a region of a /dev/shm object for the inputs and outputs of later calls."""
        self._shared.register(request.name, request.key, request.offset, request.byte_size)
        return pb.SystemSharedMemoryRegisterResponse()

    async def SystemSharedMemoryStatus(
        self, request: pb.SystemSharedMemoryStatusRequest, context: Context
    ) -> pb.SystemSharedMemoryStatusResponse:
        """The registered regions (or the one named)."""
        return oip_codec.shared_memory_status(self._shared.status(request.name))

    async def SystemSharedMemoryUnregister(
        self, request: pb.SystemSharedMemoryUnregisterRequest, context: Context
    ) -> pb.SystemSharedMemoryUnregisterResponse:
        """Forget a region (every region if no name is given)."""
        self._shared.unregister(request.name)
        return pb.SystemSharedMemoryUnregisterResponse()

    async def _infer(
        self, request: oip_codec.Received, context: Context, method: str
    ) -> pb.ModelInferResponse:
        call = call_of(context, API, method)
        try:
            infer = oip_codec.infer_request(request, self._shared)
        except RequestError as error:
            message = request.message
            name, version = message.model_name, message.model_version
            raise self._plane.refused_naming(call, error, name, version) from None
        answer = await self._plane.infer(infer, call)
        try:
            return oip_codec.infer_response(answer, infer.outputs, self._shared)
        except RequestError as error:
            # A shared-memory region unregistered while the model ran, known only now: the data
            # plane has counted the run, which did happen; don't count the call a second time.
            error.observed = True
            raise


FINAL_RESPONSE = "triton_final_response"
"""The response parameter that marks a request's last response on a stream."""


def add_to_server(
    server: grpc.aio.Server,
    plane: DataPlane,
    control: ModelControl,
    timeouts: Timeouts,
    shared: SharedMemory,
) -> None:
    """Register inference.GRPCInferenceService on `server`, serving `plane` and `control`: the
    RPCs InferenceServicer implements (gRPC answers Triton's others, e.g. CUDA shared memory,
    with UNIMPLEMENTED and "Method not found!")."""
    # ModelInfer's tensors are read in place, not copied by protobuf (server.transports.wire).
    parsers = dict.fromkeys(INFERENCE_METHODS, oip_codec.receive)
    servicer = InferenceServicer(plane, control, shared)
    add_service(server, SERVICE, servicer, timeouts, plane, API, parsers)
