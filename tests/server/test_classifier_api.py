"""End to end: scratchnet.v1.Classifier on real servers for the float32 and uint8 article models."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import onnx
import pytest
from grpc_health.v1.health_pb2 import HealthCheckRequest
from grpc_health.v1.health_pb2_grpc import HealthStub
from numpy.typing import NDArray

from scratchnet.api.v1 import classifier_pb2 as pb
from scratchnet.api.v1 import classifier_pb2_grpc
from scratchnet.artifact import Artifact
from scratchnet.datasets import Dataset
from scratchnet.forward import predict, probabilities, scores
from tests.conftest import RunningServer, start_server
from tests.server.workers import closed, runs_at_gate, start_gated_server, until

V1_DTYPES = {np.dtype(np.uint8): pb.DATA_TYPE_UINT8, np.dtype(np.float32): pb.DATA_TYPE_FLOAT32}


def tensor(images: NDArray[Any]) -> pb.Tensor:
    """A v1 tensor holding `images` raw."""
    return pb.Tensor(dtype=V1_DTYPES[images.dtype], shape=images.shape, data=images.tobytes())


def request(images: NDArray[Any], **options: Any) -> pb.PredictRequest:
    return pb.PredictRequest(images=tensor(images), **options)


def invalid_argument(call: Any, message: Any) -> str:
    """Call, expect INVALID_ARGUMENT, return the details."""
    with pytest.raises(grpc.RpcError) as raised:
        call(message, timeout=30)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT, raised.value.details()
    return str(raised.value.details())


def test_get_model_info_describes_the_float32_model(
    classifier: classifier_pb2_grpc.ClassifierStub, model_onnx: Path, mnist: Dataset
) -> None:
    info = classifier.GetModelInfo(pb.GetModelInfoRequest(), timeout=30)
    model = onnx.load(model_onnx)
    metadata = {prop.key: prop.value for prop in model.metadata_props}
    height, width = mnist.test_images.shape[1:]
    assert info.model_name == "scratchnet"
    assert info.model_version == str(model.model_version or 1)
    assert list(info.input_dtypes) == [pb.DATA_TYPE_FLOAT32, pb.DATA_TYPE_UINT8]
    assert list(info.input_shape) == [-1, height, width]
    assert info.num_classes == mnist.num_classes
    assert list(info.class_labels) == json.loads(metadata["class_labels"])
    assert info.max_batch_size == 1024
    assert info.max_message_bytes == 64 * 1024 * 1024
    # The training host's software versions stay private unless --expose-versions.
    assert dict(info.metadata) == {
        key: value for key, value in metadata.items() if not key.startswith("versions.")
    }
    assert "versions.python" in metadata
    assert list(info.outputs) == ["label", "scores", "probabilities"]


def test_get_model_info_of_the_uint8_model_accepts_uint8_only(
    uint8_classifier: classifier_pb2_grpc.ClassifierStub,
) -> None:
    info = uint8_classifier.GetModelInfo(pb.GetModelInfoRequest(), timeout=30)
    assert list(info.input_dtypes) == [pb.DATA_TYPE_UINT8]


@pytest.fixture(params=["float32", "uint8"])
def each_model(request: pytest.FixtureRequest) -> tuple[str, classifier_pb2_grpc.ClassifierStub]:
    """The input dtype of each article model, and a v1 stub on the shared server serving it."""
    stub = "classifier" if request.param == "float32" else "uint8_classifier"
    return request.param, request.getfixturevalue(stub)


@pytest.mark.parametrize("dtype", ["uint8", "float32"])
def test_predict_matches_the_numpy_forward_pass(
    each_model: tuple[str, classifier_pb2_grpc.ClassifierStub],
    dtype: str,
    mnist: Dataset,
    artifact: Artifact,
) -> None:
    model, stub = each_model
    images = mnist.test_images[:300]
    pixels = images if dtype == "uint8" else (images / 255.0).astype(np.float32)
    message = request(pixels, return_scores=True, return_probabilities=True, request_id="b-1")
    if model == "uint8" and dtype == "float32":
        details = invalid_argument(stub.Predict, message)
        assert "input 'images' of model 'scratchnet': expected datatype UINT8, got FP32" in details
        return
    response = stub.Predict(message, timeout=30)
    expected = scores(artifact.weights, artifact.biases, images)
    classes = mnist.num_classes
    np.testing.assert_array_equal(
        response.labels, predict(artifact.weights, artifact.biases, images)
    )
    np.testing.assert_allclose(np.reshape(response.scores, (-1, classes)), expected, atol=1e-4)
    np.testing.assert_allclose(
        np.reshape(response.probabilities, (-1, classes)), probabilities(expected), atol=1e-5
    )
    assert (response.num_classes, response.model_name) == (classes, "scratchnet")
    assert (response.model_version, response.request_id) == ("1", "b-1")


def test_labels_only_unless_scores_or_probabilities_are_asked_for(
    classifier: classifier_pb2_grpc.ClassifierStub, mnist: Dataset
) -> None:
    response = classifier.Predict(request(mnist.test_images[:3]), timeout=30)
    assert len(response.labels) == 3
    assert not response.scores and not response.probabilities
    only_scores = classifier.Predict(request(mnist.test_images[:3], return_scores=True))
    assert len(only_scores.scores) == 3 * mnist.num_classes and not only_scores.probabilities


def test_stream_scores_the_test_set_exactly_like_the_trainer(
    each_model: tuple[str, classifier_pb2_grpc.ClassifierStub],
    mnist: Dataset,
    artifact: Artifact,
) -> None:
    _, stub = each_model
    batches = np.array_split(mnist.test_images, 10)
    responses = list(
        stub.PredictStream(
            (request(batch, request_id=str(index)) for index, batch in enumerate(batches)),
            timeout=120,
        )
    )
    assert [response.request_id for response in responses] == [str(i) for i in range(10)]
    labels = np.concatenate([np.asarray(response.labels) for response in responses])
    expected = predict(artifact.weights, artifact.biases, mnist.test_images)
    np.testing.assert_array_equal(labels, expected)


def test_stream_answers_each_request_in_order(
    classifier: classifier_pb2_grpc.ClassifierStub, mnist: Dataset
) -> None:
    sizes = [1, 7, 250, 2, 40]
    starts = np.cumsum([0, *sizes])
    requests = [
        request(mnist.test_images[start : start + size], request_id=f"r{index}")
        for index, (start, size) in enumerate(zip(starts, sizes, strict=False))
    ]
    responses = list(classifier.PredictStream(iter(requests), timeout=60))
    assert [len(response.labels) for response in responses] == sizes
    assert [response.request_id for response in responses] == [f"r{i}" for i in range(len(sizes))]
    whole = classifier.Predict(request(mnist.test_images[: sum(sizes)]), timeout=30)
    streamed = np.concatenate([response.labels for response in responses])
    assert streamed.tolist() == list(whole.labels)


def test_stream_stops_at_a_malformed_request_after_answering_the_ones_before(
    classifier: classifier_pb2_grpc.ClassifierStub, mnist: Dataset
) -> None:
    good = request(mnist.test_images[:4])
    bad = pb.PredictRequest(
        images=pb.Tensor(dtype=pb.DATA_TYPE_UINT8, shape=[1, 2, 2], data=b"1234")
    )
    received = []
    with pytest.raises(grpc.RpcError) as raised:
        for response in classifier.PredictStream(iter([good, good, bad, good]), timeout=30):
            received.append(response)
    assert len(received) == 2
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "expected shape" in str(raised.value.details())


def _malformed(case: str, height: int, width: int) -> pb.PredictRequest:
    pixels = height * width
    uint8 = pb.DATA_TYPE_UINT8
    if case == "unspecified dtype":
        return pb.PredictRequest(images=pb.Tensor(shape=[2, height, width], data=bytes(2 * pixels)))
    if case == "unknown dtype":
        images = pb.Tensor(dtype=7, shape=[2, height, width], data=bytes(2 * pixels))
        return pb.PredictRequest(images=images)
    if case == "wrong height":
        shape = [2, height - 1, width]
        return pb.PredictRequest(images=pb.Tensor(dtype=uint8, shape=shape, data=bytes(2 * pixels)))
    if case == "flat images":
        shape = [2, pixels]
        return pb.PredictRequest(images=pb.Tensor(dtype=uint8, shape=shape, data=bytes(2 * pixels)))
    if case == "byte length":
        images = pb.Tensor(dtype=uint8, shape=[2, height, width], data=bytes(2 * pixels - 1))
        return pb.PredictRequest(images=images)
    if case == "float32 byte length":
        images = pb.Tensor(
            dtype=pb.DATA_TYPE_FLOAT32, shape=[2, height, width], data=bytes(2 * pixels)
        )
        return pb.PredictRequest(images=images)
    if case == "empty batch":
        return pb.PredictRequest(images=pb.Tensor(dtype=uint8, shape=[0, height, width]))
    if case == "negative batch":
        return pb.PredictRequest(images=pb.Tensor(dtype=uint8, shape=[-1, height, width]))
    if case == "huge":
        return request(np.full((2, height, width), 1e37, dtype=np.float32))
    if case == "0-255 floats":
        return request(np.full((2, height, width), 255.0, dtype=np.float32))
    if case in ("nan", "inf"):
        images = np.full((3, height, width), 0.5, dtype=np.float32)
        images[2, 0, 0] = np.nan if case == "nan" else -np.inf
        return request(images)
    assert case == "no images"
    return pb.PredictRequest(return_scores=True)


MALFORMED = {
    "unspecified dtype": "expected datatype FP32 or UINT8, got DATA_TYPE_UNSPECIFIED",
    "unknown dtype": "expected datatype FP32 or UINT8, got DataType value 7",
    "wrong height": "expected shape [-1,{h},{w}], got [2,{h1},{w}]",
    "flat images": "expected shape [-1,{h},{w}], got [2,{hw}]",
    "byte length": "expected {hw2} bytes for shape [2,{h},{w}] of UINT8 (1 per element), "
    "got {hw21}",
    "float32 byte length": "expected {hw8} bytes for shape [2,{h},{w}] of FP32",
    "empty batch": "the batch is empty (shape [0,{h},{w}]), expected at least one image",
    "negative batch": "shape [-1,{h},{w}] has a negative dimension, expected sizes >= 0",
    "nan": "pixels must be finite, found NaN or infinity in 1 image(s), the first at index 2",
    "inf": "pixels must be finite",
    "huge": "float pixels must lie in [0, 1] (the model's input_scale is 0.00392157), found 1e+37",
    "0-255 floats": "found 255 in image 0: divide 0-255 pixels by 255 or send them as UINT8",
    "no images": "the request has no images tensor",
}


@pytest.mark.parametrize("case", MALFORMED)
def test_malformed_request_is_invalid_argument_naming_expected_and_received(
    case: str, classifier: classifier_pb2_grpc.ClassifierStub, mnist: Dataset
) -> None:
    height, width = mnist.test_images.shape[1:]
    details = invalid_argument(classifier.Predict, _malformed(case, height, width))
    expected = MALFORMED[case].format(
        h=height,
        w=width,
        h1=height - 1,
        hw=height * width,
        hw2=2 * height * width,
        hw21=2 * height * width - 1,
        hw8=8 * height * width,
    )
    prefix = "input 'images' of model 'scratchnet': "
    assert details.startswith(prefix) and expected in details, details


def test_bytes_that_are_not_a_request_message_are_invalid_argument(
    server: RunningServer, mnist: Dataset
) -> None:
    garbage = b"\xff\xff\xff"  # a field number 0 and a truncated varint: no protobuf message
    identity = {"request_serializer": bytes, "response_deserializer": bytes}
    expected = "is not a valid protobuf message (Error parsing message with type '{}'"
    with grpc.insecure_channel(server.target) as channel:
        for method, message in [
            ("/scratchnet.v1.Classifier/Predict", "scratchnet.v1.PredictRequest"),
            ("/inference.GRPCInferenceService/ModelInfer", "inference.ModelInferRequest"),
        ]:
            details = invalid_argument(channel.unary_unary(method, **identity), garbage)
            assert details.startswith(f"the request to {method} ")
            assert expected.format(message) in details
        # In a stream, the requests before the bad one are answered.
        stream = channel.stream_stream("/scratchnet.v1.Classifier/PredictStream", **identity)
        good = request(mnist.test_images[:2]).SerializeToString()
        answers = []
        with pytest.raises(grpc.RpcError) as raised:
            for answer in stream(iter([good, garbage, good]), timeout=30):
                answers.append(pb.PredictResponse.FromString(answer))
        assert [len(answer.labels) for answer in answers] == [2]
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "Exception deserializing" not in server.stderr()


def test_a_burst_of_bad_requests_leaves_every_worker_alive(
    classifier: classifier_pb2_grpc.ClassifierStub, mnist: Dataset
) -> None:
    height, width = mnist.test_images.shape[1:]
    bad = [_malformed(case, height, width) for case in MALFORMED] * 4
    with futures.ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(lambda m: _code(classifier, m), bad))
    assert set(codes) == {grpc.StatusCode.INVALID_ARGUMENT}
    with futures.ThreadPoolExecutor(8) as pool:
        good = list(
            pool.map(lambda i: classifier.Predict(request(mnist.test_images[i : i + 1])), range(16))
        )
    assert [len(response.labels) for response in good] == [1] * 16


def _code(stub: classifier_pb2_grpc.ClassifierStub, message: pb.PredictRequest) -> Any:
    try:
        stub.Predict(message, timeout=30)
    except grpc.RpcError as error:
        return error.code()
    return grpc.StatusCode.OK


@pytest.fixture(scope="module")
def limited(model_onnx: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A server with tight size limits: 8 images and 1 MiB per message.

    Its workers and queue keep their defaults, so that no call here can find them full: the
    tests of those limits have servers of their own.
    """
    running = start_server(
        model_onnx,
        "--max-batch",
        "8",
        "--max-message-mb",
        "1",
        tmp_dir=tmp_path_factory.mktemp("limited"),
    )
    yield running
    assert running.stop() == 0


def test_more_images_than_max_batch_is_invalid_argument_naming_the_limit(
    limited: RunningServer, mnist: Dataset
) -> None:
    with grpc.insecure_channel(limited.target) as channel:
        stub = classifier_pb2_grpc.ClassifierStub(channel)
        assert len(stub.Predict(request(mnist.test_images[:8]), timeout=30).labels) == 8
        details = invalid_argument(stub.Predict, request(mnist.test_images[:9]))
        assert details == (
            "input 'images' of model 'scratchnet': batch size must be <= 8 (the server's "
            "--max-batch), got 9"
        )
        assert stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=30).max_batch_size == 8


def test_message_over_max_message_mb_is_resource_exhausted(
    limited: RunningServer, mnist: Dataset
) -> None:
    images = (mnist.test_images[:400] / 255.0).astype(np.float32)
    assert images.nbytes > 1024 * 1024
    with grpc.insecure_channel(limited.target) as channel:
        stub = classifier_pb2_grpc.ClassifierStub(channel)
        with pytest.raises(grpc.RpcError) as raised:
            stub.Predict(request(images), timeout=30)
        assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert len(stub.Predict(request(mnist.test_images[:2]), timeout=30).labels) == 2
        # A call that ends without its message is the client's mistake, counted and logged; the
        # message gRPC refused above is one of gRPC's own limits, neither counted nor logged.
        empty = channel.stream_unary("/scratchnet.v1.Classifier/Predict")
        details = invalid_argument(empty, iter(()))
        assert (
            details
            == "the call to /scratchnet.v1.Classifier/Predict ended without a request message"
        )
    assert limited.stderr().count("ended without a request message") == 1, limited.stderr()


def test_runs_beyond_the_threads_wait_in_the_queue_and_past_it_are_resource_exhausted(
    model_onnx: Path, mnist: Dataset, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    server = start_gated_server(model_onnx, gate, "--workers", "1", "--max-queue", "2",
                                tmp_dir=tmp_path)  # fmt: skip
    try:
        with (
            grpc.insecure_channel(server.target) as channel,
            futures.ThreadPoolExecutor(4) as pool,
            closed(gate),
        ):
            stub = classifier_pb2_grpc.ClassifierStub(channel)

            def call(index: int) -> Any:
                return pool.submit(
                    stub.Predict, request(mnist.test_images[index : index + 2]), timeout=60
                )

            running = call(0)
            until(lambda: runs_at_gate(gate) == 1)  # the one thread is busy with it
            waiting = [call(1), call(2)]
            time.sleep(0.3)  # refused calls would be answered by now
            assert not [c for c in waiting if c.done()], [c.exception() for c in waiting]
            with pytest.raises(grpc.RpcError) as raised:
                stub.Predict(request(mnist.test_images[:1]), timeout=30)
            assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "2 calls are waiting (the server's --max-queue is 2)" in raised.value.details()
            # Health answers at once, whatever the inference threads are doing.
            started = time.monotonic()
            assert HealthStub(channel).Check(HealthCheckRequest(), timeout=5).status == 1
            assert time.monotonic() - started < 1.0
        assert [len(c.result(timeout=60).labels) for c in [running, *waiting]] == [2, 2, 2]
    finally:
        assert server.stop() == 0
