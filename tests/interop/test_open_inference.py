"""inference.GRPCInferenceService through our own generated stubs: what tritonclient never sends
(typed `contents`, malformed requests) and what it cannot see (`properties`, stream error ids)."""

from __future__ import annotations

import queue
import signal
from collections.abc import Callable, Sequence
from importlib.metadata import version
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import onnx
import pytest
from grpc_health.v1.health_pb2 import HealthCheckRequest, HealthCheckResponse
from grpc_health.v1.health_pb2_grpc import HealthStub
from numpy.typing import NDArray

from scratchnet.api.inference import open_inference_grpc_pb2 as pb
from scratchnet.api.inference.open_inference_grpc_pb2_grpc import GRPCInferenceServiceStub
from scratchnet.datasets import Dataset
from scratchnet.forward import predict
from tests.conftest import start_server
from tests.interop.conftest import DIGITS, DIGITS_MAX_BATCH, Reference
from tests.server.onnx_models import build_classifier

MODEL = "scratchnet"
SERVING = HealthCheckResponse.SERVING
NOT_SERVING = HealthCheckResponse.NOT_SERVING


def fp32(images: NDArray[np.uint8]) -> NDArray[np.float32]:
    """Pixels scaled to [0, 1] as the float32 model takes them."""
    return (images / 255.0).astype(np.float32)


def infer_request(images: NDArray[Any], datatype: str, model: str = MODEL, **fields: Any) -> Any:
    """A ModelInferRequest carrying `images` raw, as tritonclient sends it."""
    request = pb.ModelInferRequest(model_name=model, **fields)
    request.inputs.add(name="images", datatype=datatype, shape=images.shape)
    request.raw_input_contents.append(images.tobytes())
    return request


def error_of(call: Callable[[], object]) -> grpc.RpcError:
    """The RpcError that `call` must raise."""
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return caught.value


def outputs(response: Any) -> dict[str, NDArray[Any]]:
    """The response's outputs as arrays, read the way tritonclient's as_numpy does."""
    dtypes = {"INT64": np.int64, "FP32": np.float32}
    return {
        tensor.name: np.frombuffer(raw, dtype=dtypes[tensor.datatype]).reshape(tensor.shape)
        for tensor, raw in zip(response.outputs, response.raw_output_contents, strict=True)
    }


def typed_request(model: str, datatype: str, shape: Sequence[int], **contents: Any) -> Any:
    """A ModelInferRequest whose input carries its data typed: `contents` names the field."""
    request = pb.ModelInferRequest(model_name=model)
    request.inputs.add(
        name="images", datatype=datatype, shape=shape, contents=pb.InferTensorContents(**contents)
    )
    return request


def test_typed_fp32_contents(
    oip: GRPCInferenceServiceStub, mnist: Dataset, reference: Reference
) -> None:
    images = fp32(mnist.test_images[:50])
    request = typed_request(MODEL, "FP32", images.shape, fp32_contents=images.ravel().tolist())
    response = oip.ModelInfer(request, timeout=10)
    result = outputs(response)
    assert np.array_equal(result["label"], reference.labels[:50])
    np.testing.assert_allclose(result["scores"], reference.scores[:50], rtol=1e-5, atol=1e-4)
    assert all(not tensor.HasField("contents") for tensor in response.outputs)


def test_uint8_pixels_on_the_float32_model_and_not_the_reverse(
    oip: GRPCInferenceServiceStub,
    digits_oip: GRPCInferenceServiceStub,
    mnist: Dataset,
    reference: Reference,
) -> None:
    images = mnist.test_images[:50]
    result = outputs(oip.ModelInfer(infer_request(images, "UINT8"), timeout=10))
    assert np.array_equal(result["label"], reference.labels[:50])
    request = infer_request(fp32(images), "FP32", DIGITS)
    error = error_of(lambda: digits_oip.ModelInfer(request, timeout=10))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"input 'images' of model '{DIGITS}': expected datatype UINT8, got FP32" in (
        error.details()
    )


def test_typed_uint8_contents_on_the_uint8_model(
    digits_oip: GRPCInferenceServiceStub, mnist: Dataset, reference: Reference
) -> None:
    images = mnist.test_images[:50]
    request = typed_request(DIGITS, "UINT8", images.shape, uint_contents=images.ravel().tolist())
    result = outputs(digits_oip.ModelInfer(request, timeout=10))
    assert np.array_equal(result["label"], reference.labels[:50])


def test_uint8_contents_out_of_range_is_refused(
    digits_oip: GRPCInferenceServiceStub, mnist: Dataset
) -> None:
    height, width = mnist.image_shape
    values = [0] * (height * width)
    values[5] = 256
    request = typed_request(DIGITS, "UINT8", [1, height, width], uint_contents=values)
    error = error_of(lambda: digits_oip.ModelInfer(request, timeout=10))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "uint_contents[5] is 256, outside the UINT8 range [0, 255]" in error.details()


def test_contents_in_the_wrong_field_is_refused(
    oip: GRPCInferenceServiceStub, mnist: Dataset
) -> None:
    height, width = mnist.image_shape
    zeros = [0] * (height * width)
    request = typed_request(MODEL, "FP32", [1, height, width], int_contents=zeros)
    error = error_of(lambda: oip.ModelInfer(request, timeout=10))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == (
        f"unexpected explicit tensor data for input tensor 'images' for model '{MODEL}' in "
        "int_contents, expected fp32_contents for datatype 'FP32'"
    )


def test_contents_and_raw_together_are_refused(
    oip: GRPCInferenceServiceStub, mnist: Dataset
) -> None:
    images = fp32(mnist.test_images[:1])
    request = infer_request(images, "FP32")
    request.inputs[0].contents.fp32_contents.extend(images.ravel().tolist())
    error = error_of(lambda: oip.ModelInfer(request, timeout=10))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == (
        f"contents field must not be specified when using raw_input_contents for 'images' for "
        f"model '{MODEL}'"
    )


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ("shape", "{input}: expected shape [-1,{h},{w}], got [2,{w},{h2}]"),
        ("datatype", "{input}: expected datatype FP32 or UINT8, got INT32"),
        ("unknown-datatype", "{input}: expected datatype FP32 or UINT8, got FLOAT32"),
        ("bytes", "{input}: expected {bytes} bytes for shape [2,{h},{w}]"),
        ("no-data", "unable to find data for input tensor 'images' for model '{model}'"),
        ("no-inputs", "expected 1 inputs but got 0 inputs for model '{model}'"),
        ("two-inputs", "input 'images' already exists in request for model '{model}'"),
        (
            "extra-raw",
            "expected 1 raw_input_contents entry (one per input not in shared memory) for model "
            "'{model}', got 2",
        ),
        ("nan", "{input}: pixels must be finite"),
        ("empty-batch", "{input}: the batch is empty"),
        ("classification", "output 'label' of model '{model}': parameter 'classification' must"),
        ("long-name", "unexpected inference input '{long}…' for model '{model}'"),
        ("shared-memory", "{input}: shared memory region 'region' is not registered"),
    ],
)
def test_malformed_requests_get_invalid_argument(
    oip: GRPCInferenceServiceStub, mnist: Dataset, change: str, expected: str
) -> None:
    height, width = mnist.image_shape
    images = fp32(mnist.test_images[:2])
    request = infer_request(images, "FP32")
    tensor = request.inputs[0]
    if change == "shape":
        tensor.ClearField("shape")
        tensor.shape.extend([2, width, height - 1])
    elif change == "datatype":
        tensor.datatype = "INT32"
    elif change == "unknown-datatype":
        tensor.datatype = "FLOAT32"
    elif change == "bytes":
        request.raw_input_contents[0] = request.raw_input_contents[0][:-1]
    elif change == "no-data":
        request.ClearField("raw_input_contents")
    elif change == "no-inputs":
        request.ClearField("inputs")
    elif change == "two-inputs":
        request.inputs.add().CopyFrom(tensor)
    elif change == "extra-raw":
        request.raw_input_contents.append(request.raw_input_contents[0])
    elif change == "nan":
        bad = images.copy()
        bad[1, 3, 4] = np.nan
        request.raw_input_contents[0] = bad.tobytes()
    elif change == "empty-batch":
        tensor.shape[0] = 0
        request.raw_input_contents[0] = b""
    elif change == "classification":
        request.outputs.add(name="label").parameters["classification"].string_param = "3"
    elif change == "long-name":
        # Far above gRPC's 8 KB limit for the status message, were it echoed whole.
        tensor.name = "x" * 100_000
    elif change == "shared-memory":
        tensor.parameters["shared_memory_region"].string_param = "region"
        tensor.parameters["shared_memory_byte_size"].int64_param = 100
        request.ClearField("raw_input_contents")
    error = error_of(lambda: oip.ModelInfer(request, timeout=10))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    text = expected.format(
        input=f"input 'images' of model '{MODEL}'",
        model=MODEL,
        h=height,
        w=width,
        h2=height - 1,
        bytes=2 * height * width * 4,
        long="x" * 199,
    )
    assert text in error.details()


def test_max_batch_names_the_limit(digits_oip: GRPCInferenceServiceStub, mnist: Dataset) -> None:
    images = mnist.train_images[: DIGITS_MAX_BATCH + 1]
    error = error_of(lambda: digits_oip.ModelInfer(infer_request(images, "UINT8", DIGITS)))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"batch size must be <= {DIGITS_MAX_BATCH}" in error.details()


def test_unknown_model_or_version_is_not_found(
    oip: GRPCInferenceServiceStub, mnist: Dataset, model_onnx: Path
) -> None:
    images = fp32(mnist.test_images[:1])
    served = str(onnx.load(model_onnx).model_version)
    for model, model_version, message in [
        ("nope", "", "Request for unknown model: 'nope' is not found"),
        (MODEL, "77", f"Request for unknown model: '{MODEL}' version 77 is not found"),
        ("", "", "Request for unknown model: '' is not found"),
    ]:
        request = infer_request(images, "FP32", model, model_version=model_version)
        error = error_of(lambda r=request: oip.ModelInfer(r, timeout=10))
        assert (error.code(), error.details()) == (grpc.StatusCode.NOT_FOUND, message)
        meta = pb.ModelMetadataRequest(name=model, version=model_version)
        error = error_of(lambda m=meta: oip.ModelMetadata(m, timeout=10))
        assert (error.code(), error.details()) == (grpc.StatusCode.NOT_FOUND, message)
        ready = oip.ModelReady(pb.ModelReadyRequest(name=model, version=model_version))
        assert ready.ready is False
    response = oip.ModelInfer(infer_request(images, "FP32", model_version=served), timeout=10)
    assert response.model_version == served
    # Versions are integers, as Triton reads them: "01" is version 1, "abc" is a mistake.
    padded = oip.ModelInfer(infer_request(images, "FP32", model_version=f"0{served}"), timeout=10)
    assert padded.model_version == served
    meta = oip.ModelMetadata(pb.ModelMetadataRequest(name=MODEL, version=f"0{served}"))
    assert list(meta.versions) == [served]
    error = error_of(lambda: oip.ModelInfer(infer_request(images, "FP32", model_version="abc")))
    assert (error.code(), error.details()) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        f"model '{MODEL}': version 'abc' is not a version number, expected an integer >= 1 (or "
        "none, for the newest)",
    )


def test_request_id_is_echoed_and_outputs_follow_the_request(
    oip: GRPCInferenceServiceStub, mnist: Dataset, reference: Reference
) -> None:
    request = infer_request(fp32(mnist.test_images[:4]), "FP32", id="req-42")
    for name in ("probabilities", "label"):
        request.outputs.add(name=name)
    response = oip.ModelInfer(request, timeout=10)
    assert response.id == "req-42"
    assert [tensor.name for tensor in response.outputs] == ["probabilities", "label"]
    result = outputs(response)
    assert list(result["label"].shape) == [4]
    assert np.array_equal(result["label"], reference.labels[:4])
    # An output asked twice (perhaps with different parameters) is refused, as Triton does.
    request.outputs.add(name="probabilities").parameters["classification"].int64_param = 2
    with pytest.raises(grpc.RpcError) as raised:
        oip.ModelInfer(request, timeout=10)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert raised.value.details().startswith("output 'probabilities' already exists in request")


def test_model_metadata_properties_are_the_onnx_metadata(
    oip: GRPCInferenceServiceStub, model_onnx: Path
) -> None:
    proto = onnx.load(model_onnx)
    response = oip.ModelMetadata(pb.ModelMetadataRequest(name=MODEL), timeout=10)
    public = {p.key: p.value for p in proto.metadata_props if not p.key.startswith("versions.")}
    assert dict(response.properties) == public  # the training host's versions stay private
    assert "class_labels" in response.properties
    assert response.versions == [str(proto.model_version)]


def test_statistics_count_the_calls_made(oip: GRPCInferenceServiceStub, mnist: Dataset) -> None:
    def stats() -> pb.ModelStatistics:
        response = oip.ModelStatistics(pb.ModelStatisticsRequest(name=MODEL), timeout=10)
        assert [entry.name for entry in response.model_stats] == [MODEL]
        return response.model_stats[0]

    before = stats()
    for _ in range(3):
        oip.ModelInfer(infer_request(mnist.test_images[:5], "UINT8"), timeout=10)
    bad = infer_request(mnist.test_images[:5], "UINT8")
    bad.inputs[0].shape[1] = 27
    with pytest.raises(grpc.RpcError):
        oip.ModelInfer(bad, timeout=10)
    after = stats()
    assert after.inference_stats.success.count - before.inference_stats.success.count == 3
    assert after.inference_stats.fail.count - before.inference_stats.fail.count == 1
    assert after.inference_count - before.inference_count == 15
    assert after.execution_count - before.execution_count == 3
    assert after.inference_stats.compute_infer.ns > before.inference_stats.compute_infer.ns
    assert after.last_inference >= before.last_inference > 0 or before.inference_count == 0
    assert 5 in {batch.batch_size for batch in after.batch_stats}
    everything = oip.ModelStatistics(pb.ModelStatisticsRequest(), timeout=10).model_stats
    assert [(entry.name, entry.version) for entry in everything] == [(MODEL, after.version)]
    error = error_of(
        lambda: oip.ModelStatistics(pb.ModelStatisticsRequest(name="nope"), timeout=10)
    )
    # As Triton's statistics extension answers it (its other calls say NOT_FOUND).
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == "requested model 'nope' is not available"


def test_server_metadata_and_readiness(oip: GRPCInferenceServiceStub) -> None:
    metadata = oip.ServerMetadata(pb.ServerMetadataRequest(), timeout=10)
    assert (metadata.name, metadata.version, list(metadata.extensions)) == (
        "scratchnet",
        version("scratchnet"),
        [
            "classification",
            "model_repository",
            "model_configuration",
            "system_shared_memory",
            "statistics",
        ],
    )
    assert oip.ServerLive(pb.ServerLiveRequest(), timeout=10).live is True
    assert oip.ServerReady(pb.ServerReadyRequest(), timeout=10).ready is True
    assert oip.ModelReady(pb.ModelReadyRequest(name=MODEL), timeout=10).ready is True


@pytest.mark.parametrize(
    "rpc",
    [
        "CudaSharedMemoryStatus",
        "CudaSharedMemoryRegister",
        "CudaSharedMemoryUnregister",
        "TraceSetting",
        "LogSettings",
    ],
)
def test_triton_extension_rpcs_are_not_served(oip: GRPCInferenceServiceStub, rpc: str) -> None:
    """They are in the .proto (for Triton's clients) but not registered: gRPC's own answer."""
    method = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"].methods_by_name[rpc]
    request = getattr(pb, method.input_type.name)()
    with pytest.raises(grpc.RpcError) as error:
        getattr(oip, rpc)(request, timeout=10)
    assert error.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert error.value.details() == "Method not found!"


def test_stream_reports_errors_with_their_id_and_goes_on(
    oip: GRPCInferenceServiceStub, mnist: Dataset, reference: Reference
) -> None:
    images = fp32(mnist.test_images[:6])
    requests = [
        infer_request(images[:3], "FP32", id="first"),
        infer_request(images[:3], "FP32", "nope", id="unknown-model"),
        infer_request(images[:3, :, 1:], "FP32", id="bad-shape"),
        infer_request(images[3:], "FP32", id="last"),
    ]
    responses = list(oip.ModelStreamInfer(iter(requests), timeout=10))
    assert [r.infer_response.id for r in responses] == [r.id for r in requests]
    assert [bool(r.error_message) for r in responses] == [False, True, True, False]
    assert responses[1].error_message == "Request for unknown model: 'nope' is not found"
    assert "expected shape" in responses[2].error_message
    assert not responses[1].infer_response.outputs
    assert responses[1].infer_response.model_name == "nope"
    # Each is its request's last response, which streaming clients wait for (as Triton says).
    assert all(r.infer_response.parameters["triton_final_response"].bool_param for r in responses)
    labels = [outputs(responses[i].infer_response)["label"] for i in (0, 3)]
    assert np.array_equal(np.concatenate(labels), reference.labels[:6])


def test_stream_open_at_shutdown_is_answered_to_the_end(
    model_onnx_uint8: Path, mnist: Dataset, reference: Reference, tmp_path: Path
) -> None:
    """After SIGTERM, a stream already open is still answered (a call in flight finishes, as for
    scratchnet.v1); once the client closes it the server exits 0 without waiting out the grace."""
    running = start_server(model_onnx_uint8, tmp_dir=tmp_path)
    requests: queue.Queue[Any] = queue.Queue()
    images = mnist.test_images[:2]
    try:
        with grpc.insecure_channel(running.target) as channel:
            stub = GRPCInferenceServiceStub(channel)
            watch = HealthStub(channel).Watch(HealthCheckRequest(service=""), timeout=30)
            assert next(watch).status == SERVING
            responses = stub.ModelStreamInfer(iter(requests.get, None), timeout=30)
            requests.put(infer_request(images, "UINT8", id="before"))
            assert next(responses).error_message == ""
            running.process.send_signal(signal.SIGTERM)
            # Health turns NOT_SERVING once the drain has begun (the "shutting down" log line
            # comes before it): the next request certainly arrives during the drain.
            assert next(watch).status == NOT_SERVING
            watch.cancel()
            assert "shutting down" in running.stderr()
            requests.put(infer_request(images, "UINT8", id="after"))
            after = next(responses)
            requests.put(None)
            assert list(responses) == []
        assert (after.error_message, after.infer_response.id) == ("", "after")
        assert np.array_equal(outputs(after.infer_response)["label"], reference.labels[:2])
        # The grace period is 10 s: exiting sooner shows nothing was left waiting.
        assert running.process.wait(timeout=9) == 0
    finally:
        running.stop()


def test_a_foreign_model_is_served_under_its_name_version_and_shapes(tmp_path: Path) -> None:
    """Input name, H, W, C and the version come from the ONNX file, not from MNIST."""
    classes, height, width, served = 3, 5, 7, "7"
    rng = np.random.default_rng(11)
    weights, biases = rng.normal(size=(classes, height, width)), rng.normal(size=classes)
    model = build_classifier(
        tmp_path / "foreign.onnx", weights, biases, input_name="x", model_version=int(served)
    )
    images = rng.integers(0, 256, size=(20, height, width), dtype=np.uint8)
    running = start_server(model, "--model-name", "foreign", tmp_dir=tmp_path)
    try:
        with grpc.insecure_channel(running.target) as channel:
            stub = GRPCInferenceServiceStub(channel)
            meta = stub.ModelMetadata(pb.ModelMetadataRequest(name="foreign"), timeout=10)
            assert list(meta.versions) == [served]
            assert [(t.name, t.datatype, list(t.shape)) for t in meta.inputs] == [
                ("x", "FP32", [-1, height, width])
            ]
            # The model's own outputs, in graph order, as Triton lists them.
            assert [(t.name, list(t.shape)) for t in meta.outputs] == [
                ("scores", [-1, classes]),
                ("label", [-1]),
                ("probabilities", [-1, classes]),
            ]
            for version, ready in (("", True), (served, True), ("1", False)):
                asked = pb.ModelReadyRequest(name="foreign", version=version)
                assert stub.ModelReady(asked, timeout=10).ready is ready, version

            request = pb.ModelInferRequest(model_name="foreign", model_version=served)
            request.inputs.add(name="x", datatype="UINT8", shape=images.shape)
            request.raw_input_contents.append(images.tobytes())
            response = stub.ModelInfer(request, timeout=10)
            assert response.model_version == served
            assert np.array_equal(outputs(response)["label"], predict(weights, biases, images))
            request.model_version = "1"
            error = error_of(lambda: stub.ModelInfer(request, timeout=10))
            assert error.code() == grpc.StatusCode.NOT_FOUND
    finally:
        running.stop()
