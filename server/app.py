"""Build and run the gRPC server: both services, health checking and reflection on one port.

`serve` binds the port and prints `listening on HOST:PORT` before the model loads, so a supervisor
can watch health (NOT_SERVING while loading) instead of guessing when the server is up.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from concurrent import futures

import grpc
from grpc_health.v1 import health, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from server import classifier_service, inference_service
from server.config import ServerConfig
from server.errors import ModelError, RejectUndecodableRequests
from server.runtime import ModelRuntime
from server.state import ServingState
from trainer.errors import ScratchnetError

__all__ = ["SERVICE_NAMES", "build_server", "serve"]

SERVICE_NAMES: tuple[str, ...] = (
    classifier_service.SERVICE_NAME,
    inference_service.SERVICE_NAME,
)
"""The services that answer with the model (health reports each of them)."""

_log = logging.getLogger(__name__)


def build_server(config: ServerConfig, state: ServingState) -> tuple[grpc.Server, int]:
    """A server with every service registered and its port bound (not started), and the port."""
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=config.workers, thread_name_prefix="rpc"),
        options=[
            ("grpc.max_receive_message_length", config.max_message_bytes),
            ("grpc.max_send_message_length", config.max_message_bytes),
            # Linux grpc sets SO_REUSEPORT by default: a second server would share a busy port.
            ("grpc.so_reuseport", 0),
        ],
        # Calls beyond the workers wait in a queue; beyond that, RESOURCE_EXHAUSTED at once.
        maximum_concurrent_rpcs=config.workers + config.max_queue,
        # Health and reflection keep grpc's own handling (non-blocking Watch streams included).
        interceptors=[RejectUndecodableRequests(SERVICE_NAMES)],
    )
    classifier_service.add_to_server(server, state)
    inference_service.add_to_server(server, state)
    health_pb2_grpc.add_HealthServicer_to_server(state.health, server)
    for service in SERVICE_NAMES:
        state.add_service(service)
    reflection.enable_server_reflection(
        (*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    try:
        port = server.add_insecure_port(config.address)
    except RuntimeError:
        port = 0
    if port == 0:
        raise ScratchnetError(f"cannot listen on {config.address}: address in use or not available")
    return server, port


def serve(config: ServerConfig) -> int:
    """Listen, load the model, serve until SIGTERM or SIGINT, then drain; return the exit code."""
    state = ServingState(config.model_name, config.max_batch, config.max_message_bytes)
    server, port = build_server(config, state)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    server.start()
    print(f"listening on {config.address_with(port)}", flush=True)
    try:
        runtime = ModelRuntime(config.model, config.model_name, config.threads)
    except ModelError:
        server.stop(None)
        raise
    if not stop.is_set():
        state.set_runtime(runtime)
        _log.info(
            "serving %s as '%s' version %s: input %s %s, %d classes, outputs %s",
            config.model,
            runtime.name,
            runtime.version,
            runtime.input_dtype,
            runtime.input_shape,
            runtime.num_classes,
            ", ".join(runtime.outputs),
        )
    stop.wait()
    _log.info("shutting down: calls in flight have %g s to finish", config.grace_seconds)
    # New calls are refused from here on; calls in flight run until they finish or the grace
    # period ends, whichever is first, and are then cancelled. Health turns NOT_SERVING right
    # after, so that a client watching it never sees NOT_SERVING while new calls still get in.
    stopped = server.stop(config.grace_seconds)
    state.begin_shutdown()
    stopped.wait()
    _log.info("stopped")
    return 0


def configure_logging(level: str) -> None:
    """Log to stderr at `level`, one line per record."""
    logging.basicConfig(
        stream=sys.stderr,
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
