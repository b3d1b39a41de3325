"""The Python client library against the real server: both dtypes, batch splitting, streaming,
labels equal to the numpy forward pass, and one exception per gRPC status a caller handles."""

from __future__ import annotations

import math
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import numpy as np
import pytest

from clients import (
    Client,
    ClientError,
    DeadlineExceededError,
    InvalidArgumentError,
    ServerUnavailableError,
)
from scratchnet.api.v1 import classifier_pb2, classifier_pb2_grpc
from scratchnet.artifact import Artifact
from scratchnet.datasets import Dataset
from scratchnet.errors import ScratchnetError
from scratchnet.forward import predict, probabilities, scores
from tests.conftest import GatedServer, RunningServer, start_server
from tests.server.workers import closed

SMALL_MAX_BATCH = 7


@pytest.fixture(scope="module")
def client(server: RunningServer) -> Iterator[Client]:
    """A client of the shared server."""
    with Client(server.target) as connected:
        yield connected


@pytest.fixture(scope="module")
def small_server(model_onnx: Path, tmp_path: Path) -> Iterator[RunningServer]:
    """A server that takes at most SMALL_MAX_BATCH images per request."""
    running = start_server(model_onnx, "--max-batch", str(SMALL_MAX_BATCH), tmp_dir=tmp_path)
    yield running
    assert running.stop() == 0


@pytest.fixture(scope="module")
def tmp_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder for this module's server logs."""
    return tmp_path_factory.mktemp("client")


def test_model_info_describes_the_served_model(client: Client, artifact: Artifact) -> None:
    info = client.model_info()
    assert info.name == "scratchnet"
    assert info.image_shape == artifact.image_shape
    assert info.num_classes == artifact.num_classes
    assert list(info.class_labels) == artifact.class_labels
    assert set(info.input_dtypes) == {"uint8", "float32"}
    assert info.max_batch_size > 0


@pytest.mark.parametrize("dtype", ["uint8", "float32"])
def test_predict_matches_the_numpy_forward_pass(
    client: Client, mnist: Dataset, artifact: Artifact, dtype: str
) -> None:
    pixels = mnist.test_images[:300]
    images = pixels if dtype == "uint8" else (pixels / np.float32(255)).astype(np.float32)
    expected = scores(artifact.weights, artifact.biases, pixels)
    result = client.predict(images, scores=True, probabilities=True)
    assert result.labels.dtype == np.int64
    np.testing.assert_array_equal(result.labels, predict(artifact.weights, artifact.biases, pixels))
    assert result.scores is not None and result.probabilities is not None
    assert result.scores.dtype == result.probabilities.dtype == np.float32
    np.testing.assert_allclose(result.scores, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(result.probabilities, probabilities(expected), atol=1e-6)


def test_one_image_gives_one_label_and_no_scores_unless_asked(
    client: Client, mnist: Dataset, artifact: Artifact
) -> None:
    result = client.predict(mnist.test_images[0])
    assert result.labels.shape == (1,)
    assert result.labels[0] == predict(artifact.weights, artifact.biases, mnist.test_images[:1])[0]
    assert result.scores is None and result.probabilities is None


def test_the_whole_test_set_streams_in_order(
    client: Client, mnist: Dataset, artifact: Artifact
) -> None:
    batches = list(client.predict_batches(mnist.test_images))
    assert len(batches) > 1, "a large input should go over PredictStream in several batches"
    starts = [batch.start for batch in batches]
    ends = [batch.start + len(batch.prediction.labels) for batch in batches]
    assert starts == [0, *ends[:-1]] and ends[-1] == len(mnist.test_images)
    assert all(batch.latency > 0 for batch in batches)
    labels = np.concatenate([batch.prediction.labels for batch in batches])
    expected = predict(artifact.weights, artifact.biases, mnist.test_images)
    np.testing.assert_array_equal(labels, expected)


def test_batches_never_exceed_the_servers_limit(
    small_server: RunningServer, mnist: Dataset, artifact: Artifact
) -> None:
    images = mnist.test_images[:50]
    # The server does refuse more than its limit in one request, so splitting is needed:
    with grpc.insecure_channel(small_server.target) as channel:
        request = classifier_pb2.PredictRequest(
            images=classifier_pb2.Tensor(
                dtype=classifier_pb2.DATA_TYPE_UINT8, shape=images.shape, data=images.tobytes()
            )
        )
        with pytest.raises(grpc.RpcError) as refused:
            classifier_pb2_grpc.ClassifierStub(channel).Predict(request, timeout=10)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    # A batch size above the server's limit is capped to it.
    with Client(small_server.target, batch_size=1000) as small:
        assert small.model_info().max_batch_size == SMALL_MAX_BATCH
        sizes = [len(batch.prediction.labels) for batch in small.predict_batches(images)]
        assert sizes == [SMALL_MAX_BATCH] * 7 + [1]
        labels = small.predict(images, probabilities=True).labels
    np.testing.assert_array_equal(labels, predict(artifact.weights, artifact.biases, images))


def test_requests_stay_under_the_servers_message_limit(
    model_onnx: Path, tmp_path: Path, mnist: Dataset, artifact: Artifact
) -> None:
    server = start_server(
        model_onnx, "--max-message-mb", "1", "--max-batch", "4096", tmp_dir=tmp_path
    )
    try:
        images = (mnist.test_images[:2000] / np.float32(255)).astype(np.float32)
        with Client(server.target, batch_size=len(images)) as client:
            info = client.model_info()
            assert info.max_message_bytes == 1 << 20 and info.max_batch_size >= len(images)
            batches = list(client.predict_batches(images))
    finally:
        assert server.stop() == 0
    assert all(len(b.prediction.labels) * images[0].nbytes < 1 << 20 for b in batches)
    labels = np.concatenate([batch.prediction.labels for batch in batches])
    np.testing.assert_array_equal(labels, predict(artifact.weights, artifact.biases, images))


def test_batch_size_splits_the_input(client: Client, server: RunningServer, mnist: Dataset) -> None:
    with Client(server.target, batch_size=64) as batched:
        sizes = [len(b.prediction.labels) for b in batched.predict_batches(mnist.test_images[:300])]
        labels = batched.predict(mnist.test_images[:300]).labels
    assert sizes == [64] * 4 + [44]
    np.testing.assert_array_equal(labels, client.predict(mnist.test_images[:300]).labels)


def test_unreachable_server_raises_server_unavailable(closed_port: int) -> None:
    nowhere = Client(f"127.0.0.1:{closed_port}", timeout=10)
    with nowhere, pytest.raises(ServerUnavailableError) as raised:
        nowhere.predict(np.zeros((2, 4, 4), dtype=np.uint8))
    assert raised.value.code == grpc.StatusCode.UNAVAILABLE
    assert isinstance(raised.value, ScratchnetError) and "\n" not in str(raised.value)


def test_a_grpc_server_that_is_not_scratchnet_is_named_as_such() -> None:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))  # no services at all
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        stranger = Client(f"127.0.0.1:{port}", timeout=10)
        with stranger, pytest.raises(ClientError) as raised:
            stranger.predict(np.zeros((2, 4, 4), dtype=np.uint8))
    finally:
        server.stop(None)
    assert raised.value.code == grpc.StatusCode.UNIMPLEMENTED
    assert str(raised.value) == (
        f"the server at 127.0.0.1:{port} does not implement scratchnet.v1.Classifier (Method not "
        "found!): expected a scratchnet server (python -m server)"
    )


def test_wrong_image_size_raises_invalid_argument(client: Client, mnist: Dataset) -> None:
    height, width = client.model_info().image_shape
    with pytest.raises(InvalidArgumentError) as raised:
        client.predict(mnist.test_images[:2, : height - 1])
    assert raised.value.code == grpc.StatusCode.INVALID_ARGUMENT
    expected = f"expected shape [-1,{height},{width}], got [2,{height - 1},{width}]"
    assert expected in str(raised.value)


def test_a_bad_request_in_a_stream_raises_invalid_argument(
    small_server: RunningServer, mnist: Dataset
) -> None:
    images = mnist.test_images[:20].astype(np.float32) / 255
    images[10, 0, 0] = np.nan
    with Client(small_server.target) as small, pytest.raises(InvalidArgumentError) as raised:
        small.predict(images)
    assert "finite" in str(raised.value)
    assert "request starting at image 7" in str(raised.value)


def test_pixels_of_another_type_are_refused_before_any_call(client: Client) -> None:
    with pytest.raises(InvalidArgumentError, match=r"expected uint8 .* got int64") as raised:
        client.predict(np.zeros((2, 3, 3), dtype=np.int64))
    assert raised.value.code is None


@pytest.mark.parametrize("path", ["unary", "stream"])
def test_no_answer_within_the_timeout_raises_deadline_exceeded(
    gated_server: GatedServer, mnist: Dataset, path: str
) -> None:
    target = gated_server.server.target
    images = mnist.test_images[: 1 if path == "unary" else 10]
    with Client(target, batch_size=4) as client:
        client.model_info()  # asked now, while the server answers: predict needs it first
        client.timeout = 0.5
        # The server's runs wait at the gate: the call waits until its deadline.
        with closed(gated_server.gate), pytest.raises(DeadlineExceededError) as raised:
            client.predict(images)
    assert raised.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert str(raised.value) == (
        f"DEADLINE_EXCEEDED from {target}: no answer within 0.5 s (the timeout: raise it for a "
        "busy server)"
    )


@pytest.mark.parametrize("target", ["nonsense", "127.0.0.1", "127.0.0.1:0", "host:99999", ":80"])
def test_a_malformed_target_is_refused(target: str) -> None:
    with pytest.raises(ClientError, match="expected HOST:PORT"):
        Client(target)


# 1e10 s overflows gRPC's int64 nanosecond deadlines: every call would fail at once.
@pytest.mark.parametrize("timeout", [0.0, -1.0, math.inf, math.nan, 86400.5, 1e10])
def test_a_timeout_must_be_positive_finite_and_at_most_a_day(timeout: float) -> None:
    with pytest.raises(ClientError, match="timeout"):
        Client("127.0.0.1:50051", timeout=timeout)


def test_a_closed_client_refuses_calls(server: RunningServer, mnist: Dataset) -> None:
    client = Client(server.target)
    client.close()
    with pytest.raises(ClientError, match="closed"):
        client.predict(mnist.test_images[:1])


class _ShortAnswers(classifier_pb2_grpc.ClassifierServicer):
    """A misbehaving server: one label fewer than the images it was sent."""

    def GetModelInfo(
        self, request: classifier_pb2.GetModelInfoRequest, context: grpc.ServicerContext
    ) -> classifier_pb2.GetModelInfoResponse:
        return classifier_pb2.GetModelInfoResponse(
            model_name="m", model_version="1", input_dtypes=[classifier_pb2.DATA_TYPE_UINT8],
            input_shape=[-1, 2, 2], num_classes=3, max_batch_size=10, outputs=["label"],
        )  # fmt: skip

    def Predict(
        self, request: classifier_pb2.PredictRequest, context: grpc.ServicerContext
    ) -> classifier_pb2.PredictResponse:
        return classifier_pb2.PredictResponse(labels=[1] * (request.images.shape[0] - 1))

    def PredictStream(
        self, requests: Iterator[classifier_pb2.PredictRequest], context: grpc.ServicerContext
    ) -> Iterator[classifier_pb2.PredictResponse]:
        for request in requests:
            yield self.Predict(request, context)


@pytest.fixture
def short_answers() -> Iterator[str]:
    server = grpc.server(futures.ThreadPoolExecutor(4))
    classifier_pb2_grpc.add_ClassifierServicer_to_server(_ShortAnswers(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}"
    server.stop(0)


@pytest.mark.parametrize(("replicas", "count"), [(1, 5), (1, 25), (2, 25)], ids=str)
def test_a_reply_short_of_labels_is_an_error_not_a_shifted_result(
    short_answers: str, replicas: int, count: int
) -> None:
    # One call (5 images), a stream (25 in batches of 10), one call per batch over replicas.
    expected = r"answered the request of \d+ images starting at image 0 with \d+ labels, expected"
    with (
        Client(",".join([short_answers] * replicas)) as client,
        pytest.raises(ClientError, match=expected) as raised,
    ):
        client.predict(np.zeros((count, 2, 2), dtype=np.uint8))
    assert raised.value.failure, "a wrong reply is a failed call (exit 1), not a mistake"


def test_ragged_images_are_refused_before_any_call(client: Client) -> None:
    ragged = [np.zeros((28, 28), np.uint8), np.zeros((27, 28), np.uint8)]
    with pytest.raises(InvalidArgumentError, match="expected one array"):
        client.predict(ragged)  # type: ignore[arg-type]
