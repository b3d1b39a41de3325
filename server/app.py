"""Build and run the server on one asyncio event loop: both gRPC services, health checking and
reflection on one port.

`serve` binds the port and prints `listening on HOST:PORT` before the models load, so a
supervisor can watch health (NOT_SERVING while loading) instead of guessing when the server is
up; then it serves until SIGTERM, SIGINT or SIGQUIT, and drains: health turns NOT_SERVING, new
calls get UNAVAILABLE, calls already accepted finish within --grace-seconds (a second signal
ends the wait at once). SIGHUP syncs the models with their files (as --model-control-mode poll
does every few seconds) and reads the TLS files and tokens again; SIGUSR1 logs what the server is
doing.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import signal
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import grpc
from grpc_health.v1 import health, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from scratchnet.errors import ModelError, ScratchnetError, Unauthenticated
from server.config import ServerConfig
from server.dataplane import Call, DataPlane
from server.health import Health
from server.logs import AccessLog, collect_only_what_is_printed
from server.logs import configure as configure_log_format
from server.metrics import serve_metrics
from server.model_control import (
    LoadOptions,
    ModelControl,
    ModelSource,
    RepositoryFolder,
    SingleFile,
)
from server.repository import ModelRepository
from server.scheduling import BatchingConfig, Limits
from server.security import GRPC_REFUSAL, Access, TokenAuth, TokenFile, exposure_warning
from server.shared_memory import SharedMemory
from server.tls import TlsFiles
from server.transports import oip_service, v1_service
from server.transports.grpc_calls import Timeouts

if TYPE_CHECKING:
    from server.transports.http_app import HttpServer

__all__ = ["SERVICE_NAMES", "build_server", "configure_logging", "serve"]

SERVICE_NAMES: tuple[str, ...] = (v1_service.SERVICE_NAME, oip_service.SERVICE_NAME)
"""The services that answer with the models (health reports each of them)."""

_log = logging.getLogger(__name__)
# After the drain: how long new calls are still refused (UNAVAILABLE) before gRPC stops, and
# how long calls being refused then get to hear it.
_LINGER_SECONDS = 0.25
_REFUSAL_SECONDS = 1.0


def build_server(
    config: ServerConfig,
    plane: DataPlane,
    control: ModelControl,
    health_status: Health,
    access: Access,
) -> tuple[grpc.aio.Server, int]:
    """A server with every service registered and its port bound (not started), and the port;
    over `access.tls` and for callers with one of `access.tokens`, where given."""
    interceptors = []
    if access.tokens is not None:
        interceptors.append(TokenAuth(access.tokens, _refusals_observed(plane)))
    server = grpc.aio.server(
        options=_channel_options(config),
        # Past this many calls at once, RESOURCE_EXHAUSTED at once.
        maximum_concurrent_rpcs=config.max_concurrent_rpcs,
        interceptors=interceptors,
    )
    timeouts = Timeouts(config.upload_seconds, config.stream_idle_seconds)
    v1_service.add_to_server(server, plane, config.model_name, config.max_message_bytes, timeouts)
    shared = SharedMemory(enabled=not config.no_shared_memory)
    oip_service.add_to_server(server, plane, control, timeouts, shared)
    health_pb2_grpc.add_HealthServicer_to_server(health_status.servicer, server)
    if not config.no_reflection:
        reflection.enable_server_reflection(
            (*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), server
        )
    try:
        if access.tls is not None:
            port = server.add_secure_port(config.address, access.tls.grpc_credentials())
        else:
            port = server.add_insecure_port(config.address)
    except RuntimeError:
        port = 0
    if port == 0:
        raise ScratchnetError(f"cannot listen on {config.address}: address in use or not available")
    return server, port


def _refusals_observed(plane: DataPlane) -> Callable[[str], None]:
    """What TokenAuth tells of a call it refused: the data plane's observers hear of those of
    the methods that run a model, as of any other refused inference call."""
    calls = {
        f"/{service.SERVICE_NAME}/{method}": (service.API, method)
        for service in (v1_service, oip_service)
        for method in service.INFERENCE_METHODS
    }

    def refused(path: str) -> None:
        if path in calls:
            api, method = calls[path]
            plane.refused(Call(api, method=method), Unauthenticated(GRPC_REFUSAL))

    return refused


def _channel_options(config: ServerConfig) -> list[tuple[str, Any]]:
    options: list[tuple[str, Any]] = [
        ("grpc.max_receive_message_length", config.max_message_bytes),
        ("grpc.max_send_message_length", config.max_message_bytes),
        # Linux grpc sets SO_REUSEPORT by default: a second server would share a busy port.
        ("grpc.so_reuseport", 0),
        ("grpc.max_concurrent_streams", config.grpc_max_concurrent_streams),
        # gRPC's queue of calls the server has not yet taken holds about 1,000 by default and
        # past that drops calls at random as CANCELLED: let it hold as many as the server serves.
        ("grpc.server.max_pending_requests", config.max_concurrent_rpcs),
        ("grpc.server.max_pending_requests_hard_limit", config.max_concurrent_rpcs),
        ("grpc.keepalive_time_ms", config.grpc_keepalive_time),
        ("grpc.keepalive_timeout_ms", config.grpc_keepalive_timeout),
        ("grpc.keepalive_permit_without_calls", int(config.grpc_keepalive_permit_without_calls)),
        ("grpc.http2.max_pings_without_data", config.grpc_http2_max_pings_without_data),
        (
            "grpc.http2.min_ping_interval_without_data_ms",
            config.grpc_http2_min_recv_ping_interval_without_data,
        ),
        ("grpc.http2.max_ping_strikes", config.grpc_http2_max_ping_strikes),
    ]
    # 0 leaves gRPC's default (no limit) for these.
    for option, value in (
        ("grpc.max_connection_idle_ms", config.grpc_max_connection_idle),
        ("grpc.max_connection_age_ms", config.grpc_max_connection_age),
        ("grpc.max_connection_age_grace_ms", config.grpc_max_connection_age_grace),
    ):
        if value:
            options.append((option, value))
    return options


def serve(config: ServerConfig) -> int:
    """Listen, load the models, serve until a stop signal, then drain; return the exit code."""
    return asyncio.run(_serve(config))


async def _serve(config: ServerConfig) -> int:
    source = _source(config)
    at_start = _models_at_start(config, source)
    plane = _data_plane(config, at_start)
    warning = exposure_warning(config.host, tls=config.tls_cert is not None)
    if warning:
        _log.warning("%s", warning)
    options = LoadOptions(config.threads, config.max_batch, config.image_shape)
    control = ModelControl(plane.repository, source, options, config.model_control_mode)
    health_status = Health(SERVICE_NAMES)
    access = _access(config)
    server, port = build_server(config, plane, control, health_status, access)
    # Prints `metrics listening on …` first.
    metrics = serve_metrics(config, plane, control, access)
    signals = _Signals(asyncio.get_running_loop())
    await health_status.loading()
    await server.start()
    print(f"listening on {config.address_with(port)}", flush=True)
    http: HttpServer | None = None
    try:
        http = await _start_http(config, plane, control, access)
        # The one model of --model must load: there is nothing to serve without it. Loading
        # runs off the loop, which answers health (NOT_SERVING) and calls (UNAVAILABLE) meanwhile.
        await asyncio.to_thread(control.start, at_start, config.model is not None)
    except ScratchnetError:
        await server.stop(None)
        if http is not None:
            http.stop()
            await http.stopped(config.grace_seconds)
        if metrics is not None:
            await asyncio.to_thread(metrics.close)
        raise
    if not signals.stopping:
        await health_status.serving()
        for model in plane.repository.models():
            _log.info(
                "serving '%s' version %s from %s: inputs %s; outputs %s%s",
                model.name,
                model.version,
                model.path,
                ", ".join(map(str, model.inputs)),
                ", ".join(map(str, model.outputs)),
                model.slicing,
            )
        if not plane.repository.models():
            # Ready and serving nothing: say so, or an operator sees only silence.
            _log.warning(
                "serving no model: %s %s; add NAME/VERSION/model.onnx folders%s",
                config.model_repository,
                "holds none" if not source.names() else "has none loaded",
                {
                    "poll": f" (polled every {config.repository_poll_secs:g} s)",
                    "explicit": " and load them (RepositoryModelLoad)",
                }.get(config.model_control_mode, " and restart or send SIGHUP"),
            )
    poll_stop = threading.Event()
    if config.model_control_mode == "poll":
        threading.Thread(
            target=control.poll,
            args=(poll_stop, config.repository_poll_secs),
            name="repository-poll",
            daemon=True,
        ).start()
    while not signals.stopping:
        what = await signals.next()
        if what == "reload":
            _log.info("SIGHUP: syncing the models with their files")
            await asyncio.to_thread(control.sync_all)
            _reload_access(access)
        elif what == "status":
            _log.info(
                "status: %d calls in flight, %d queued, models %s",
                plane.inflight,
                plane.queue_depth(),
                ", ".join(f"{m.name}/{m.version}" for m in plane.repository.models()) or "none",
            )
    poll_stop.set()
    await _drain(config, server, plane, health_status, signals, http)
    if metrics is not None:
        await asyncio.to_thread(metrics.close)
    return 0


async def _drain(
    config: ServerConfig,
    server: grpc.aio.Server,
    plane: DataPlane,
    health_status: Health,
    signals: _Signals,
    http: HttpServer | None = None,
) -> None:
    """Health NOT_SERVING, refuse new calls, let accepted ones finish within the grace period
    (a second stop signal ends the wait at once)."""
    _log.info("shutting down: calls in flight have %g s to finish", config.grace_seconds)
    await health_status.shutdown()
    plane.shutting_down = True  # from now on, new calls are UNAVAILABLE
    if http is not None:
        http.stop()  # no new connections; requests in flight are open calls the drain awaits
    drained = asyncio.create_task(plane.drained())
    second = asyncio.create_task(signals.next())
    await asyncio.wait({drained, second}, timeout=config.grace_seconds,
                       return_when=asyncio.FIRST_COMPLETED)  # fmt: skip
    drained.cancel()
    second.cancel()
    if plane.open_calls:
        why = "second signal" if second.done() else "grace period over"
        _log.info("%s: cancelling the %d calls still open", why, plane.open_calls)
        await server.stop(None)
    else:
        # gRPC's stop cancels the calls that have arrived but not yet reached a handler, which
        # would then hear CANCELLED instead of UNAVAILABLE: first let the clients whose calls
        # just finished learn from a refusal that the server is going, then give the calls being
        # refused a moment to hear it (stop(None) would cancel them too).
        await asyncio.sleep(min(_LINGER_SECONDS, config.grace_seconds))
        await server.stop(_REFUSAL_SECONDS)
    if http is not None:
        await http.stopped(config.grace_seconds)
    plane.close()
    _log.info("stopped")


def _access(config: ServerConfig) -> Access:
    """The TLS files and tokens of the flags, read; ScratchnetError naming a file that is wrong."""
    tls = None
    if config.tls_cert is not None and config.tls_key is not None:
        tls = TlsFiles(config.tls_cert, config.tls_key, config.tls_client_ca)
    tokens = None
    if config.auth_token_file is not None:
        tokens = TokenFile(config.auth_token_file)
    return Access(tls, tokens)


def _reload_access(access: Access) -> None:
    """SIGHUP's second job: renew the TLS files and rotate the bearer tokens on every listener,
    or say why not (keeping what is held)."""
    if access.tls is not None:
        try:
            access.tls.reload()
        except ScratchnetError as error:
            _log.error("SIGHUP: %s; keeping the TLS files read before", error)
        else:
            _log.info("SIGHUP: TLS files read again from %s", access.tls.cert)
    if access.tokens is not None:
        try:
            count = access.tokens.reload()
        except ScratchnetError as error:
            _log.error("SIGHUP: %s; keeping the tokens read before", error)
        else:
            _log.info("SIGHUP: %d bearer token(s) read from %s", count, access.tokens.path)


async def _start_http(
    config: ServerConfig, plane: DataPlane, control: ModelControl, access: Access
) -> HttpServer | None:
    """With --http-port: listen for HTTP too and print `http listening on HOST:PORT`."""
    if config.http_port is None:
        return None
    if not all(importlib.util.find_spec(name) for name in ("starlette", "uvicorn")):
        raise ScratchnetError(
            "--http-port needs the http extra, which is not installed: "
            "pip install 'scratchnet[http]'"
        )
    from server.transports.http_app import start_http_server

    http = await start_http_server(config, plane, control, access)
    print(f"http listening on {config.address_with(http.port)}", flush=True)
    return http


def _data_plane(config: ServerConfig, at_start: list[str]) -> DataPlane:
    limits = Limits(
        threads=config.workers, max_queue=config.max_queue, inline_seconds=config.inline_us / 1e6
    )
    batching = None
    if config.dynamic_batching:
        batching = BatchingConfig(
            max_delay_seconds=config.max_batch_delay_us / 1e6,
            preferred_sizes=config.preferred_batch_sizes,
        )
    plane = DataPlane(
        ModelRepository(loading=tuple(at_start)),
        limits=limits,
        budget_bytes=config.max_inflight_mb * 1024 * 1024,
        request_seconds=config.request_timeout,
        batching=batching,
    )
    plane.expose_versions = config.expose_versions
    if config.access_log:
        plane.observers.append(AccessLog())
    return plane


class _Signals:
    """The signals the server acts on, as events on its loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.stopping = False
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        for signum, what in (
            (signal.SIGTERM, "stop"),
            (signal.SIGINT, "stop"),
            (signal.SIGQUIT, "stop"),
            (signal.SIGHUP, "reload"),
            (signal.SIGUSR1, "status"),
        ):
            loop.add_signal_handler(signum, self._received, what)

    def _received(self, what: str) -> None:
        if what == "stop":
            self.stopping = True
        self._queue.put_nowait(what)

    async def next(self) -> str:
        """The next signal's meaning: stop, reload or status."""
        return await self._queue.get()


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


def configure_logging(level: str, log_format: str = "text") -> None:
    """Log to stderr at `level`, one line per record (text, or JSON objects: server.logs)."""
    configure_log_format(level, log_format)
    collect_only_what_is_printed()
