"""Both gRPC servicers in process, no network: their methods are called as grpc.aio calls them,
with a context that records what they abort with; decode, data plane and encode are the real
ones. The handlers around them (decoding raw bytes, time limits) run in the end-to-end tests."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest

from scratchnet.api.inference import open_inference_grpc_pb2 as oip
from scratchnet.api.v1 import classifier_pb2 as v1
from server.dataplane import DataPlane
from server.model_control import LoadOptions, ModelControl, SingleFile
from server.shared_memory import SharedMemory
from server.transports.grpc_calls import status_on_error
from server.transports.oip_codec import receive
from server.transports.oip_service import InferenceServicer
from server.transports.v1_service import ClassifierServicer
from tests.server.conftest import plane_with, recorded
from tests.server.foreign_models import two_inputs
from tests.server.onnx_models import build_classifier, contract_metadata, random_classifier


class Aborted(Exception):
    """What the context's abort raises, as grpc.aio's raises AbortError."""


class Context:
    """The parts of grpc.aio.ServicerContext the servicers use."""

    def __init__(self) -> None:
        self.code: grpc.StatusCode | None = None
        self.details = ""

    def time_remaining(self) -> float | None:
        return None

    async def abort(self, code: grpc.StatusCode, details: str) -> None:
        self.code, self.details = code, details
        raise Aborted(details)


async def _call(method: Any, request: Any) -> tuple[Any, Context]:
    context = Context()
    try:
        async with status_on_error(context):  # type: ignore[arg-type]
            return await method(request, context), context
    except Aborted:
        return None, context


def v1_receive(message: v1.PredictRequest) -> Any:
    """The message as the server receives it: serialized, then read (pixels uncopied)."""
    from server.transports.v1_codec import receive as receive_predict

    return receive_predict(message.SerializeToString())


def call(method: Any, request: Any) -> tuple[Any, Context]:
    return asyncio.run(_call(method, request))


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    weights, biases = random_classifier(3, 4, 5)
    path = tmp_path_factory.mktemp("m") / "m.onnx"
    return build_classifier(path, weights, biases, metadata=contract_metadata(3))


@pytest.fixture(scope="module")
def plane(model_file: Path) -> DataPlane:
    return plane_with(model_file, "m")


def test_v1_predict_and_its_errors(plane: DataPlane) -> None:
    servicer = ClassifierServicer(plane, "m", 1 << 20)
    images = v1.Tensor(dtype=v1.DATA_TYPE_UINT8, shape=[2, 4, 5], data=bytes(40))
    response, context = call(servicer.Predict, v1_receive(v1.PredictRequest(images=images)))
    assert context.code is None and len(v1.PredictResponse.FromString(response).labels) == 2
    bad = v1.Tensor(dtype=v1.DATA_TYPE_UINT8, shape=[2, 4, 4], data=bytes(32))
    _, context = call(servicer.Predict, v1_receive(v1.PredictRequest(images=bad)))
    assert context.code == grpc.StatusCode.INVALID_ARGUMENT
    assert context.details == "input 'images' of model 'm': expected shape [-1,4,5], got [2,4,4]"
    info, _ = call(servicer.GetModelInfo, v1.GetModelInfoRequest())
    assert list(info.input_shape) == [-1, 4, 5] and info.max_message_bytes == 1 << 20


def test_oip_infer_metadata_and_not_found(plane: DataPlane, model_file: Path) -> None:
    control = ModelControl(plane.repository, SingleFile(model_file, "m"), LoadOptions(0, 8))
    servicer = InferenceServicer(plane, control, SharedMemory())
    pixels = np.full((1, 4, 5), 0.5, np.float32)
    tensor = oip.ModelInferRequest.InferInputTensor(name="images", datatype="FP32", shape=[1, 4, 5])
    request = oip.ModelInferRequest(
        model_name="m", inputs=[tensor], raw_input_contents=[pixels.tobytes()]
    )
    response, context = call(servicer.ModelInfer, receive(request.SerializeToString()))
    assert context.code is None
    assert [output.name for output in response.outputs] == ["scores", "label", "probabilities"]
    metadata, _ = call(servicer.ModelMetadata, oip.ModelMetadataRequest(name="m"))
    assert [(t.name, t.datatype, list(t.shape)) for t in metadata.inputs] == [
        ("images", "FP32", [-1, 4, 5])
    ]
    _, context = call(servicer.ModelMetadata, oip.ModelMetadataRequest(name="x"))
    assert context.code == grpc.StatusCode.NOT_FOUND and "'x' is not found" in context.details
    _, context = call(servicer.RepositoryModelLoad, oip.RepositoryModelLoadRequest(model_name="m"))
    assert context.code == grpc.StatusCode.FAILED_PRECONDITION


def test_a_repository_name_is_unimplemented_and_a_config_must_be_json_text(
    plane: DataPlane, model_file: Path
) -> None:
    control = ModelControl(plane.repository, SingleFile(model_file, "m"), LoadOptions(0, 8))
    servicer = InferenceServicer(plane, control, SharedMemory())
    for method, request in (
        (servicer.RepositoryIndex, oip.RepositoryIndexRequest(repository_name="other")),
        (
            servicer.RepositoryModelLoad,
            oip.RepositoryModelLoadRequest(repository_name="other", model_name="m"),
        ),
        (
            servicer.RepositoryModelUnload,
            oip.RepositoryModelUnloadRequest(repository_name="other", model_name="m"),
        ),
    ):
        _, context = call(method, request)
        assert context.code == grpc.StatusCode.UNIMPLEMENTED
        assert context.details.startswith("'repository_name' specification is not supported")
    load = oip.RepositoryModelLoadRequest(model_name="m")
    load.parameters["config"].int64_param = 3
    _, context = call(servicer.RepositoryModelLoad, load)
    assert context.code == grpc.StatusCode.INVALID_ARGUMENT
    assert context.details == (
        "failed to load 'm': parameter 'config' is int64_param, expected a string_param holding "
        "the model configuration as JSON"
    )


def test_an_unknown_model_is_not_found_before_its_request_is_checked(plane: DataPlane) -> None:
    servicer = InferenceServicer(plane, None, SharedMemory())  # type: ignore[arg-type]
    no_data = oip.ModelInferRequest.InferInputTensor(name="x", datatype="FP32", shape=[1])
    for name, version, code, details in (
        (
            "nosuch",
            "",
            grpc.StatusCode.NOT_FOUND,
            "Request for unknown model: 'nosuch' is not found",
        ),
        (
            "m",
            "5",
            grpc.StatusCode.NOT_FOUND,
            "Request for unknown model: 'm' version 5 is not found",
        ),
        ("m", "", grpc.StatusCode.INVALID_ARGUMENT, "unable to find data for input tensor 'x'"),
    ):
        request = oip.ModelInferRequest(model_name=name, model_version=version, inputs=[no_data])
        _, context = call(servicer.ModelInfer, receive(request.SerializeToString()))
        assert context.code == code and context.details.startswith(details), context.details


def test_a_refused_request_counts_under_the_model_it_names_whichever_check_caught_it(
    tmp_path: Path,
) -> None:
    plane = plane_with(two_inputs(tmp_path / "pair.onnx"), "pair")  # not an image classifier
    seen = recorded(plane)
    control = ModelControl(
        plane.repository, SingleFile(tmp_path / "pair.onnx", "pair"), LoadOptions(0, 8)
    )
    v2 = InferenceServicer(plane, control, SharedMemory())
    v1_servicer = ClassifierServicer(plane, "pair", 1 << 20)
    images = v1.Tensor(dtype=v1.DATA_TYPE_UINT8, shape=[1, 1, 3], data=bytes(3))
    _, context = call(v1_servicer.Predict, v1_receive(v1.PredictRequest(images=images)))
    assert "is not an image classifier" in context.details  # caught by the data plane
    both = oip.ModelInferRequest.InferInputTensor(name="a", datatype="FP32", shape=[1, 3])
    both.contents.fp32_contents.extend([1, 2, 3])
    request = oip.ModelInferRequest(
        model_name="pair", inputs=[both], raw_input_contents=[bytes(12)]
    )
    _, context = call(v2.ModelInfer, receive(request.SerializeToString()))
    assert context.code == grpc.StatusCode.INVALID_ARGUMENT  # caught by the decoder
    request.model_name = "nosuch"
    _, context = call(v2.ModelInfer, receive(request.SerializeToString()))
    assert context.code == grpc.StatusCode.NOT_FOUND  # the model first, and none to count under
    assert [(outcome.model, outcome.status) for outcome in seen] == [
        ("pair", "InvalidArgument"), ("pair", "InvalidArgument"), ("", "NotFound")
    ]  # fmt: skip
    (statistics,) = plane.model_statistics("pair")
    assert (statistics.fail.count, statistics.success.count) == (2, 0)


def test_a_status_message_stays_one_line_whatever_name_it_quotes(plane: DataPlane) -> None:
    servicer = InferenceServicer(plane, None, SharedMemory())  # type: ignore[arg-type]
    _, context = call(servicer.ModelMetadata, oip.ModelMetadataRequest(name="a\nb\x1b[31m"))
    assert context.code == grpc.StatusCode.NOT_FOUND
    assert context.details == "Request for unknown model: 'a\\nb\\x1b[31m' is not found"
