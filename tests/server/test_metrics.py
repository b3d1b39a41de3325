"""server.metrics: the request metrics and the gauges in process, then the real server's endpoint
scraped during load and checked against the calls made, its gauges while calls wait, TLS with
client certificates and tokens, and its one-line errors."""

from __future__ import annotations

import asyncio
import http.client
import socket
import ssl
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import grpc
import pytest
from prometheus_client import CollectorRegistry, Gauge, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from scratchnet.errors import InvalidArgument
from server.dataplane import InferRequest, Outcome
from server.metrics import RequestMetrics, ServerState, listen, metrics_registry
from server.statistics import Timing
from tests.certificates import Authority
from tests.conftest import REPO, RunningServer, assert_one_line_error, run_module, start_server
from tests.server.calls import APIS, CALL_SECONDS, Caller, images, v1_request
from tests.server.conftest import classify, infer, plane_with, tensor
from tests.server.scraping import Samples, names, parse, scrape, value
from tests.server.workers import start_gated_server

HISTOGRAMS = (
    "scratchnet_request_queue_seconds",
    "scratchnet_request_compute_seconds",
    "scratchnet_request_duration_seconds",
    "scratchnet_request_items",
    "scratchnet_request_batch_items",
)
GOOD = images(2)
BAD = images(1, (27, 28))  # INVALID_ARGUMENT: the model takes 28x28
LOAD_SECONDS = 2.0
THREADS_PER_API = 2
STALL_SECONDS = 8.0
"""Less than the 10 s the server gives a connection that stalls."""
WAIT_SECONDS = 30.0
"""The longest a test waits for the server to reach a state it must reach."""


def metrics_url(server: RunningServer, scheme: str = "http") -> str:
    """The server's metrics endpoint."""
    return f"{scheme}://{server.listeners['metrics']}/metrics"


# --- in process -------------------------------------------------------------------------------


def test_requests_are_counted_by_status_and_the_successful_ones_timed(model_onnx: Path) -> None:
    plane = plane_with(model_onnx)
    metrics = RequestMetrics()
    plane.observers.append(metrics)
    for _ in range(3):
        classify(plane, GOOD)
    infer(plane, InferRequest("scratchnet", inputs=[tensor(images(5))]))
    with pytest.raises(InvalidArgument):
        classify(plane, BAD)
    with pytest.raises(InvalidArgument):
        infer(plane, InferRequest("scratchnet", inputs=[tensor(BAD)]))
    plane.close()
    samples = parse(generate_latest(metrics_registry(metrics)).decode())
    ours = {"model": "scratchnet", "version": "1"}
    for api, ok, items in (("v1", 3, 6), ("v2", 1, 5)):
        assert value(samples, "scratchnet_requests_total", api=api, status="OK", **ours) == ok
        refused = value(samples, "scratchnet_requests_total", api=api, status="INVALID_ARGUMENT")
        assert refused == 1
        for histogram in HISTOGRAMS:
            assert value(samples, f"{histogram}_count", api=api, **ours) == ok, histogram
        assert value(samples, "scratchnet_request_items_sum", api=api) == items
        assert value(samples, "scratchnet_request_batch_items_sum", api=api) == items
        assert value(samples, "scratchnet_request_duration_seconds_sum", api=api) > 0
        assert value(samples, "scratchnet_request_compute_seconds_sum", api=api) > 0
    assert "process_resident_memory_bytes" in names(samples)


def test_buckets_are_upper_bounds_counted_cumulatively_and_statuses_are_code_names() -> None:
    metrics = RequestMetrics()
    for items in (1, 2, 3, 8192, 9000):
        metrics.observe(Outcome("v2", "m", "1", items, "OK", "", Timing(), items))
    metrics.observe(Outcome("v2", "m", "1", 0, "ResourceExhausted", "the queue is full", Timing()))
    metrics.observe(Outcome("v1", "m", "1", 0, "Cancelled", "the client went away", Timing()))
    samples = parse(generate_latest(metrics_registry(metrics)).decode())
    buckets = {
        labels["le"]: count
        for name, labels, count in samples
        if name == "scratchnet_request_items_bucket"
    }
    assert (buckets["1.0"], buckets["2.0"], buckets["4.0"], buckets["4096.0"]) == (1, 2, 3, 3)
    assert (buckets["8192.0"], buckets["+Inf"]) == (4, 5)
    assert value(samples, "scratchnet_request_items_count") == 5
    assert value(samples, "scratchnet_request_items_sum") == 1 + 2 + 3 + 8192 + 9000
    assert value(samples, "scratchnet_requests_total", status="RESOURCE_EXHAUSTED") == 1
    assert value(samples, "scratchnet_requests_total", api="v1", status="CANCELLED") == 1


def test_the_state_is_read_at_scrape_time_from_the_loop_and_the_repository(
    model_onnx: Path,
) -> None:
    plane = plane_with(model_onnx)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    registry = metrics_registry(ServerState(plane, loop, lambda: ["scratchnet", "elsewhere"]))
    try:
        samples = parse(generate_latest(registry).decode())
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(WAIT_SECONDS)
        loop.close()
    plane.close()
    assert value(samples, "scratchnet_requests_in_flight") == 0
    assert value(samples, "scratchnet_queue_depth") == 0
    state = "scratchnet_model_state"
    assert value(samples, state, model="scratchnet", version="1", state="READY") == 1
    assert value(samples, state, model="scratchnet", version="1", state="UNAVAILABLE") == 0
    # Every state has its series, 0 when not in it: an alert on LOADING needs one to read.
    assert value(samples, state, model="scratchnet", version="1", state="LOADING") == 0
    assert value(samples, state, model="elsewhere", version="", state="UNAVAILABLE") == 1
    assert value(samples, "scratchnet_model_load_seconds", model="scratchnet", version="1") > 0
    assert value(samples, "scratchnet_model_runs_total", model="scratchnet", version="1") == 0
    # Once the loop is gone, a scrape still answers, without what only the loop can tell.
    after = parse(generate_latest(registry).decode())
    assert "scratchnet_requests_in_flight" not in names(after)
    assert value(after, state, model="scratchnet", state="READY") == 1


def test_every_metric_is_documented_and_named_by_the_conventions() -> None:
    docs = (REPO / "docs" / "server.md").read_text()
    metrics = RequestMetrics()
    metrics.observe(Outcome("v2", "m", "1", 1, "OK", "", Timing(), 1))
    exposition = generate_latest(metrics_registry(metrics)).decode()
    families = list(text_string_to_metric_families(exposition))
    ours = [family for family in families if family.name.startswith("scratchnet_")]
    assert len(ours) == len(HISTOGRAMS) + 1
    for family in ours:
        exposed = family.name + ("_total" if family.type == "counter" else "")
        assert f"`{exposed}`" in docs, exposed
        if family.type == "histogram" and "seconds" in family.name:
            assert family.name.endswith("_seconds")
    for gauge in (
        "scratchnet_model_runs_total",
        "scratchnet_model_run_items_total",
        "scratchnet_requests_in_flight",
        "scratchnet_queue_depth",
        "scratchnet_model_state",
        "scratchnet_model_load_seconds",
        "process_resident_memory_bytes",
    ):
        assert f"`{gauge}`" in docs, gauge


# --- the real server ----------------------------------------------------------------------------


class Tally:
    """Calls started (by the status they are meant to get) and finished (by the status they got),
    per API, under a lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._started: Counter[tuple[str, str]] = Counter()
        self._finished: Counter[tuple[str, str]] = Counter()

    def start(self, api: str, status: str) -> None:
        with self._lock:
            self._started[api, status] += 1

    def finish(self, api: str, status: str) -> None:
        with self._lock:
            self._finished[api, status] += 1

    def started(self) -> Counter[tuple[str, str]]:
        with self._lock:
            return self._started.copy()

    def finished(self) -> Counter[tuple[str, str]]:
        with self._lock:
            return self._finished.copy()


def _load(target: str, api: str, stop: threading.Event, tally: Tally) -> None:
    """Call `api` until `stop`, every fourth call one the server must refuse."""
    with grpc.insecure_channel(target) as channel:
        caller = Caller(channel)
        calls = 0
        while not stop.is_set():
            bad = calls % 4 == 3
            calls += 1
            tally.start(api, "INVALID_ARGUMENT" if bad else "OK")
            tally.finish(api, caller.call(api, BAD if bad else GOOD).name)


def test_a_scrape_during_load_agrees_with_the_calls_made(model_onnx: Path, tmp_path: Path) -> None:
    with start_server(
        model_onnx, "--metrics-port", "0", tmp_dir=tmp_path, wait_for=("metrics",)
    ) as server:
        url = metrics_url(server)
        tally, stop = Tally(), threading.Event()
        threads = [
            threading.Thread(target=_load, args=(server.target, api, stop, tally), daemon=True)
            for api in APIS
            for _ in range(THREADS_PER_API)
        ]
        for thread in threads:
            thread.start()
        scrapes, seen_ok = 0, 0.0
        # At least LOAD_SECONDS and 3 scrapes, until calls of both APIs have been counted.
        started_at = time.monotonic()
        try:
            while time.monotonic() - started_at < LOAD_SECONDS or scrapes < 3 or not seen_ok:
                assert time.monotonic() - started_at < WAIT_SECONDS, "no call answered"
                # Answered before the scrape <= counted by the scrape <= sent by its end.
                finished = tally.finished()
                samples = scrape(url)
                started = tally.started()
                for api in APIS:
                    for status in ("OK", "INVALID_ARGUMENT"):
                        counted = value(
                            samples, "scratchnet_requests_total", api=api, status=status
                        )
                        assert finished[api, status] <= counted <= started[api, status]
                    timed = value(samples, "scratchnet_request_duration_seconds_count", api=api)
                    assert finished[api, "OK"] <= timed <= started[api, "OK"]
                seen_ok = min(
                    value(samples, "scratchnet_requests_total", api=api, status="OK")
                    for api in APIS
                )
                assert 0 <= value(samples, "scratchnet_requests_in_flight") <= len(threads)
                assert 0 <= value(samples, "scratchnet_queue_depth") <= len(threads)
                assert value(samples, "scratchnet_model_state", state="READY") == 1
                scrapes += 1
                time.sleep(0.1)
        finally:
            stop.set()
            for thread in threads:
                thread.join(WAIT_SECONDS)
        finished = tally.finished()
        assert set(finished) <= {(api, s) for api in APIS for s in ("OK", "INVALID_ARGUMENT")}
        assert finished == tally.started()  # every call got the status it was meant to get
        samples = scrape(url)
        for api in APIS:
            ok = finished[api, "OK"]
            assert value(samples, "scratchnet_requests_total", api=api, status="OK") == ok
            assert (
                value(samples, "scratchnet_requests_total", api=api, status="INVALID_ARGUMENT")
                == finished[api, "INVALID_ARGUMENT"]
            )
            for histogram in HISTOGRAMS:
                assert value(samples, f"{histogram}_count", api=api) == ok, histogram
            assert value(samples, "scratchnet_request_items_sum", api=api) == len(GOOD) * ok
        ok = sum(finished[api, "OK"] for api in APIS)
        assert value(samples, "scratchnet_model_run_items_total") == len(GOOD) * ok
        assert value(samples, "scratchnet_model_runs_total") == ok  # no dynamic batching
        assert value(samples, "scratchnet_requests_in_flight") == 0
        assert value(samples, "scratchnet_queue_depth") == 0
        assert value(samples, "scratchnet_model_load_seconds", model="scratchnet") > 0
        assert value(samples, "process_resident_memory_bytes") > 0
        assert server.stop() == 0


def _wait_for(url: str, **gauges: float) -> Samples:
    """Scrape until every gauge has its value; fail after WAIT_SECONDS."""
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        samples = scrape(url)
        seen = {name: value(samples, f"scratchnet_{name}") for name in gauges}
        if seen == gauges:
            return samples
        assert time.monotonic() < deadline, f"gauges {seen}, expected {gauges}"
        time.sleep(0.05)


def test_gauges_show_calls_waiting_for_a_batch_and_running(
    model_onnx: Path, tmp_path: Path
) -> None:
    # Batches of 3 leave at once; fewer wait up to a minute. Runs wait while the gate exists.
    gate = tmp_path / "gate"
    gate.touch()
    server = start_gated_server(
        model_onnx, gate, "--workers", "1", "--metrics-port", "0", "--dynamic-batching",
        "--preferred-batch-sizes", "3", "--max-batch-delay-us", "60000000", tmp_dir=tmp_path,
    )  # fmt: skip
    with server, grpc.insecure_channel(server.target) as channel:
        url = metrics_url(server)  # announced before the gRPC port, so known by now
        predict = channel.unary_unary(
            "/scratchnet.v1.Classifier/Predict",
            request_serializer=lambda message: message.SerializeToString(),
            response_deserializer=lambda data: data,
        )
        calls: list[Future[Any]] = []
        try:
            for _ in range(2):
                calls.append(predict.future(v1_request(images(1)), timeout=CALL_SECONDS))
            _wait_for(url, requests_in_flight=2, queue_depth=2)  # in the batching queue
            calls.append(predict.future(v1_request(images(1)), timeout=CALL_SECONDS))
            _wait_for(url, requests_in_flight=3, queue_depth=0)  # one batch, at the gate
        finally:
            gate.unlink()
        for call in calls:
            call.result(CALL_SECONDS)
        samples = _wait_for(url, requests_in_flight=0, queue_depth=0)
        assert value(samples, "scratchnet_request_items_sum") == 3
        assert value(samples, "scratchnet_request_batch_items_count") == 3
        assert value(samples, "scratchnet_request_batch_items_sum") == 3 * 3  # each ran in 3
        assert value(samples, "scratchnet_model_runs_total") == 1
        assert value(samples, "scratchnet_model_run_items_total") == 3
        assert value(samples, "scratchnet_request_queue_seconds_sum") > 0
        assert server.stop() == 0


@pytest.fixture(scope="module")
def secured(
    model_onnx: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[RunningServer, dict[str, Path]]]:
    """A server with mutual TLS, tokens and --metrics-port; the files a client needs."""
    folder = tmp_path_factory.mktemp("secured-metrics")
    ca, clients = Authority(folder, "ca"), Authority(folder, "client-ca")
    server_pem, client_pem = ca.issue("server", server=True), clients.issue("client", server=False)
    tokens = folder / "tokens"
    tokens.write_text("metrics-token\n")
    files = {"ca": ca.pem.cert, "cert": client_pem.cert, "key": client_pem.key}
    credentials = grpc.ssl_channel_credentials(
        ca.pem.cert.read_bytes(), client_pem.key.read_bytes(), client_pem.cert.read_bytes()
    )
    running = start_server(
        model_onnx, "--metrics-port", "0",
        "--tls-cert", str(server_pem.cert), "--tls-key", str(server_pem.key),
        "--tls-client-ca", str(clients.pem.cert), "--auth-token-file", str(tokens),
        tmp_dir=folder, health_credentials=credentials, wait_for=("metrics",),
    )  # fmt: skip
    with grpc.secure_channel(running.target, credentials) as channel:
        code = Caller(channel, [("authorization", "Bearer metrics-token")]).call("v1", GOOD)
        assert code == grpc.StatusCode.OK
    yield running, files
    assert running.stop() == 0


def _client_context(files: dict[str, Path], certificate: bool = True) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=files["ca"])
    if certificate:
        context.load_cert_chain(files["cert"], files["key"])
    return context


def test_metrics_are_served_over_tls_to_clients_with_a_certificate_and_a_token(
    secured: tuple[RunningServer, dict[str, Path]],
) -> None:
    server, files = secured
    url = metrics_url(server, "https")
    samples = scrape(url, _client_context(files), token="metrics-token")
    assert value(samples, "scratchnet_requests_total", api="v1", status="OK") == 1
    assert value(samples, "scratchnet_model_state", state="READY") == 1
    assert _status(server, _client_context(files), "wrong-token") == 401
    assert _status(server, _client_context(files), None) == 401
    # No client certificate: the handshake fails, or the first read after it; no TLS at all too.
    assert _status(server, _client_context(files, certificate=False)) is None
    assert _status(server, None) is None


def _status(
    server: RunningServer, context: ssl.SSLContext | None, token: str | None = "metrics-token"
) -> int | None:
    """The HTTP status of a scrape (over TLS with `context`), None if the connection fails."""
    host, port = server.listeners["metrics"].rsplit(":", 1)
    connection = (
        http.client.HTTPSConnection(host, int(port), timeout=CALL_SECONDS, context=context)
        if context is not None
        else http.client.HTTPConnection(host, int(port), timeout=CALL_SECONDS)
    )
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        connection.request("GET", "/metrics", headers=headers)
        response = connection.getresponse()
        response.read()
        return response.status
    except (OSError, http.client.HTTPException):
        return None
    finally:
        connection.close()


def test_a_connection_that_never_completes_its_handshake_stalls_no_scrape(
    secured: tuple[RunningServer, dict[str, Path]],
) -> None:
    server, files = secured
    host, port = server.listeners["metrics"].rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=CALL_SECONDS):
        # Were connections served one by one, this scrape would wait until the server drops
        # the stalled one (after 10 s), past its own timeout.
        url = metrics_url(server, "https")
        samples = scrape(url, _client_context(files), "metrics-token", timeout=STALL_SECONDS)
        assert value(samples, "scratchnet_model_state", state="READY") == 1


def test_the_metrics_are_at_slash_metrics_and_any_other_path_is_404() -> None:
    registry = CollectorRegistry()
    Gauge("probe", "A gauge to find in the scrape.", registry=registry).set(1)
    listener = listen("127.0.0.1", 0, registry)
    try:
        for path, status in (("/metrics", 200), ("/metrics/", 200), ("/", 404), ("/metricsx", 404)):
            connection = http.client.HTTPConnection("127.0.0.1", listener.port, timeout=10)
            try:
                connection.request("GET", path)
                response = connection.getresponse()
                body = response.read().decode()
            finally:
                connection.close()
            assert response.status == status, path
            if status == 200:
                assert "\nprobe 1.0\n" in body
            else:
                assert body == (
                    f"no endpoint GET {path} on the metrics listener: the metrics are at /metrics\n"
                )
    finally:
        listener.close()


def test_a_metrics_port_in_use_is_one_line_and_exit_2(model_onnx: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_module(
            "server", "--model", model_onnx, "--port", "0", "--metrics-port", str(port),
            check=False, timeout=60,
        )  # fmt: skip
    assert_one_line_error(
        result,
        "python -m server",
        f"cannot listen on 127.0.0.1:{port} for --metrics-port: address in use",
    )
