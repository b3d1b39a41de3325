"""Both gRPC servicers in process with grpc_testing, no network: decode, data plane, encode, and a
RequestError turned into its status code."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc
import grpc_testing
import numpy as np
import pytest

from scratchnet.api.inference import open_inference_grpc_pb2 as oip
from scratchnet.api.v1 import classifier_pb2 as v1
from server.dataplane import DataPlane
from server.model_control import LoadOptions, ModelControl, SingleFile
from server.transports.oip_service import InferenceServicer
from server.transports.v1_service import ClassifierServicer
from tests.server.conftest import plane_with
from tests.server.onnx_models import build_classifier, contract_metadata, random_classifier

V1 = v1.DESCRIPTOR.services_by_name["Classifier"]
OIP = oip.DESCRIPTOR.services_by_name["GRPCInferenceService"]


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    weights, biases = random_classifier(3, 4, 5)
    path = tmp_path_factory.mktemp("m") / "m.onnx"
    return build_classifier(path, weights, biases, metadata=contract_metadata(3))


@pytest.fixture(scope="module")
def plane(model_file: Path) -> DataPlane:
    return plane_with(model_file, "m")


def _unary(
    service: Any, servicer: object, method: str, request: Any
) -> tuple[Any, grpc.StatusCode, str]:
    server = grpc_testing.server_from_dictionary(
        {service: servicer}, grpc_testing.strict_real_time()
    )
    call = server.invoke_unary_unary(service.methods_by_name[method], (), request, None)
    response, _, code, details = call.termination()
    return response, code, details


def test_v1_predict_and_its_errors(plane: DataPlane) -> None:
    servicer = ClassifierServicer(plane, "m", 1 << 20)
    images = v1.Tensor(dtype=v1.DATA_TYPE_UINT8, shape=[2, 4, 5], data=bytes(40))
    response, code, _ = _unary(V1, servicer, "Predict", v1.PredictRequest(images=images))
    assert code == grpc.StatusCode.OK and len(response.labels) == 2
    bad = v1.Tensor(dtype=v1.DATA_TYPE_UINT8, shape=[2, 4, 4], data=bytes(32))
    _, code, details = _unary(V1, servicer, "Predict", v1.PredictRequest(images=bad))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert details == "input 'images' of model 'm': expected shape [-1,4,5], got [2,4,4]"
    info, code, _ = _unary(V1, servicer, "GetModelInfo", v1.GetModelInfoRequest())
    assert list(info.input_shape) == [-1, 4, 5] and info.max_message_bytes == 1 << 20


def test_oip_infer_metadata_and_not_found(plane: DataPlane, model_file: Path) -> None:
    control = ModelControl(plane.repository, SingleFile(model_file, "m"), LoadOptions(0, 8))
    servicer = InferenceServicer(plane, control)
    pixels = np.full((1, 4, 5), 0.5, np.float32)
    request = oip.ModelInferRequest(
        model_name="m",
        inputs=[
            oip.ModelInferRequest.InferInputTensor(name="images", datatype="FP32", shape=[1, 4, 5])
        ],
        raw_input_contents=[pixels.tobytes()],
    )
    response, code, _ = _unary(OIP, servicer, "ModelInfer", request)
    assert code == grpc.StatusCode.OK
    assert [output.name for output in response.outputs] == ["scores", "label", "probabilities"]
    metadata, _, _ = _unary(OIP, servicer, "ModelMetadata", oip.ModelMetadataRequest(name="m"))
    assert [(t.name, t.datatype, list(t.shape)) for t in metadata.inputs] == [
        ("images", "FP32", [-1, 4, 5])
    ]
    _, code, details = _unary(OIP, servicer, "ModelMetadata", oip.ModelMetadataRequest(name="x"))
    assert code == grpc.StatusCode.NOT_FOUND and "'x' is not found" in details
