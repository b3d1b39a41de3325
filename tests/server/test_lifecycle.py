"""End to end: health, reflection, configuration and shutdown of the real server process."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from google.protobuf import descriptor_pool, message_factory
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from scratchnet.api.v1 import classifier_pb2 as pb
from scratchnet.api.v1 import classifier_pb2_grpc
from scratchnet.datasets import Dataset
from tests.conftest import RunningServer, assert_one_line_error, run_module, start_server
from tests.server.onnx_models import build_classifier, numpy_scores, random_classifier
from tests.server.workers import start_loads_gated_server

SERVICES = ("", "scratchnet.v1.Classifier", "inference.GRPCInferenceService")
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def _request(images: np.ndarray, request_id: str = "") -> pb.PredictRequest:
    tensor = pb.Tensor(dtype=pb.DATA_TYPE_UINT8, shape=images.shape, data=images.tobytes())
    return pb.PredictRequest(images=tensor, request_id=request_id)


def test_health_reports_the_server_and_each_service_serving(server: RunningServer) -> None:
    with grpc.insecure_channel(server.target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in SERVICES:
            check = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
            assert check.status == SERVING, service
        with pytest.raises(grpc.RpcError) as raised:
            health.Check(health_pb2.HealthCheckRequest(service="no.Such"), timeout=10)
        assert raised.value.code() == grpc.StatusCode.NOT_FOUND


def test_reflection_lists_every_service_and_describes_them_without_proto_files(
    server: RunningServer,
) -> None:
    with grpc.insecure_channel(server.target) as channel:
        database = ProtoReflectionDescriptorDatabase(channel)
        assert set(database.get_services()) == {
            "scratchnet.v1.Classifier",
            "inference.GRPCInferenceService",
            "grpc.health.v1.Health",
            "grpc.reflection.v1alpha.ServerReflection",
        }
        pool = descriptor_pool.DescriptorPool(database)
        predict = pool.FindServiceByName("scratchnet.v1.Classifier").methods_by_name["Predict"]
        assert predict.input_type.full_name == "scratchnet.v1.PredictRequest"
        infer = pool.FindServiceByName("inference.GRPCInferenceService").methods_by_name[
            "ModelInfer"
        ]
        assert infer.output_type.full_name == "inference.ModelInferResponse"
        # A call built only from reflected descriptors, as grpcurl makes one.
        info_method = pool.FindServiceByName("scratchnet.v1.Classifier").methods_by_name[
            "GetModelInfo"
        ]
        request_class = message_factory.GetMessageClass(info_method.input_type)
        response_class = message_factory.GetMessageClass(info_method.output_type)
        call = channel.unary_unary(
            "/scratchnet.v1.Classifier/GetModelInfo",
            request_serializer=request_class.SerializeToString,
            response_deserializer=response_class.FromString,
        )
        assert call(request_class(), timeout=10).model_name == "scratchnet"


def _start_gated_server(model: Path, gate: Path, tmp_path: Path, *args: str) -> RunningServer:
    """Start the server with its model loading held back until `gate` exists."""
    return start_loads_gated_server(
        model, gate, *args, tmp_dir=tmp_path, env={"GRPC_VERBOSITY": "NONE"}
    )


def test_while_the_model_loads_health_is_not_serving_and_calls_unavailable(
    model_onnx: Path, mnist: Dataset, tmp_path: Path
) -> None:
    gate = tmp_path / "load-now"
    server = _start_gated_server(model_onnx, gate, tmp_path)
    try:
        with grpc.insecure_channel(server.target) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            for service in SERVICES:
                check = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
                assert check.status == NOT_SERVING, service
            stub = classifier_pb2_grpc.ClassifierStub(channel)
            for call, message in [
                (stub.Predict, _request(mnist.test_images[:1])),
                (stub.GetModelInfo, pb.GetModelInfoRequest()),
            ]:
                with pytest.raises(grpc.RpcError) as raised:
                    call(message, timeout=10)
                assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
                assert raised.value.details() == (
                    "model 'scratchnet' is still loading, retry shortly"
                )
            watch = health.Watch(health_pb2.HealthCheckRequest(service=""), timeout=60)
            assert next(watch).status == NOT_SERVING
            gate.touch()
            assert next(watch).status == SERVING
            watch.cancel()
            assert len(stub.Predict(_request(mnist.test_images[:3]), timeout=10).labels) == 3
    finally:
        assert server.stop() == 0


def test_sigterm_while_the_model_loads_never_serves_and_exits_0(
    model_onnx: Path, tmp_path: Path
) -> None:
    gate = tmp_path / "load-now"
    with _start_gated_server(model_onnx, gate, tmp_path, "--grace-seconds", "1") as server:
        with grpc.insecure_channel(server.target) as channel:
            watch = health_pb2_grpc.HealthStub(channel).Watch(
                health_pb2.HealthCheckRequest(service=""), timeout=60
            )
            assert next(watch).status == NOT_SERVING
            server.process.send_signal(signal.SIGTERM)
            gate.touch()
            # The watch sees every status the server reports, until the grace period ends it.
            statuses = []
            with contextlib.suppress(grpc.RpcError):
                for response in watch:
                    statuses.append(response.status)
        assert SERVING not in statuses
        assert server.process.wait(timeout=30) == 0


def test_sigterm_turns_health_not_serving_and_drains_a_call_in_flight(
    model_onnx: Path, mnist: Dataset, tmp_path: Path
) -> None:
    with start_server(model_onnx, "--grace-seconds", "30", tmp_dir=tmp_path) as server:
        batches = np.array_split(mnist.test_images[:2000], 40)
        first_answered = threading.Event()
        shutdown_seen = threading.Event()
        responses: list[pb.PredictResponse] = []

        def slow_requests() -> Iterator[pb.PredictRequest]:
            # One request before the shutdown, the other 39 once it has certainly begun: the call
            # is in flight when SIGTERM arrives, and keeps being served after.
            for index, batch in enumerate(batches):
                if index == 1:
                    shutdown_seen.wait(30)
                yield _request(batch, str(index))

        with grpc.insecure_channel(server.target) as channel:
            watch = health_pb2_grpc.HealthStub(channel).Watch(
                health_pb2.HealthCheckRequest(service=""), timeout=60
            )
            assert next(watch).status == SERVING
            stub = classifier_pb2_grpc.ClassifierStub(channel)

            def consume() -> None:
                for response in stub.PredictStream(slow_requests(), timeout=60):
                    responses.append(response)
                    first_answered.set()

            consumer = threading.Thread(target=consume)
            consumer.start()
            assert first_answered.wait(30)
            server.process.send_signal(signal.SIGTERM)
            assert next(watch).status == NOT_SERVING
            watch.cancel()
            with pytest.raises(grpc.RpcError) as raised:
                stub.Predict(_request(batches[0]), timeout=10)
            assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
            assert consumer.is_alive() and len(responses) == 1
            shutdown_seen.set()
            consumer.join(60)
            assert not consumer.is_alive()
        assert [response.request_id for response in responses] == [str(i) for i in range(40)]
        assert sum(len(response.labels) for response in responses) == 2000
        assert server.process.wait(timeout=30) == 0
        assert "shutting down" in server.stderr()


def test_calls_still_running_when_the_grace_period_ends_are_cancelled(
    model_onnx: Path, mnist: Dataset, tmp_path: Path
) -> None:
    with start_server(model_onnx, "--grace-seconds", "0.5", tmp_dir=tmp_path) as server:
        started = threading.Event()

        def endless() -> Iterator[pb.PredictRequest]:
            while True:
                yield _request(mnist.test_images[:1])
                started.set()
                time.sleep(0.05)

        with grpc.insecure_channel(server.target) as channel:
            stream = classifier_pb2_grpc.ClassifierStub(channel).PredictStream(
                endless(), timeout=60
            )
            next(stream)
            assert started.wait(30)
            began = time.monotonic()
            server.process.send_signal(signal.SIGTERM)
            with pytest.raises(grpc.RpcError) as raised:
                for _ in stream:
                    pass
            assert raised.value.code() in (grpc.StatusCode.CANCELLED, grpc.StatusCode.UNAVAILABLE)
        assert server.process.wait(timeout=30) == 0
        # Far below the default grace period (10 s): the flag's 0.5 s was honoured.
        assert time.monotonic() - began < 8


def test_environment_variables_configure_the_server_and_flags_win(
    model_onnx: Path, tmp_path: Path
) -> None:
    env = {
        "SCRATCHNET_MODEL_NAME": "digits",
        "SCRATCHNET_MAX_BATCH": "3",
        "SCRATCHNET_MAX_MESSAGE_MB": "2",
        "SCRATCHNET_LOG_LEVEL": "WARNING",
    }
    with start_server(model_onnx, "--max-batch", "5", env=env, tmp_dir=tmp_path) as server:
        with grpc.insecure_channel(server.target) as channel:
            info = classifier_pb2_grpc.ClassifierStub(channel).GetModelInfo(
                pb.GetModelInfoRequest()
            )
        assert (info.model_name, info.max_batch_size) == ("digits", 5)
        assert info.max_message_bytes == 2 * 1024 * 1024
        assert server.stop(signal.SIGINT) == 0
        assert "INFO" not in server.stderr()  # log level warning


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        (["--port", "http"], {}, "argument --port: expected an integer, got 'http'"),
        (["--port", "70000"], {}, "argument --port: expected an integer between 0 and 65535"),
        (["--max-batch", "0"], {}, "argument --max-batch: expected an integer >= 1, got 0"),
        (["--log-level", "loud"], {}, "argument --log-level: expected one of debug, info"),
        (["--grace-seconds", "-1"], {}, "argument --grace-seconds: expected a number of seconds"),
        (["--max-message-mb", "4096"], {}, "expected an integer between 1 and 2047"),
        (["--frobnicate"], {}, "unrecognized arguments: --frobnicate"),
        (
            [],
            {"SCRATCHNET_PORT": "abc"},
            "environment variable SCRATCHNET_PORT: expected an integer, got 'abc'",
        ),
        (
            [],
            {"SCRATCHNET_THREADS": "-2"},
            "SCRATCHNET_THREADS: expected an integer between 0 and 256, got -2",
        ),
    ],
)
def test_bad_flag_or_environment_value_is_one_line_and_exit_2(
    args: list[str], env: dict[str, str], expected: str
) -> None:
    result = run_module("server", *args, check=False, env=env, timeout=60)
    assert_one_line_error(result, "python -m server", expected)


def test_a_port_in_use_is_one_line_and_a_non_zero_exit(
    server: RunningServer, model_onnx: Path
) -> None:
    result = run_module(
        "server", "--model", model_onnx, "--port", str(server.port), check=False, timeout=60
    )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"python -m server: error: cannot listen on 127.0.0.1:{server.port}: address in use or "
        "not available"
    )


def test_sighup_reloads_a_changed_model_file_and_keeps_serving_through_a_bad_one(
    tmp_path: Path,
) -> None:
    model = tmp_path / "model.onnx"
    images = np.random.default_rng(0).integers(0, 256, size=(6, 4, 5), dtype=np.uint8)
    seeds = {}
    for seed in (1, 2):
        weights, biases = random_classifier(3, 4, 5, seed=seed)
        build_classifier(tmp_path / f"seed{seed}.onnx", weights, biases, model_version=seed)
        seeds[seed] = numpy_scores(weights, biases, images).argmax(axis=1).tolist()
    shutil.copy(tmp_path / "seed1.onnx", model)
    server = start_server(model, tmp_dir=tmp_path)
    try:
        with grpc.insecure_channel(server.target) as channel:
            stub = classifier_pb2_grpc.ClassifierStub(channel)

            def answer() -> tuple[str, list[int]]:
                response = stub.Predict(_request(images), timeout=10)
                return response.model_version, list(response.labels)

            assert answer() == ("1", seeds[1])
            shutil.copy(tmp_path / "seed2.onnx", tmp_path / "next.onnx")
            os.replace(tmp_path / "next.onnx", model)
            server.process.send_signal(signal.SIGHUP)
            deadline = time.monotonic() + 20
            while answer() != ("2", seeds[2]):
                assert time.monotonic() < deadline, "SIGHUP did not reload the model"
                time.sleep(0.05)
            model.write_bytes(b"half written")
            server.process.send_signal(signal.SIGHUP)
            deadline = time.monotonic() + 20
            while (
                "half written" not in server.stderr() and "cannot be loaded" not in server.stderr()
            ):
                assert time.monotonic() < deadline, "SIGHUP did not try the new file"
                time.sleep(0.05)
            assert answer() == ("2", seeds[2])  # the model loaded before keeps serving
            assert server.process.poll() is None
    finally:
        assert server.stop() == 0


def test_a_server_with_no_model_says_so(tmp_path: Path) -> None:
    # Ready and serving nothing: without a warning an operator would see only silence.
    empty = tmp_path / "repository"
    empty.mkdir()
    with start_server(
        empty, "--model-control-mode", "poll", tmp_dir=tmp_path, model_flag="--model-repository"
    ) as server:
        until_logged = time.monotonic() + 10
        while "serving no model" not in server.stderr() and time.monotonic() < until_logged:
            time.sleep(0.05)
        assert server.stop() == 0
    (warning,) = [line for line in server.stderr().splitlines() if "serving no model" in line]
    assert warning.endswith(
        f"WARNING server.app: serving no model: {empty} holds none; add NAME/VERSION/model.onnx "
        "folders (polled every 5 s)"
    )
