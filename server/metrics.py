"""Prometheus metrics on --metrics-port, over HTTP(S), for Prometheus to scrape (Triton serves its
own on 8002). docs/server.md lists every metric.

`RequestMetrics` is an Observer of the data plane: requests by model, version, API and status;
for the successful ones, histograms of their queue, compute and total seconds, of their items
and of the items of the model run each was part of. Recording runs on the event loop for every
request, so it is plain list arithmetic without a lock: the loop is the only writer, and a
scrape (in a thread of the listener) copies each list in one call, which the GIL makes atomic,
so it never sees a bucket half-written (a histogram's _sum may lag its buckets by the one
observation being recorded). `ServerState` reads at scrape time what lives elsewhere: requests
in flight and queue depth (asked of the event loop itself), each model version's state and load
time (from the repository, under its lock), its runs and their items (from the statistics of
Triton's statistics extension, under their lock). prometheus_client's process, platform and gc
collectors add process_resident_memory_bytes, CPU seconds, open file descriptors and the like.

The listener is the standard library's threaded WSGI server around prometheus_client's WSGI app,
not prometheus_client.start_http_server, which runs TLS handshakes in its accept loop: one
connection that never completes its handshake would stall every scrape. Here each connection has
its own thread, handshake and time limit, and only a few are served at once.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import errno
import logging
import socket
import socketserver
import ssl
import sys
import threading
from bisect import bisect_left
from collections.abc import Callable, Iterable, Sequence
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

from prometheus_client import (
    CollectorRegistry,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
    make_wsgi_app,
)
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from scratchnet.errors import ModelError, ScratchnetError, clip
from server.config import ServerConfig
from server.dataplane import DataPlane, Outcome
from server.logs import status_code
from server.model_control import ModelControl
from server.repository import LOADING, READY, UNAVAILABLE
from server.security import HTTP_REFUSAL, Access, TokenFile

__all__ = [
    "ITEM_BUCKETS",
    "SECONDS_BUCKETS",
    "MetricsListener",
    "RequestMetrics",
    "ServerState",
    "listen",
    "metrics_registry",
    "serve_metrics",
]

SECONDS_BUCKETS: tuple[float, ...] = (
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)  # fmt: skip
"""Upper bounds of the latency histograms: a batch-1 call takes well under a millisecond here,
and --request-timeout is 60 s by default."""
ITEM_BUCKETS: tuple[float, ...] = tuple(float(2**power) for power in range(14))
"""Upper bounds of the item histograms: 1, 2, 4, ... 8192."""

_log = logging.getLogger(__name__)
_REQUEST_LABELS = ("model", "version", "api")
_LOOP_SECONDS = 1.0
"""How long a scrape waits for the event loop to read its gauges (it answers within a callback)."""
_CONNECTION_SECONDS = 10.0
"""How long a connection may take to send its request and read the answer."""
_MAX_CONNECTIONS = 8
"""Connections served at once; more are closed at once (Prometheus needs one per scrape)."""


class _Histogram:
    """Bucket counts (the last for +Inf) and the sum, in one list that only the loop writes."""

    __slots__ = ("bounds", "values")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.values = [0.0] * (len(bounds) + 2)

    def observe(self, value: float) -> None:
        """Count `value` in the first bucket whose bound is >= it."""
        self.values[bisect_left(self.bounds, value)] += 1
        self.values[-1] += value

    def add_to(self, family: HistogramMetricFamily, labels: Sequence[str]) -> None:
        """Add a snapshot of this histogram, with cumulative buckets, to `family`."""
        values = self.values.copy()  # one call, atomic under the GIL: no bucket half-counted
        total, cumulative = values.pop(), 0.0
        buckets = []
        for bound, count in zip((*self.bounds, float("inf")), values, strict=True):
            cumulative += count
            buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
        family.add_metric(labels, buckets, total)


class _Series:
    """The histograms of one model version on one API."""

    __slots__ = ("batch_items", "compute", "duration", "items", "queue")

    def __init__(self) -> None:
        self.queue = _Histogram(SECONDS_BUCKETS)
        self.compute = _Histogram(SECONDS_BUCKETS)
        self.duration = _Histogram(SECONDS_BUCKETS)
        self.items = _Histogram(ITEM_BUCKETS)
        self.batch_items = _Histogram(ITEM_BUCKETS)


class RequestMetrics:
    """Counts and histograms of the requests the data plane answered or refused: an Observer
    (called on the event loop) and a prometheus_client collector (called by scrapes)."""

    def __init__(self) -> None:
        self._requests: dict[tuple[str, str, str, str], int] = {}
        self._series: dict[tuple[str, str, str], _Series] = {}

    def observe(self, outcome: Outcome) -> None:
        """Count one request; time and size it if it succeeded."""
        key = (outcome.model, outcome.version, outcome.api)
        counted = (*key, status_code(outcome.status))
        self._requests[counted] = self._requests.get(counted, 0) + 1
        if outcome.status != "OK":
            return
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = _Series()
        timing = outcome.timing
        series.queue.observe(timing.queue / 1e9)
        series.compute.observe(
            (timing.compute_input + timing.compute_infer + timing.compute_output) / 1e9
        )
        series.duration.observe(timing.total / 1e9)
        series.items.observe(outcome.items)
        series.batch_items.observe(outcome.batch_items)

    def collect(self) -> Iterable[Metric]:
        """The metric families, from a snapshot of the counts."""
        requests = CounterMetricFamily(
            "scratchnet_requests",
            "Requests the data plane answered or refused, by model, version, API (v1: "
            "scratchnet.v1.Classifier; v2: the Open Inference Protocol over gRPC, http: over "
            "HTTP) and status code.",
            labels=[*_REQUEST_LABELS, "status"],
        )
        for counted, count in self._requests.copy().items():
            requests.add_metric(counted, count)
        histograms = {
            "queue": HistogramMetricFamily(
                "scratchnet_request_queue_seconds",
                "Seconds successful requests waited for an inference thread or a batch.",
                labels=_REQUEST_LABELS,
                unit="seconds",
            ),
            "compute": HistogramMetricFamily(
                "scratchnet_request_compute_seconds",
                "Seconds successful requests spent being checked and converted, running the "
                "model and preparing the outputs (queueing excluded).",
                labels=_REQUEST_LABELS,
                unit="seconds",
            ),
            "duration": HistogramMetricFamily(
                "scratchnet_request_duration_seconds",
                "Seconds from the data plane receiving a successful request to its answer.",
                labels=_REQUEST_LABELS,
                unit="seconds",
            ),
            "items": HistogramMetricFamily(
                "scratchnet_request_items",
                "Items (the batch dimension: images, rows) per successful request.",
                labels=_REQUEST_LABELS,
            ),
            "batch_items": HistogramMetricFamily(
                "scratchnet_request_batch_items",
                "Items of the model run each successful request was part of: its own items, or "
                "more when dynamic batching merged it with others (observed once per request).",
                labels=_REQUEST_LABELS,
            ),
        }
        for labels, series in self._series.copy().items():
            for name, family in histograms.items():
                histogram: _Histogram = getattr(series, name)
                histogram.add_to(family, labels)
        return [requests, *histograms.values()]


class ServerState:
    """What a scrape reads when it happens: requests in flight and queue depth (on the event
    loop), model states and load times (from the repository), model runs and their items (from
    the statistics)."""

    def __init__(
        self,
        plane: DataPlane,
        loop: asyncio.AbstractEventLoop,
        names: Callable[[], Sequence[str]] = list,
    ) -> None:
        """`loop`: the data plane's; `names`: the models the index lists even when unloaded."""
        self._plane = plane
        self._loop = loop
        self._names = names

    def collect(self) -> Iterable[Metric]:
        """The gauges, as they are now."""
        metrics: list[Metric] = []
        live = self._live()
        if live is not None:
            inflight, depth = live
            metrics.append(
                GaugeMetricFamily(
                    "scratchnet_requests_in_flight",
                    "Requests the data plane is working on (checking, queued, running).",
                    value=inflight,
                )
            )
            metrics.append(
                GaugeMetricFamily(
                    "scratchnet_queue_depth",
                    "Model runs waiting for an inference thread or in a batching queue.",
                    value=depth,
                )
            )
        state = GaugeMetricFamily(
            "scratchnet_model_state",
            "1 for the state each model version is in (READY, UNAVAILABLE, LOADING) as the "
            "repository index reports it, 0 for the others.",
            labels=["model", "version", "state"],
        )
        for entry in self._plane.repository.index(list(self._known_names())):
            current = entry.state or UNAVAILABLE  # a model never loaded: the index has its name
            # Every state, each 0 or 1: a series that appears only while it is 1 reads as "no
            # data" to a query or an alert on it.
            for name in sorted({READY, UNAVAILABLE, LOADING, current}):
                state.add_metric([entry.name, entry.version, name], float(current == name))
        load = GaugeMetricFamily(
            "scratchnet_model_load_seconds",
            "Seconds the loaded model version took to load: reading and checking its file, "
            "making its onnxruntime session, its first runs.",
            labels=["model", "version"],
            unit="seconds",
        )
        runs = CounterMetricFamily(
            "scratchnet_model_runs",
            "Times each model version ran for successful requests: requests that dynamic "
            "batching merged make one run.",
            labels=["model", "version"],
        )
        items = CounterMetricFamily(
            "scratchnet_model_run_items",
            "Items those runs took, summed: over scratchnet_model_runs_total, items per run.",
            labels=["model", "version"],
        )
        models = self._plane.repository.models()
        for model in models:
            load.add_metric([model.name, model.version], model.load_seconds)
        for stats in self._plane.statistics.of([(model.name, model.version) for model in models]):
            runs.add_metric([stats.name, stats.version], stats.execution_count)
            items.add_metric([stats.name, stats.version], stats.inference_count)
        return [*metrics, state, load, runs, items]

    def _known_names(self) -> Sequence[str]:
        try:
            return self._names()
        except ModelError:
            return ()  # the repository folder is unreadable: the index still lists the loaded

    def _live(self) -> tuple[int, int] | None:
        """(in flight, queue depth), read on the event loop; None if it did not answer."""
        answer: concurrent.futures.Future[tuple[int, int]] = concurrent.futures.Future()

        def read() -> None:
            if answer.set_running_or_notify_cancel():
                answer.set_result((self._plane.inflight, self._plane.queue_depth()))

        try:
            self._loop.call_soon_threadsafe(read)
            return answer.result(_LOOP_SECONDS)
        except (RuntimeError, TimeoutError):  # the loop is closed, or stuck
            answer.cancel()
            return None


def metrics_registry(*collectors: Collector) -> CollectorRegistry:
    """A registry of the server's own (not prometheus_client's global one) with `collectors`,
    and the process, platform and gc collectors."""
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    for collector in collectors:
        registry.register(collector)
    return registry


class _Handler(WSGIRequestHandler):
    timeout = _CONNECTION_SECONDS  # the socket's: a client that stalls is disconnected

    def setup(self) -> None:
        super().setup()
        if isinstance(self.connection, ssl.SSLSocket):
            self.connection.do_handshake()  # in this connection's thread, within the timeout

    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes are not logged."""


class _Server(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True

    def __init__(self, host: str, port: int, app: WSGIApplication) -> None:
        family, _, _, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        self.address_family = family
        self._slots = threading.BoundedSemaphore(_MAX_CONNECTIONS)
        super().__init__((str(address[0]), int(address[1])), _Handler)
        self.set_app(app)

    def server_bind(self) -> None:
        # HTTPServer's would look the host's name up in DNS, which can hang for 0.0.0.0.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), self.server_address[1]
        self.setup_environ()

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            _log.debug("metrics: %d connections open, closing a new one", _MAX_CONNECTIONS)
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A failed handshake, a timeout, a client gone: one debug line, not a traceback on stderr.
        _log.debug("metrics: a connection from %s failed: %s", client_address[0], sys.exc_info()[1])


class MetricsListener:
    """The HTTP(S) endpoint serving a registry, on a thread of its own."""

    def __init__(self, server: _Server) -> None:
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, name="metrics-listener", daemon=True
        )
        self._thread.start()

    @property
    def port(self) -> int:
        """The port listened on (the one port 0 picked)."""
        port: int = self._server.server_address[1]
        return port

    def close(self) -> None:
        """Stop accepting connections (within half a second); scrapes under way finish."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


METRICS_PATHS = ("/metrics", "/metrics/")
"""Where the listener serves the metrics (Triton's paths); any other path is 404."""


def listen(
    host: str,
    port: int,
    registry: CollectorRegistry,
    *,
    tls: ssl.SSLContext | None = None,
    tokens: TokenFile | None = None,
) -> MetricsListener:
    """Serve `registry` on host:port at METRICS_PATHS, over `tls` if given, to requests bearing
    one of `tokens` if given; OSError if the port cannot be bound."""
    server = _Server(host, port, _app(registry, tokens))
    if tls is not None:
        server.socket = tls.wrap_socket(
            server.socket, server_side=True, do_handshake_on_connect=False
        )
    return MetricsListener(server)


def _app(registry: CollectorRegistry, tokens: TokenFile | None) -> WSGIApplication:
    metrics: WSGIApplication = make_wsgi_app(registry)

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        # wsgiref joins repeated headers with commas: two Authorization headers match no token.
        if tokens is not None and not tokens.matches(environ.get("HTTP_AUTHORIZATION", "")):
            start_response(
                "401 Unauthorized",
                [("Content-Type", "text/plain; charset=utf-8"), ("WWW-Authenticate", "Bearer")],
            )
            return [HTTP_REFUSAL.encode() + b"\n"]
        path = environ.get("PATH_INFO", "")
        if path not in METRICS_PATHS:
            start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
            method = environ.get("REQUEST_METHOD", "")
            return [
                f"no endpoint {method} {clip(path)} on the metrics listener: the metrics are at "
                f"{METRICS_PATHS[0]}\n".encode()
            ]
        try:
            return metrics(environ, start_response)
        except Exception:
            _log.exception("metrics: a scrape failed")
            start_response(
                "500 Internal Server Error",
                [("Content-Type", "text/plain; charset=utf-8")],
                sys.exc_info(),
            )
            return [b"internal server error (see the server log)\n"]

    return app


def serve_metrics(
    config: ServerConfig, plane: DataPlane, control: ModelControl, access: Access
) -> MetricsListener | None:
    """With --metrics-port, observe `plane` and serve its metrics on --host (TLS and tokens as
    the gRPC port has them: `access`), and print `metrics listening on HOST:PORT`; else None.
    Call it on the data plane's event loop."""
    if config.metrics_port is None:
        return None
    requests = RequestMetrics()
    state = ServerState(plane, asyncio.get_running_loop(), control.source.names)
    tls = None if access.tls is None else access.tls.ssl_context()
    address = config.address_with(config.metrics_port)
    try:
        listener = listen(
            config.host, config.metrics_port, metrics_registry(requests, state), tls=tls,
            tokens=access.tokens,
        )  # fmt: skip
    except OSError as error:
        reason = error.strerror or str(error)
        if error.errno == errno.EADDRINUSE:
            reason = "address in use"
        raise ScratchnetError(f"cannot listen on {address} for --metrics-port: {reason}") from None
    plane.observers.append(requests)
    print(f"metrics listening on {config.address_with(listener.port)}", flush=True)
    return listener
