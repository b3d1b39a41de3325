"""Build and run the gRPC server: both services, health checking and reflection on one port.

`serve` binds the port and prints `listening on HOST:PORT` before the models load, so a
supervisor can watch health (NOT_SERVING while loading) instead of guessing when the server is
up; then it serves until SIGTERM or SIGINT, syncing the models with their files on SIGHUP (and
every few seconds with --model-control-mode poll).
"""

from __future__ import annotations

import importlib.util
import logging
import signal
import sys
import threading
from concurrent import futures
from typing import TYPE_CHECKING, Any

import grpc
from grpc_health.v1 import health, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from scratchnet.errors import ModelError, ScratchnetError
from server.config import ServerConfig
from server.dataplane import DataPlane
from server.health import Health
from server.model_control import (
    LoadOptions,
    ModelControl,
    ModelSource,
    RepositoryFolder,
    SingleFile,
)
from server.repository import ModelRepository
from server.security import (
    TokenAuth,
    exposure_warning,
    load_tokens,
    read_credentials,
    server_credentials,
)
from server.transports import oip_service, v1_service
from server.transports.grpc_errors import RejectUndecodableRequests

if TYPE_CHECKING:
    from server.transports.http_app import HttpServer

__all__ = ["SERVICE_NAMES", "build_server", "serve"]

SERVICE_NAMES: tuple[str, ...] = (v1_service.SERVICE_NAME, oip_service.SERVICE_NAME)
"""The services that answer with the model (health reports each of them)."""

_log = logging.getLogger(__name__)


def build_server(
    config: ServerConfig, plane: DataPlane, control: ModelControl, health_status: Health
) -> tuple[grpc.Server, int]:
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
        interceptors=_interceptors(config),
    )
    v1_service.add_to_server(server, plane, config.model_name, config.max_message_bytes)
    oip_service.add_to_server(server, plane, control)
    health_pb2_grpc.add_HealthServicer_to_server(health_status.servicer, server)
    if not config.no_reflection:
        reflection.enable_server_reflection(
            (*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), server
        )
    try:
        if config.tls_cert is not None and config.tls_key is not None:
            pem = read_credentials(config.tls_cert, config.tls_key, config.tls_client_ca)
            port = server.add_secure_port(config.address, server_credentials(*pem))
        else:
            port = server.add_insecure_port(config.address)
    except RuntimeError:
        port = 0
    if port == 0:
        raise ScratchnetError(f"cannot listen on {config.address}: address in use or not available")
    return server, port


def _interceptors(config: ServerConfig) -> list[Any]:
    """Token auth first (a refused call is never parsed), then undecodable requests."""
    interceptors: list[Any] = []
    if config.auth_token_file is not None:
        interceptors.append(TokenAuth(load_tokens(config.auth_token_file)))
    interceptors.append(RejectUndecodableRequests(SERVICE_NAMES))
    return interceptors


def serve(config: ServerConfig) -> int:
    """Listen, load the models, serve until SIGTERM or SIGINT, then drain; return the exit code."""
    _check_http(config)
    source = _source(config)
    at_start = _models_at_start(config, source)
    plane = DataPlane(ModelRepository(loading=tuple(at_start)))
    plane.expose_versions = config.expose_versions
    warning = exposure_warning(config.host, tls=config.tls_cert is not None)
    if warning:
        _log.warning("%s", warning)
    options = LoadOptions(config.threads, config.max_batch, config.image_shape)
    control = ModelControl(plane.repository, source, options, config.model_control_mode)
    health_status = Health(SERVICE_NAMES)
    server, port = build_server(config, plane, control, health_status)
    stop, reload = threading.Event(), threading.Event()

    def on_stop(*_: object) -> None:
        stop.set()
        reload.set()  # wakes the main loop

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, on_stop)
    signal.signal(signal.SIGHUP, lambda *_: reload.set())
    server.start()
    print(f"listening on {config.address_with(port)}", flush=True)
    http: HttpServer | None = None
    try:
        http = _start_http(config, plane)
        # The one model of --model must load: there is nothing to serve without it.
        control.start(at_start, strict=config.model is not None)
    except ScratchnetError:
        server.stop(None)
        if http is not None:
            http.stop()
        raise
    if not stop.is_set():
        health_status.serving()
        for model in plane.repository.models():
            _log.info(
                "serving '%s' version %s from %s: inputs %s; outputs %s",
                model.name,
                model.version,
                model.path,
                ", ".join(map(str, model.inputs)),
                ", ".join(map(str, model.outputs)),
            )
    if config.model_control_mode == "poll":
        poller = threading.Thread(
            target=control.poll,
            args=(stop, config.repository_poll_secs),
            name="repository-poll",
            daemon=True,
        )
        poller.start()
    while not stop.is_set():
        reload.wait()
        reload.clear()
        if not stop.is_set():
            _log.info("SIGHUP: syncing the models with their files")
            control.sync_all()
    _log.info("shutting down: calls in flight have %g s to finish", config.grace_seconds)
    # New calls are refused from here on; calls in flight run until they finish or the grace
    # period ends, whichever is first, and are then cancelled. Health turns NOT_SERVING right
    # after, so that a client watching it never sees NOT_SERVING while new calls still get in.
    stopped = server.stop(config.grace_seconds)
    if http is not None:
        http.stop()  # the same grace: requests in flight finish, new connections are refused
    plane.shutting_down = True
    health_status.shutdown()
    stopped.wait()
    if http is not None:
        http.wait()
    _log.info("stopped")
    return 0


def _check_http(config: ServerConfig) -> None:
    """Refuse --http-port beside TLS or tokens, before anything listens."""
    if config.http_port is not None and (
        config.tls_cert is not None or config.auth_token_file is not None
    ):
        # Until the HTTP listener has them too, it would serve the models in the clear and to
        # anyone, behind the back of the gRPC port's protection.
        raise ScratchnetError(
            "--http-port cannot be combined with --tls-cert or --auth-token-file yet: the HTTP "
            "listener has neither TLS nor tokens; serve HTTP from a server without them"
        )


def _start_http(config: ServerConfig, plane: DataPlane) -> HttpServer | None:
    """With --http-port: listen for HTTP too and print `http listening on HOST:PORT`."""
    if config.http_port is None:
        return None
    if not all(importlib.util.find_spec(name) for name in ("starlette", "uvicorn")):
        raise ScratchnetError(
            "--http-port needs the http extra, which is not installed: "
            "pip install 'scratchnet[http]'"
        )
    from server.transports.http_app import start_http_server

    http = start_http_server(config, plane)
    print(f"http listening on {config.address_with(http.port)}", flush=True)
    return http


def _source(config: ServerConfig) -> ModelSource:
    if config.model_repository is not None:
        return RepositoryFolder(config.model_repository)
    assert config.model is not None
    return SingleFile(config.model, config.model_name)


def _models_at_start(config: ServerConfig, source: ModelSource) -> list[str]:
    if config.model_control_mode != "explicit" or config.model is not None:
        return source.names()
    if "*" in config.load_model:
        return source.names()
    known = set(source.names())
    unknown = [name for name in config.load_model if name not in known]
    if unknown:
        raise ModelError(
            f"--load-model {', '.join(unknown)}: no such model in {config.model_repository}, "
            f"expected some of {', '.join(sorted(known)) or '(none: the repository is empty)'}"
        )
    return list(config.load_model)


def configure_logging(level: str) -> None:
    """Log to stderr at `level`, one line per record."""
    logging.basicConfig(
        stream=sys.stderr,
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
