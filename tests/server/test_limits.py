"""The server's limits on real processes, each tightened on a server of its own: stalled uploads
and idle streams closed on time while health and other calls go on, a cancelled call that stops
computing, the memory budget, deadlines, calls and streams at once, and the HTTP/2 connection
limits (idle, age, ping strikes) — each seen as the client sees it, which is what the limits
table of docs/server.md says.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import re
import signal
import socket
import statistics
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from grpc_health.v1.health_pb2 import HealthCheckRequest, HealthCheckResponse
from grpc_health.v1.health_pb2_grpc import HealthStub

from scratchnet.api.inference import open_inference_grpc_pb2 as oip
from scratchnet.api.inference.open_inference_grpc_pb2_grpc import GRPCInferenceServiceStub
from scratchnet.api.v1 import classifier_pb2 as v1
from scratchnet.api.v1.classifier_pb2_grpc import ClassifierStub
from scratchnet.artifact import Artifact
from scratchnet.datasets import Dataset
from scratchnet.forward import predict
from tests.conftest import RunningServer, start_server
from tests.server.foreign_models import two_inputs
from tests.server.http2 import Connection
from tests.server.workers import closed, runs_at_gate, start_gated_server, uint8_request, until

SERVING = HealthCheckResponse.SERVING
PREDICT = "/scratchnet.v1.Classifier/Predict"
MODEL_INFER = "/inference.GRPCInferenceService/ModelInfer"
# grpc's HTTP/2 GOAWAY error codes.
NO_ERROR, ENHANCE_YOUR_CALM = 0, 11


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process `pid` so far (/proc/PID/stat utime + stime)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100  # clock ticks: 100 per second on Linux


def timed_health_checks(channel: grpc.Channel, count: int = 3) -> list[float]:
    """Seconds each of `count` health checks took (each must say SERVING)."""
    health = HealthStub(channel)
    seconds = []
    for _ in range(count):
        started = time.monotonic()
        assert health.Check(HealthCheckRequest(), timeout=10).status == SERVING
        seconds.append(time.monotonic() - started)
    return seconds


def own_connection(target: str) -> grpc.Channel:
    """A channel with a connection of its own (grpc shares one between channels to the same
    target by default)."""
    return grpc.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)])


def v2_request(images: np.ndarray) -> oip.ModelInferRequest:
    request = oip.ModelInferRequest(model_name="scratchnet")
    request.inputs.add(name="images", datatype="UINT8", shape=images.shape)
    request.raw_input_contents.append(images.tobytes())
    return request


# --- stalled uploads and idle streams --------------------------------------------------------
UPLOAD_SECONDS = 1.0
IDLE_SECONDS = 1.0
# How late a closing may come on a busy machine (the server checks on time; the process may not
# be scheduled at once).
LATE = 1.5


@pytest.fixture(scope="module")
def impatient(
    model_onnx: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    """A server that waits 1 s for an upload and 1 s for a stream's next request."""
    running = start_server(
        model_onnx,
        "--upload-seconds", str(UPLOAD_SECONDS), "--stream-idle-seconds", str(IDLE_SECONDS),
        tmp_dir=tmp_path_factory.mktemp("impatient"), http=True,
    )  # fmt: skip
    yield running
    assert running.stop() == 0


class IdleStream:
    """A stream that sends `first` (if any), then nothing, until the server ends it."""

    def __init__(self, channel: grpc.Channel, api: str, first: Any = None) -> None:
        self.release = threading.Event()
        self.opened = time.monotonic()
        self.answers = 0
        self.error: grpc.RpcError | None = None
        self.ended_after = 0.0
        if api == "v1":
            call = ClassifierStub(channel).PredictStream(self._requests(first), timeout=60)
        else:
            call = GRPCInferenceServiceStub(channel).ModelStreamInfer(
                self._requests(first), timeout=60
            )
        self._thread = threading.Thread(target=self._consume, args=(call,), daemon=True)
        self._thread.start()

    def _requests(self, first: Any) -> Iterator[Any]:
        if first is not None:
            yield first
        self.release.wait(60)  # grpc's thread waits here for the next request

    def _consume(self, call: Any) -> None:
        try:
            for _ in call:
                self.answers += 1
                self.opened = time.monotonic()  # idle from the last answer on
        except grpc.RpcError as error:
            self.error = error
        self.ended_after = time.monotonic() - self.opened

    def wait(self, seconds: float) -> None:
        self._thread.join(seconds)
        self.release.set()


def test_idle_streams_and_stalled_uploads_block_nothing_and_are_closed_on_time(
    impatient: RunningServer, mnist: Dataset
) -> None:
    images = mnist.test_images[:2]
    first = {"v1": uint8_request(images), "v2": v2_request(images)}
    with grpc.insecure_channel(impatient.target) as channel:
        timed_health_checks(channel, 1)  # connected before anything is timed
        # 8 idle streams: of each API, two that never send and two idle after one answer.
        streams = [
            IdleStream(channel, api, first[api] if answered else None)
            for api in ("v1", "v2")
            for answered in (False, False, True, True)
        ]
        # 8 unary calls whose message never arrives, each promising 1000 bytes and sending 10.
        uploads = Connection.open(impatient.host, impatient.port)
        stalled = [uploads.start_call(path, 1000, b"x" * 10) for path in (PREDICT, MODEL_INFER) * 4]
        until(lambda: sum(stream.answers for stream in streams) == 4)
        # With all 16 open, health answers at once and so does an inference call.
        seconds = timed_health_checks(channel)
        assert statistics.median(seconds) < 0.1, seconds
        reply = ClassifierStub(channel).Predict(uint8_request(images), timeout=10)
        assert len(reply.labels) == 2
        uploads.read(UPLOAD_SECONDS + LATE + 1, until=lambda: len(uploads.ended) == len(stalled))
        for stream in streams:
            stream.wait(IDLE_SECONDS + LATE + 1)
    uploads.close()
    assert sorted(uploads.ended) == sorted(stalled)
    for ended in uploads.ended.values():
        assert ended.status == grpc.StatusCode.DEADLINE_EXCEEDED.value[0], ended
        assert "did not arrive within 1 s (--upload-seconds)" in ended.message
        assert UPLOAD_SECONDS * 0.9 < ended.after < UPLOAD_SECONDS + LATE, ended
    for stream in streams:
        assert stream.error is not None and stream.error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert "(--stream-idle-seconds): the stream is closed" in str(stream.error.details())
        assert IDLE_SECONDS * 0.9 < stream.ended_after < IDLE_SECONDS + LATE, stream.ended_after
    # The access log times a refused call from its start, as the client waited.
    logged = [line for line in impatient.stderr().splitlines() if "did not arrive within" in line]
    assert len(logged) >= len(stalled), logged
    for line in logged:
        duration = re.search(r"duration_ms=([0-9.]+)", line)
        assert duration is not None and float(duration[1]) >= UPLOAD_SECONDS * 900, line


def test_an_http_request_head_must_come_within_the_upload_limit_and_64_kib(
    impatient: RunningServer,
) -> None:
    # Before any token is looked at: a slow or endless head would hold its connection for ever.
    assert impatient.http_port is not None
    address = (impatient.host, impatient.http_port)
    with socket.create_connection(address, timeout=10) as slow:
        slow.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n")  # and never the rest
        started = time.monotonic()
        assert slow.recv(1024) == b""  # closed, with nothing to answer
        assert time.monotonic() - started < UPLOAD_SECONDS + LATE
    request = b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70_000
    # Unfinished, and whole in one write: a head that ends within one read is counted too.
    for sent in (request, request + b"\r\nConnection: close\r\n\r\n"):
        with socket.create_connection(address, timeout=10) as large:
            large.sendall(sent)
            answer = b""
            while chunk := large.recv(65536):
                answer += chunk
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 431 "), head
        assert json.loads(body) == {
            "error": "the request's line and headers take over 65536 bytes, the most this server "
            "reads"
        }
    with socket.create_connection(address, timeout=10) as under:  # just under: answered
        padding = b"a" * (65_536 - 200)
        under.sendall(
            b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nX-Pad: " + padding
            + b"\r\nConnection: close\r\n\r\n"
        )  # fmt: skip
        assert under.recv(1024).startswith(b"HTTP/1.1 200 ")
    with socket.create_connection(address, timeout=10) as fine:
        fine.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert fine.recv(1024).startswith(b"HTTP/1.1 200 ")


def test_without_an_upload_limit_a_stalled_upload_stays_open_and_blocks_nothing(
    model_onnx: Path, tmp_path: Path, mnist: Dataset
) -> None:
    """--upload-seconds 0: the same answers and refusals; a stalled upload is no longer closed,
    and still blocks nothing."""
    server = start_server(model_onnx, "--upload-seconds", "0", tmp_dir=tmp_path)
    images = mnist.test_images[:2]
    try:
        with grpc.insecure_channel(server.target) as channel:
            uploads = Connection.open(server.host, server.port)
            stalled = uploads.start_call(MODEL_INFER, 1000, b"x" * 10)
            reply = ClassifierStub(channel).Predict(uint8_request(images), timeout=10)
            answer = GRPCInferenceServiceStub(channel).ModelInfer(v2_request(images), timeout=10)
            names = [output.name for output in answer.outputs]
            raw = answer.raw_output_contents[names.index("label")]
            assert list(reply.labels) == np.frombuffer(raw, np.int64).tolist()
            assert len(reply.labels) == 2
            with pytest.raises(grpc.RpcError) as garbage:
                channel.unary_unary(MODEL_INFER)(b"\xff\xff\xff", timeout=10)
            assert garbage.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "is not a valid protobuf message" in str(garbage.value.details())
            uploads.read(UPLOAD_SECONDS + LATE, until=lambda: bool(uploads.ended))
            assert stalled not in uploads.ended
            assert statistics.median(timed_health_checks(channel)) < 0.1
        uploads.close()
    finally:
        assert server.stop() == 0


# --- cancellation --------------------------------------------------------------------------
# `python -m server` that notes in the file named by its first argument when a model run starts
# computing, so that a test can cancel a call while the model runs rather than while its 118 MB
# are still being received and parsed (which happens on the event loop, all at once).
WATCHED_RUNS = """
import sys
from pathlib import Path
from server import scheduling
started = Path(sys.argv.pop(1))
run = scheduling.Runner._sliced
def noted(self, job, stop):
    with open(started, "a") as log:
        log.write(f"{job.items}\\n")
    return run(self, job, stop)
scheduling.Runner._sliced = noted
from server.__main__ import main
main()
"""
HUGE = 150_000  # images: uncancelled, well over half a second of CPU even on a fast machine


def test_a_cancelled_150000_image_call_stops_computing_and_the_next_call_is_not_delayed(
    model_onnx_uint8: Path, mnist: Dataset, artifact: Artifact, tmp_path: Path
) -> None:
    started = tmp_path / "runs-started"
    server = start_server(
        model_onnx_uint8, "--max-batch", str(HUGE), "--max-message-mb", "256", tmp_dir=tmp_path,
        python_args=("-c", WATCHED_RUNS, str(started)),
    )  # fmt: skip
    images = np.resize(mnist.test_images, (HUGE, *mnist.test_images.shape[1:]))
    huge = uint8_request(images).SerializeToString()  # sent as bytes: no serialising to time
    one = uint8_request(mnist.test_images[:1])
    options = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]
    try:
        with grpc.insecure_channel(server.target, options=options) as channel:
            stub = ClassifierStub(channel)
            raw_predict = channel.unary_unary(PREDICT, None, v1.PredictResponse.FromString)
            stub.Predict(one, timeout=10)
            # Uncancelled, the call computes for a while: what a cancel must save.
            before = cpu_seconds(server.pid)
            reply = raw_predict(huge, timeout=120)
            whole = cpu_seconds(server.pid) - before
            assert np.array_equal(reply.labels, predict(artifact.weights, artifact.biases, images))
            started.write_text("")
            call = raw_predict.future(huge, timeout=120)
            until(lambda: started.read_text() != "")
            time.sleep(0.1)
            assert not call.done()
            cancelled_at = time.monotonic()
            at_cancel = cpu_seconds(server.pid)
            call.cancel()
            next_started = time.monotonic()
            assert len(stub.Predict(one, timeout=10).labels) == 1
            next_seconds = time.monotonic() - next_started
            time.sleep(max(0.0, cancelled_at + 0.05 - time.monotonic()))
            after_50ms = cpu_seconds(server.pid)
            time.sleep(0.3)
            after_350ms = cpu_seconds(server.pid)
            stats = GRPCInferenceServiceStub(channel).ModelStatistics(
                oip.ModelStatisticsRequest(name="scratchnet"), timeout=10
            )
        # The model's run outlasts the window watched below (cancelled 0.1 s in, idle from 0.05 s
        # to 0.35 s after), so an uncancelled run would show there...
        assert whole > 0.45, whole
        # ...and past the first 50 ms after the cancel the server is idle (a clock tick or two
        # for the 1-image call and the poller), whatever the machine.
        assert after_350ms - after_50ms <= 0.02, (whole, after_50ms - at_cancel, after_350ms)
        assert next_seconds < 0.1, next_seconds
        [model] = stats.model_stats
        assert model.inference_stats.fail.count == 1  # the cancelled call, counted as failed
        assert model.inference_stats.success.count == 3
    finally:
        assert server.stop() == 0


def test_an_http_client_that_leaves_mid_run_cancels_it(
    model_onnx_uint8: Path, mnist: Dataset, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    server = start_gated_server(model_onnx_uint8, gate, tmp_dir=tmp_path, http=True)
    images = mnist.test_images[:200]  # 157 KB: above what is answered before a watch pays
    tensor = {"name": "images", "shape": list(images.shape), "datatype": "UINT8"}
    tensor["parameters"] = {"binary_data_size": images.nbytes}
    header = json.dumps({"inputs": [tensor]}).encode()
    body = header + images.tobytes()
    try:
        with closed(gate):
            with socket.create_connection(("127.0.0.1", server.http_port)) as client:
                client.sendall(
                    b"POST /v2/models/scratchnet/infer HTTP/1.1\r\nHost: t\r\n"
                    b"Inference-Header-Content-Length: %d\r\nContent-Length: %d\r\n\r\n"
                    % (len(header), len(body))
                    + body
                )
                until(lambda: runs_at_gate(gate) == 1)
            # Gone while its run waits: the call ends cancelled, the gate still closed.
            until(lambda: "api=http" in server.stderr() and "status=CANCELLED" in server.stderr())
    finally:
        assert server.stop() == 0


# --- the memory budget and deadlines ---------------------------------------------------------
@pytest.fixture(scope="module")
def budgeted(model_onnx: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A gated server (runs wait while its gate exists) with a 1 MiB budget for the inputs in
    flight and a 2 s deadline of its own."""
    folder = tmp_path_factory.mktemp("budgeted")
    gate = folder / "gate"
    running = start_gated_server(
        model_onnx, gate, "--max-inflight-mb", "1", "--request-timeout", "2", tmp_dir=folder
    )
    yield running, gate
    gate.unlink(missing_ok=True)
    assert running.stop() == 0


def test_the_memory_budget_is_checked_from_the_declared_shape_before_any_decoding(
    budgeted: Any, mnist: Dataset
) -> None:
    server, gate = budgeted
    with grpc.insecure_channel(server.target) as channel:
        stub = ClassifierStub(channel)
        # 700 float32 images declare 2.2 MB, over the budget, but only 10 bytes came: a shape
        # promising more than was sent is the client's mistake, which no retry would mend.
        tensor = v1.Tensor(dtype=v1.DATA_TYPE_FLOAT32, shape=[700, 28, 28], data=b"0123456789")
        with pytest.raises(grpc.RpcError) as raised:
            stub.Predict(v1.PredictRequest(images=tensor), timeout=10)
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "expected 2195200 bytes for shape [700,28,28]" in str(raised.value.details())
        # 200 uint8 images for this float32 model count as the float32 they become: 627,200
        # bytes. Two of them do not fit: the second is refused while the first holds its share
        # of the budget (the first waits at the gate), and served once the first is done.
        part = mnist.test_images[:200]
        with futures.ThreadPoolExecutor(1) as pool, closed(gate):
            first = pool.submit(stub.Predict, uint8_request(part), timeout=30)
            until(lambda: runs_at_gate(gate) >= 1)
            with pytest.raises(grpc.RpcError) as raised:
                stub.Predict(uint8_request(part), timeout=10)
            assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert (
                "take 627,200 bytes and 627,200 of the 1,048,576 allowed (--max-inflight-mb) are "
                "in use"
            ) in str(raised.value.details())
        assert len(first.result(timeout=30).labels) == 200
        assert len(stub.Predict(uint8_request(part), timeout=30).labels) == 200


def test_the_clients_deadline_or_else_the_servers_request_timeout_ends_a_call(
    budgeted: Any, mnist: Dataset
) -> None:
    server, gate = budgeted
    with grpc.insecure_channel(server.target) as channel:
        stub = ClassifierStub(channel)
        with closed(gate):
            for timeout, seconds, details in [
                # The client's, shorter: in grpc's words, or the server's when they come first.
                (0.3, 0.3, ("Deadline Exceeded", "the call's deadline passed")),
                (30, 2.0, ("took longer than the server allows (--request-timeout)",)),
            ]:
                began = time.monotonic()
                with pytest.raises(grpc.RpcError) as raised:
                    stub.Predict(uint8_request(mnist.test_images[:3]), timeout=timeout)
                took = time.monotonic() - began
                assert raised.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
                assert any(text in str(raised.value.details()) for text in details)
                assert seconds * 0.9 < took < seconds + LATE, took
        assert len(stub.Predict(uint8_request(mnist.test_images[:3]), timeout=30).labels) == 3


# --- calls and streams at once, connections ----------------------------------------------------
@pytest.fixture(scope="module")
def narrow(model_onnx: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A server that takes 4 calls at once, 2 per connection, and closes connections idle for
    0.3 s."""
    running = start_server(
        model_onnx,
        "--max-concurrent-rpcs", "4", "--grpc-max-concurrent-streams", "2",
        "--grpc-max-connection-idle", "300",
        tmp_dir=tmp_path_factory.mktemp("narrow"),
    )  # fmt: skip
    yield running
    assert running.stop() == 0


def test_calls_past_max_concurrent_rpcs_are_refused_and_streams_past_a_connections_limit_wait(
    narrow: RunningServer, mnist: Dataset
) -> None:
    one = uint8_request(mnist.test_images[:1])
    with contextlib.ExitStack() as stack:
        channels = [stack.enter_context(own_connection(narrow.target)) for _ in range(3)]
        # Two idle streams fill the first connection: a third call on it waits for a stream...
        streams = [IdleStream(channels[0], "v1", one) for _ in range(2)]
        until(lambda: all(stream.answers == 1 for stream in streams))
        waiting = ClassifierStub(channels[0]).Predict.future(one, timeout=30)
        time.sleep(0.3)
        assert not waiting.done()
        # ...while another connection is served; two more streams there make 4 calls at once.
        streams += [IdleStream(channels[1], "v1", one) for _ in range(2)]
        until(lambda: all(stream.answers == 1 for stream in streams))
        with pytest.raises(grpc.RpcError) as raised:
            ClassifierStub(channels[2]).Predict(one, timeout=10)
        assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert raised.value.details() == "Concurrent RPC limit exceeded!"
        for stream in streams:
            stream.release.set()  # the streams end; the waiting call goes through
        assert len(waiting.result(timeout=30).labels) == 1
        assert len(ClassifierStub(channels[2]).Predict(one, timeout=10).labels) == 1


def test_an_idle_connection_and_one_that_pings_too_often_are_sent_away(
    narrow: RunningServer,
) -> None:
    idle = Connection.open(narrow.host, narrow.port)
    idle.read(3, until=lambda: idle.goaway is not None)
    assert idle.goaway is not None and idle.goaway.additional_data == b"connection idle"
    assert 0.25 < idle.goaway_after < 0.3 + LATE
    # More than 2 pings (--grpc-http2-max-ping-strikes) closer than 5 minutes apart
    # (--grpc-http2-min-recv-ping-interval-without-data) while no data flows.
    pinging = Connection.open(narrow.host, narrow.port)
    pinging.start_call(MODEL_INFER, 1000)
    for _ in range(10):
        pinging.ping()
        pinging.read(0.05, until=lambda: pinging.goaway is not None)
    assert pinging.goaway is not None
    assert (pinging.goaway.error_code, pinging.goaway.additional_data) == (
        ENHANCE_YOUR_CALM,
        b"too_many_pings",
    )
    idle.close()
    pinging.close()


def test_a_connection_past_its_age_is_sent_away_and_closed_after_the_grace(
    model_onnx: Path, tmp_path: Path
) -> None:
    server = start_server(
        model_onnx, "--grpc-max-connection-age", "500", "--grpc-max-connection-age-grace", "500",
        tmp_dir=tmp_path,
    )  # fmt: skip
    try:
        connection = Connection.open(server.host, server.port)
        connection.start_call(MODEL_INFER, 1000)  # a call that keeps the connection busy
        connection.read(5, until=lambda: connection.closed_after is not None)
        connection.close()
    finally:
        assert server.stop() == 0
    assert connection.goaway is not None
    assert (connection.goaway.error_code, connection.goaway.additional_data) == (
        NO_ERROR,
        b"max_age",
    )
    # gRPC spreads connection ages by ±10 %.
    assert 0.45 < connection.goaway_after < 0.55 + LATE, connection.goaway_after
    assert connection.closed_after is not None
    assert 0.9 < connection.closed_after < 1.1 + LATE, connection.closed_after


# --- the drain ------------------------------------------------------------------------------
def test_a_second_signal_ends_the_drain_at_once(
    model_onnx: Path, mnist: Dataset, tmp_path: Path
) -> None:
    with (
        start_server(model_onnx, "--grace-seconds", "30", tmp_dir=tmp_path) as server,
        grpc.insecure_channel(server.target) as channel,
    ):
        stream = IdleStream(channel, "v1", uint8_request(mnist.test_images[:1]))
        until(lambda: stream.answers == 1)
        server.process.send_signal(signal.SIGTERM)
        until(lambda: "shutting down" in server.stderr())
        time.sleep(0.2)
        assert server.process.poll() is None  # the open stream holds the drain
        began = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(timeout=10) == 0
        assert time.monotonic() - began < 5
        stream.wait(10)
    assert stream.error is not None
    assert "second signal: cancelling the 1 calls still open" in server.stderr()


def test_an_http_response_over_the_message_limit_is_refused_as_over_grpc(tmp_path: Path) -> None:
    """--max-message-mb bounds what is sent as well as what is read: a JSON answer over it is a
    413 naming the limit and the way out (binary outputs), which fit and are answered."""
    model = two_inputs(tmp_path / "pair.onnx")
    server = start_server(
        model,
        "--model-name",
        "pair",
        "--max-message-mb",
        "1",
        "--max-batch",
        "100000",
        tmp_dir=tmp_path,
        http=True,
    )
    items = 40_000  # 960,000 bytes in; about 4 MB of JSON numbers out
    data = np.random.default_rng(0).random((2, items, 3)).astype(np.float32)
    try:
        for binary_outputs, status in ((False, 413), (True, 200)):
            head = json.dumps({
                "inputs": [
                    {"name": name, "shape": [items, 3], "datatype": "FP32",
                     "parameters": {"binary_data_size": items * 12}}
                    for name in ("a", "b")
                ],
                "parameters": {"binary_data_output": binary_outputs},
            }).encode()  # fmt: skip
            connection = http.client.HTTPConnection(server.host, server.http_port, timeout=60)
            connection.request(
                "POST",
                "/v2/models/pair/infer",
                body=head + data.tobytes(),
                headers={"Inference-Header-Content-Length": str(len(head))},
            )
            reply = connection.getresponse()
            body = reply.read()
            connection.close()
            assert reply.status == status, body[:300]
            if status == 413:
                message = json.loads(body)["error"]
                assert re.fullmatch(
                    r"the response of model 'pair' has \d+ bytes, over the server's limit of "
                    r"1048576 \(--max-message-mb\): ask for fewer outputs, a smaller batch, or "
                    r"binary outputs \(binary_data_output\)",
                    message,
                ), message
        assert "Traceback" not in server.stderr()
    finally:
        server.stop()
