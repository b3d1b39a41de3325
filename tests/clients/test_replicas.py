"""Two real servers as replicas behind one --target: round robin gives both traffic and the same
result as one server; a replica killed with SIGKILL mid-run costs no image and no accuracy."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pyarrow.parquet as pq
import pytest

from clients import Client
from scratchnet.api.inference import open_inference_grpc_pb2 as pb
from scratchnet.api.inference.open_inference_grpc_pb2_grpc import GRPCInferenceServiceStub
from scratchnet.artifact import Artifact
from scratchnet.datasets import Dataset
from scratchnet.errors import ClientError
from scratchnet.forward import predict
from tests.clients.failover import kill_mid_run
from tests.conftest import PYTHON, REPO, RunningServer, run_module, start_server
from tests.server.onnx_models import build_classifier, random_classifier

ARTICLE_CORRECT = 9104
"""Test images the article's model gets right."""


def images_inferred(target: str) -> int:
    """Images the server at `target` has classified so far (Triton's statistics extension)."""
    with grpc.insecure_channel(target) as channel:
        reply = GRPCInferenceServiceStub(channel).ModelStatistics(
            pb.ModelStatisticsRequest(), timeout=10
        )
    return sum(stats.inference_count for stats in reply.model_stats)


def two_servers(model: Path, tmp_dir: Path) -> Iterator[list[RunningServer]]:
    """Two servers of the same model on free ports, stopped at the end unless killed."""
    servers = [start_server(model, tmp_dir=tmp_dir) for _ in range(2)]
    yield servers
    for server in servers:
        if server.process.poll() is None:  # not the one a test killed
            assert server.stop() == 0


@pytest.fixture(scope="module")
def replicas(
    model_onnx: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[RunningServer]]:
    """Two replicas shared by the tests that leave them running."""
    yield from two_servers(model_onnx, tmp_path_factory.mktemp("replicas"))


@pytest.fixture
def doomed_replicas(model_onnx: Path, tmp_path: Path) -> Iterator[list[RunningServer]]:
    """Two replicas for a test that kills one."""
    yield from two_servers(model_onnx, tmp_path)


def test_both_replicas_get_traffic_and_the_result_equals_one_servers(
    replicas: list[RunningServer], tmp_path: Path
) -> None:
    first, second = replicas
    both = f"{first.target},{second.target}"
    one = run_module(
        "clients.score", "--target", first.target, "--json", "--output", tmp_path / "one.parquet"
    )
    before = [images_inferred(server.target) for server in replicas]
    two = run_module(
        "clients.score", "--target", both, "--json", "--output", tmp_path / "two.parquet"
    )
    served = [
        images_inferred(server.target) - count
        for server, count in zip(replicas, before, strict=True)
    ]
    assert all(count > 0 for count in served), served
    assert sum(served) == 10000, "each image scored once, on one replica"
    report, reference = json.loads(two.stdout), json.loads(one.stdout)
    assert report["target"] == both and report["batches"] == reference["batches"]
    for key in ("images", "correct", "accuracy", "confusion_matrix", "classes"):
        assert report[key] == reference[key], key
    assert pq.read_table(tmp_path / "two.parquet").equals(pq.read_table(tmp_path / "one.parquet"))


def test_the_library_spreads_batches_over_replicas(
    replicas: list[RunningServer], mnist: Dataset, artifact: Artifact
) -> None:
    targets = ",".join(server.target for server in replicas)
    before = [images_inferred(server.target) for server in replicas]
    with Client(targets, batch_size=100) as client:
        labels = client.predict(mnist.test_images[:1000]).labels
    expected = predict(artifact.weights, artifact.biases, mnist.test_images[:1000])
    assert labels.tolist() == expected.tolist()
    served = [
        images_inferred(server.target) - count
        for server, count in zip(replicas, before, strict=True)
    ]
    # Round robin picks among the replicas connected so far: both, after the first calls.
    assert all(count >= 100 for count in served) and sum(served) == 1000, served


def test_a_replica_that_accepts_but_never_answers_is_skipped(
    replicas: list[RunningServer], mnist: Dataset, artifact: Artifact
) -> None:
    # A listening socket nobody serves: connected, never answered (a stopped process, say).
    with socket.socket() as hole:
        hole.bind(("127.0.0.1", 0))
        hole.listen()
        targets = f"{replicas[0].target},127.0.0.1:{hole.getsockname()[1]}"
        with Client(targets, timeout=2) as client:
            labels = client.predict(mnist.test_images[:300]).labels
    expected = predict(artifact.weights, artifact.biases, mnist.test_images[:300])
    assert labels.tolist() == expected.tolist()


def test_perf_loads_every_replica(replicas: list[RunningServer]) -> None:
    targets = ",".join(server.target for server in replicas)
    before = [images_inferred(server.target) for server in replicas]
    result = run_module(
        "clients.perf", "--target", targets, "--api", "v2", "--batch", "8", "--concurrency", "4",
        "--duration", "0.5", "--warmup", "0", "--json",
    )  # fmt: skip
    report = json.loads(result.stdout)
    assert report["errors"] == 0 and report["requests"] > 0
    served = [
        images_inferred(server.target) - count
        for server, count in zip(replicas, before, strict=True)
    ]
    assert all(count > 0 for count in served), served


def test_a_replica_killed_mid_run_costs_no_image(
    doomed_replicas: list[RunningServer], mnist: Dataset, artifact: Artifact, tmp_path: Path
) -> None:
    victim, survivor = doomed_replicas
    repeat = 30
    output = tmp_path / "scores.parquet"
    command = [PYTHON, "-m", "clients.score", "--target", f"{victim.target},{survivor.target}"]
    command += ["--repeat", str(repeat), "--json", "-q", "--output", str(output)]
    started = time.monotonic()
    stdout, _, killed_at = kill_mid_run(
        command, victim, lambda: images_inferred(victim.target) > 0, REPO
    )
    report = json.loads(stdout)
    assert report["images"] == repeat * 10000
    assert report["correct"] == repeat * ARTICLE_CORRECT and report["accuracy"] == 0.9104
    table = pq.read_table(output)
    assert table["id"].to_pylist() == list(range(10000))
    expected = predict(artifact.weights, artifact.biases, mnist.test_images)
    assert np.array_equal(table["label"].to_numpy(), expected)
    # Bounded: the survivor took over at once, not after some long timeout.
    assert time.monotonic() - killed_at < 60
    assert time.monotonic() - started < 90


def test_replicas_must_serve_one_model_and_the_tightest_limits_hold(
    replicas: list[RunningServer], model_onnx: Path, mnist: Dataset, tmp_path: Path
) -> None:
    weights, biases = random_classifier(10, *mnist.image_shape)
    other = build_classifier(tmp_path / "other.onnx", weights, biases)
    small = start_server(model_onnx, "--max-batch", "100", tmp_dir=tmp_path)
    stranger = start_server(other, tmp_dir=tmp_path)
    try:
        for first, second in ((replicas[0], small), (small, replicas[0])):
            with Client(f"{first.target},{second.target}") as client:
                assert client.model_info().max_batch_size == 100  # whichever is listed first
                assert len(client.predict(mnist.test_images[:700]).labels) == 700
        with (
            Client(f"{replicas[0].target},{stranger.target}") as client,
            pytest.raises(ClientError, match=r"serve different models as 'scratchnet' version 1 "
                          r"\(.*: artifact [0-9a-f]{12}, 28x28 images, 10 classes; .*: 28x28 "
                          r"images, 10 classes\): expected the same model on every replica")
            as raised,
        ):  # fmt: skip
            client.model_info()
        assert raised.value.failure
    finally:
        assert small.stop() == 0 and stranger.stop() == 0
