"""The HTTP/REST listener: the Open Inference Protocol's REST binding and the playground, served
by Starlette on uvicorn, on the server's own asyncio event loop beside grpc.aio.

Each route decodes the request (http_codec), awaits the data plane and encodes the answer; every
request counts as an open call of the data plane (`DataPlane.call_opened`), so its limits,
statistics and drain cover HTTP as they cover gRPC. A RequestError becomes `{"error": message}`
with the HTTP status of scratchnet.status, anything else a 500 with the traceback in the log only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import unquote

import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import FileResponse, Response
from starlette.routing import Match, Route
from starlette.staticfiles import NotModifiedResponse, StaticFiles
from starlette.types import Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from scratchnet.errors import (
    DeadlineExceeded,
    RequestError,
    ScratchnetError,
    TooLarge,
    Unauthenticated,
)
from scratchnet.status import INTERNAL, status_of
from scratchnet.versions import scratchnet_version
from server import playground
from server.config import ServerConfig
from server.dataplane import Call, DataPlane, InferRequest
from server.model_control import ModelControl
from server.security import HTTP_REFUSAL, Access, TokenFile
from server.transports import http_codec, oip_codec, oip_service
from server.transports.http_codec import Reply

__all__ = ["API", "EXTENSIONS", "HttpServer", "build_app", "start_http_server"]

API = "http"
"""How the data plane's statistics and observers name calls that came over HTTP."""
EXTENSIONS: tuple[str, ...] = (
    "classification",
    "binary_tensor_data",
    "model_repository",
    "model_configuration",
    "statistics",
)
"""The protocol extensions GET /v2 reports: those the HTTP binding serves (binary tensor data is
HTTP's own; system shared memory is gRPC's only, see docs/http.md)."""
OPEN_PATHS = frozenset({"/v2/health/live", "/v2/health/ready"})
"""Paths served without a token, as gRPC's health service is: probes must not need a secret."""
OFF_LOOP_BYTES = 64 * 1024
"""Bodies (and answers) larger than this are decoded (encoded) in a thread, not on the loop
that also serves gRPC: 784,000 JSON numbers take about 0.3 s to parse."""

_INTERNAL_MESSAGE = "internal server error (see the server log)"
_NOT_READY = "Model version not ready"
"""GET …/ready's error when the model (version) cannot infer now: Triton's words, as JSON."""
_log = logging.getLogger(__name__)
_Handler = Callable[["Request"], Awaitable[Reply]]
_T = TypeVar("_T")


class _Service:
    """The routes' shared state: the data plane and the limits that are HTTP's own."""

    def __init__(self, plane: DataPlane, config: ServerConfig) -> None:
        self.plane = plane
        self.max_body = config.max_message_bytes
        self.upload_seconds = config.upload_seconds or None  # 0: no limit
        self.version = scratchnet_version()

    async def body(self, request: Request) -> bytes:
        """The request body, refused past --max-message-mb before it is all read, and closed if
        it does not arrive within --upload-seconds (a stalled upload), as gRPC does."""
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_body:
            raise TooLarge(self._too_big(int(declared)))
        try:
            return await asyncio.wait_for(self._read(request), self.upload_seconds)
        except TimeoutError:
            raise DeadlineExceeded(
                f"the body of {request.method} {request.scope['path']} did not arrive within "
                f"{self.upload_seconds or 0:g} s (--upload-seconds)"
            ) from None

    async def _read(self, request: Request) -> bytes:
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self.max_body:
                raise TooLarge(self._too_big(size))
            chunks.append(chunk)
        return b"".join(chunks)

    def _too_big(self, size: int) -> str:
        return (
            f"the request body has {size} bytes or more, over the server's limit of "
            f"{self.max_body} (--max-message-mb)"
        )

    def sendable(self, reply: Reply, model: str) -> Reply:
        """`reply`, unless its body is over --max-message-mb, as gRPC refuses to send one:
        TooLarge, already observed (the data plane counted the run, which happened)."""
        if len(reply.body) <= self.max_body:
            return reply
        error = TooLarge(
            f"the response of model '{model}' has {len(reply.body)} bytes, over the server's "
            f"limit of {self.max_body} (--max-message-mb): ask for fewer outputs, a smaller "
            "batch, or binary outputs (binary_data_output)"
        )
        error.observed = True
        raise error


async def _maybe_off_loop(size: int, work: Callable[[], _T]) -> _T:
    """`work()` in a thread when `size` bytes make it long, else right here on the loop."""
    if size > OFF_LOOP_BYTES:
        return await asyncio.to_thread(work)
    return work()


async def _unless_client_leaves(request: Request, work: Awaitable[_T], size: int) -> _T:
    """`work`, cancelled if the client disconnects meanwhile (ClientDisconnect), as gRPC cancels
    a call whose client has gone; watched only for requests over OFF_LOOP_BYTES: smaller ones
    are answered before a watch would pay for itself."""
    if size <= OFF_LOOP_BYTES:
        return await work
    task = asyncio.ensure_future(work)
    gone = asyncio.ensure_future(_disconnect(request))
    try:
        await asyncio.wait((task, gone), return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
    if not task.done():
        task.cancel()  # the data plane counts and logs the call as cancelled
        with contextlib.suppress(asyncio.CancelledError):
            await task
        raise ClientDisconnect()
    return task.result()


async def _disconnect(request: Request) -> None:
    """Return when the client disconnects (the body has been read: nothing else can come)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def _endpoint(handler: _Handler) -> Callable[[Request], Awaitable[Response]]:
    """A Starlette endpoint that answers errors the protocol's way: `{"error": ...}`."""

    async def endpoint(request: Request) -> Response:
        try:
            reply = await handler(request)
        except RequestError as error:
            reply = _error_reply(error)
        except ClientDisconnect:
            return Response(status_code=400)  # nobody is left to read it
        except Exception:
            _log.exception("unexpected error while handling %s %s", request.method, request.url)
            reply = http_codec.error_reply(INTERNAL.http, _INTERNAL_MESSAGE)
        return Response(reply.body, reply.status, headers=dict(reply.headers))

    return endpoint


def _error_reply(error: RequestError) -> Reply:
    return http_codec.error_reply(status_of(error).http, str(error))


def build_app(plane: DataPlane, config: ServerConfig, control: ModelControl) -> Starlette:
    """The Starlette application: the protocol's routes, then the playground's."""
    service = _Service(plane, config)

    async def live(request: Request) -> Reply:
        return Reply(200, b"", {})

    async def ready(request: Request) -> Reply:
        return Reply(200 if plane.ready else 400, b"", {})

    async def server_metadata(request: Request) -> Reply:
        return http_codec.server_metadata(oip_service.SERVER_NAME, service.version, EXTENSIONS)

    async def model_metadata(request: Request) -> Reply:
        name, version = _model_of(request)
        model = plane.model(name, version)
        # As gRPC's ModelMetadata answers: the version asked for, or every version served.
        versions = [model.version] if version else plane.repository.versions(model.name)
        return http_codec.model_metadata(model, versions, plane.metadata(model))

    async def model_ready(request: Request) -> Reply:
        if not plane.model_ready(*_model_of(request)):
            return http_codec.error_reply(400, _NOT_READY)
        return Reply(200, b"", {})

    async def infer(request: Request) -> Reply:
        name, version = _model_of(request)
        call = Call(API, method=f"{request.method} {request.scope['path']}")
        started = time.perf_counter_ns()
        try:
            async with plane.call_opened():
                body = await service.body(request)
                plane.model(name, version)  # an unknown model is a 404 whatever the body says
                encoding = request.headers.get("content-encoding")
                header_length = request.headers.get(http_codec.HEADER_LENGTH)

                def decode() -> tuple[InferRequest, bool]:
                    data = http_codec.decompress(body, encoding, service.max_body)
                    return http_codec.infer_request(data, header_length, name, version)

                # A compressed body's size says nothing of the work: 56 KB of gzip can hold
                # 58 MB of JSON (seconds to parse), so it is always decoded in a thread.
                compressed = http_codec.is_compressed(encoding)
                decoded, binary = await _maybe_off_loop(
                    OFF_LOOP_BYTES + 1 if compressed else len(body), decode
                )
                answer = await _unless_client_leaves(request, plane.infer(decoded, call), len(body))
                size = sum(value.nbytes for value in answer.outputs.values())
                reply = await _maybe_off_loop(
                    size, lambda: http_codec.infer_response(answer, decoded.outputs, binary)
                )
                return service.sendable(reply, answer.model_name)
        except ClientDisconnect:
            raise  # nobody to answer: a run it cancelled is counted CANCELLED by the data plane
        except Exception as error:  # a refusal, or a bug (500): counted either way
            # Once: if the data plane refused it, it has told them. Else under the model the
            # path names, if it is served (a body that does not decode, or too large).
            raise plane.refused_naming(call, error, name, version, started) from None

    async def model_config(request: Request) -> Reply:
        model = plane.model(*_model_of(request))
        return http_codec.json_reply(http_codec.message_json(oip_codec.model_config(model).config))

    async def model_statistics(request: Request) -> Reply:
        stats = plane.model_statistics(*_model_of(request))
        return http_codec.json_reply(http_codec.message_json(oip_codec.model_statistics(stats)))

    async def repository_index(request: Request) -> Reply:
        body = await service.body(request)
        ready = await _maybe_off_loop(len(body), lambda: http_codec.index_ready(body))
        index = oip_codec.repository_index(control.index(ready))
        # Triton answers with the array itself, and leaves out empty fields (a model not loaded
        # has no version).
        models = http_codec.message_json(index, defaults=False).get("models", [])
        return http_codec.json_reply(models)

    async def load(request: Request) -> Reply:
        name = _param(request, "name")
        body = await service.body(request)
        config_json = await _maybe_off_loop(len(body), lambda: http_codec.load_config(body, name))
        # In a thread, as over gRPC: loading reads and checks the file.
        await asyncio.to_thread(control.load_requested, name, config_json)
        return Reply(200, b"", {})

    async def named_repository(request: Request) -> Reply:
        oip_codec.check_repository(_param(request, "repository"))  # a path segment is never ""
        raise AssertionError("unreachable: check_repository refuses every name")

    async def unload(request: Request) -> Reply:
        name = _param(request, "name")
        body = await service.body(request)
        await _maybe_off_loop(len(body), lambda: http_codec.unload_request(body, name))
        await asyncio.to_thread(control.unload_requested, name)
        return Reply(200, b"", {})

    model = "/v2/models/{name}"
    versioned = "/v2/models/{name}/versions/{version}"
    repository = "/v2/repository"
    routes = [
        Route("/v2/health/live", _endpoint(live)),
        Route("/v2/health/ready", _endpoint(ready)),
        Route("/v2", _endpoint(server_metadata)),
        Route("/v2/models/stats", _endpoint(model_statistics)),
        Route(model, _endpoint(model_metadata)),
        Route(versioned, _endpoint(model_metadata)),
        Route(f"{model}/ready", _endpoint(model_ready)),
        Route(f"{versioned}/ready", _endpoint(model_ready)),
        Route(f"{model}/infer", _endpoint(infer), methods=["POST"], name=_INFER_ROUTE),
        Route(f"{versioned}/infer", _endpoint(infer), methods=["POST"], name=_INFER_ROUTE),
        Route(f"{model}/stats", _endpoint(model_statistics)),
        Route(f"{versioned}/stats", _endpoint(model_statistics)),
        Route(f"{model}/config", _endpoint(model_config)),
        Route(f"{versioned}/config", _endpoint(model_config)),
        Route(f"{repository}/index", _endpoint(repository_index), methods=["POST"]),
        Route(f"{repository}/models/{{name}}/load", _endpoint(load), methods=["POST"]),
        Route(f"{repository}/models/{{name}}/unload", _endpoint(unload), methods=["POST"]),
        # Triton's paths that name a repository: it has one, unnamed (Unimplemented, 501).
        *(
            Route(
                f"{repository}/{{repository}}/{path}", _endpoint(named_repository), methods=["POST"]
            )
            for path in ("index", "models/{name}/load", "models/{name}/unload")
        ),
        *_playground_routes(plane, service),
    ]

    async def not_found(request: Request, error: Exception) -> Response:
        status = error.status_code if isinstance(error, HTTPException) else 404
        if status == 405:
            message = f"method {request.method} is not allowed on {request.scope['path']}"
        else:
            message = f"no endpoint {request.method} {request.scope['path']} on this server"
        reply = http_codec.error_reply(status, message)
        headers = dict(reply.headers)
        if isinstance(error, HTTPException) and error.headers:
            headers.update(error.headers)  # a 405's Allow, which RFC 9110 asks for
        return Response(reply.body, reply.status, headers=headers)

    app = Starlette(routes=routes, exception_handlers={404: not_found, 405: not_found})
    # A path with a trailing slash is another path, a 404 as in Triton, not a redirect built
    # from the request's Host header.
    app.router.redirect_slashes = False
    return app


def _model_of(request: Request) -> tuple[str, str]:
    """The model name and version the path names ("": none)."""
    return _param(request, "name"), _param(request, "version")


def _param(request: Request, key: str) -> str:
    """Path parameter `key` as the client meant it ("" if the route has none)."""
    value = str(request.path_params.get(key, ""))
    return unquote(value) if request.scope.get(_SEGMENTED) else value


_SEGMENTED = "scratchnet.segmented"
"""The scope key _SegmentRouting sets when it has escaped the path's parameters."""


class _SegmentRouting:
    """ASGI middleware: a path holding an encoded slash (`%2F`) is routed by its segments, as
    RFC 3986 reads it. uvicorn hands the router the decoded path, where that slash splits its
    segment: /v2/models/a%2Fb/infer was "no endpoint" rather than model 'a/b' not found, and
    /v2/models/m%2Fready answered model m's readiness."""

    def __init__(self, app: Any) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        raw: bytes = scope.get("raw_path") or b""
        if scope["type"] == "http" and b"%2f" in raw.lower():
            # Each segment decoded then escaped again ('%' too, so that _param's unquote gives
            # back exactly what was sent): the router sees one segment, the handler the name.
            segments = (unquote(part) for part in raw.decode("latin-1").split("/"))
            path = "/".join(part.replace("%", "%25").replace("/", "%2F") for part in segments)
            scope = {**scope, "path": path, _SEGMENTED: True}
        await self._app(scope, receive, send)


def _playground_routes(plane: DataPlane, service: _Service) -> list[Route]:
    """GET / and /playground/…: the page, its files and the models it can draw for."""

    async def page(request: Request) -> Response:
        return _file_response(request, playground.INDEX.path, playground.INDEX.media_type)

    async def asset(request: Request) -> Response:
        found = playground.asset(_param(request, "path"))
        if found is None:
            raise HTTPException(404)
        return _file_response(request, found.path, found.media_type)

    async def models(request: Request) -> Reply:
        return http_codec.json_reply(playground.models(plane))

    async def model(request: Request) -> Reply:
        name, version = _model_of(request)
        found = plane.model(name, version)
        # Reading the templates opens the ONNX file: not on the loop.
        described = await asyncio.to_thread(playground.describe, found)
        return http_codec.json_reply(described)

    async def model_file(request: Request) -> Response:
        name, version = _model_of(request)
        try:
            path = playground.model_file(plane.model(name, version))
        except RequestError as error:
            reply = _error_reply(error)
            return Response(reply.body, reply.status, headers=dict(reply.headers))
        return _file_response(request, path, "application/octet-stream")

    api = "/playground/api/models"
    return [
        Route("/", page),
        Route(api, _endpoint(models)),
        Route(f"{api}/{{name}}", _endpoint(model)),
        Route(f"{api}/{{name}}/versions/{{version}}", _endpoint(model)),
        Route(f"{api}/{{name}}/model.onnx", model_file),
        Route(f"{api}/{{name}}/versions/{{version}}/model.onnx", model_file),
        Route("/playground/{path:path}", asset),
    ]


def _file_response(request: Request, path: Path, media_type: str) -> Response:
    """The file, revalidated on every use (no-cache: a reloaded model or a new page reaches the
    browser at once), or 304 Not Modified when the browser's copy is still the file's."""
    stat = os.stat(path)  # given to FileResponse, which then sets ETag and Last-Modified now
    response = FileResponse(
        path, media_type=media_type, headers={"cache-control": "no-cache"}, stat_result=stat
    )
    if _VALIDATORS.is_not_modified(response.headers, request.headers):
        return NotModifiedResponse(response.headers)
    return response


_VALIDATORS = StaticFiles(check_dir=False)
"""Only for Starlette's rule of when a file is not modified (If-None-Match, If-Modified-Since):
our routes choose the files."""


_INFER_ROUTE = "infer"
"""The name of the infer routes, whose refusals the data plane's observers hear of."""


class _TokenCheck:
    """ASGI middleware: a request without `Authorization: Bearer <one of tokens>` (or with two
    Authorization headers) gets 401 and `{"error": ...}` before any route (or its body) is looked
    at; health paths stay open. A refused inference request is counted and logged, as any other
    refused inference request."""

    def __init__(self, app: Starlette, tokens: TokenFile, plane: DataPlane) -> None:
        self._app = app
        self._tokens = tokens
        self._plane = plane
        self._infer_routes = [
            route for route in app.routes if isinstance(route, Route) and route.name == _INFER_ROUTE
        ]

    def _infers(self, scope: Scope) -> bool:
        """Whether the request is for an infer route (the app's own routes decide)."""
        return any(route.matches(scope)[0] is Match.FULL for route in self._infer_routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] not in OPEN_PATHS:
            headers: list[tuple[bytes, bytes]] = scope["headers"]
            given = [value.decode("latin-1") for key, value in headers if key == b"authorization"]
            if not self._tokens.admits(given):
                path = scope["path"]
                if self._infers(scope):
                    call = Call(API, method=f"POST {path}")
                    self._plane.refused(call, Unauthenticated(HTTP_REFUSAL))
                reply = http_codec.error_reply(401, HTTP_REFUSAL)
                response = Response(reply.body, reply.status, headers=dict(reply.headers))
                response.headers["www-authenticate"] = "Bearer"
                await response(scope, receive, send)
                return
        await self._app(scope, receive, send)


HEAD_BYTES = 65_536
"""The most bytes a request's line and headers may take (gRPC's metadata limit is 8 KiB)."""


_HEAD_ENDS = (b"\r\n\r\n", b"\n\n")
"""The blank line that ends a request's head (a bare LF is read as one by some parsers)."""


class _Protocol(HttpToolsProtocol):
    """uvicorn's HTTP/1.1 protocol (httptools), answering bytes it cannot parse as a request
    with the protocol's JSON error rather than plain text; it still closes the connection.

    A request's line and headers must come within `head_seconds` (--upload-seconds) and
    HEAD_BYTES, before any token is looked at: else a client that sends them slowly, or without
    end, holds a connection and its memory for as long as it likes."""

    head_seconds: float = 0.0
    """Set per server (build_protocol); 0: no time limit."""
    _head_tail: bytes = b""
    """The last bytes of the head counted, for a blank line split between two reads."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """uvicorn's, and the first request's head begins."""
        super().connection_made(transport)
        self._head_timer: asyncio.TimerHandle | None = None
        self._begin_head()

    def on_message_begin(self) -> None:
        """uvicorn's, and this request's head begins."""
        super().on_message_begin()
        self._begin_head()

    def on_headers_complete(self) -> None:
        """The head came whole: stop counting, and go on as uvicorn does."""
        self._end_head()
        super().on_headers_complete()

    def data_received(self, data: bytes) -> None:
        """uvicorn's, once the head's bytes in `data` (up to the blank line that ends it) are
        counted towards HEAD_BYTES: counted before parsing, a head that comes whole in one read
        is held to the limit as one that comes in many."""
        if self._in_head and not self.transport.is_closing():
            seen = self._head_tail + data
            ends = [at + len(mark) for mark in _HEAD_ENDS if (at := seen.find(mark)) >= 0]
            self._head_bytes += min(ends) - len(self._head_tail) if ends else len(data)
            self._head_tail = seen[-3:]
            if self._head_bytes > HEAD_BYTES:
                self._end_head()
                self._reply_and_close(
                    431,
                    "Request Header Fields Too Large",
                    f"the request's line and headers take over {HEAD_BYTES} bytes, the most "
                    "this server reads",
                )
                return
        super().data_received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        """uvicorn's, and no clock left running."""
        self._end_head()
        super().connection_lost(exc)

    def send_400_response(self, msg: str) -> None:
        """A 400 `{"error": ...}` naming what was wrong, then close (as uvicorn does)."""
        self._reply_and_close(
            400,
            "Bad Request",
            f"the server cannot parse the HTTP request ({msg.rstrip('.')}), expected a "
            "well-formed HTTP/1.1 request whose body is as long as its Content-Length",
        )

    def _reply_and_close(self, status: int, phrase: str, message: str) -> None:
        reply = http_codec.error_reply(status, message)
        head = f"HTTP/1.1 {status} {phrase}\r\ncontent-type: application/json\r\n".encode()
        length = f"content-length: {len(reply.body)}\r\nconnection: close\r\n\r\n".encode()
        self.transport.write(head + length + reply.body)
        self.transport.close()

    def _begin_head(self) -> None:
        self._in_head = True
        self._head_bytes = 0
        self._head_tail = b""
        if self.head_seconds and self._head_timer is None:
            self._head_timer = self.loop.call_later(self.head_seconds, self._head_late)

    def _end_head(self) -> None:
        self._in_head = False
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_late(self) -> None:
        self._head_timer = None
        if not self.transport.is_closing():
            self.transport.close()  # nothing is answered to a request that never came whole


def build_protocol(head_seconds: float) -> type[_Protocol]:
    """The protocol class for one server, its head limit set (uvicorn makes one per connection)."""
    return type("HttpProtocol", (_Protocol,), {"head_seconds": head_seconds})


class _Server(uvicorn.Server):
    """uvicorn's server, leaving signals to the server process (server/app.py handles them on
    the same loop) instead of installing its own handlers."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """Nothing to capture: see the class."""
        yield


class HttpServer:
    """uvicorn serving the app on a socket bound beforehand, as a task of the running loop."""

    def __init__(self, sock: socket.socket, server: _Server, task: asyncio.Task[None]) -> None:
        self._socket = sock
        self._server = server
        self._task = task

    @property
    def port(self) -> int:
        """The port bound (the one --http-port 0 picked)."""
        return int(self._socket.getsockname()[1])

    def stop(self) -> None:
        """Stop accepting connections and close idle ones; requests in flight go on (the data
        plane's drain waits for them)."""
        self._server.should_exit = True

    async def stopped(self, timeout: float) -> None:
        """Wait for the listener to finish, at most `timeout` s, then cut what is left."""
        try:
            await asyncio.wait_for(asyncio.shield(self._task), timeout)
        except TimeoutError:
            self._server.force_exit = True
            await self._task


async def start_http_server(
    config: ServerConfig, plane: DataPlane, control: ModelControl, access: Access
) -> HttpServer:
    """Bind --host:--http-port and serve the app there, on the running loop, over `access.tls`
    and for requests with one of `access.tokens` (health aside), where given."""
    sock = _bind(config)
    if not _log.isEnabledFor(logging.DEBUG):
        # uvicorn's own start and stop lines repeat ours; its warnings and errors still show.
        logging.getLogger("uvicorn").setLevel(logging.WARNING)
    app: Any = build_app(plane, config, control)
    if access.tokens is not None:
        app = _TokenCheck(app, access.tokens, plane)
    app = _SegmentRouting(app)  # first: the token check matches routes too
    settings = uvicorn.Config(
        app,
        log_config=None,
        access_log=False,
        lifespan="off",
        http=build_protocol(config.upload_seconds),
        timeout_graceful_shutdown=config.grace_seconds,  # type: ignore[arg-type]
        server_header=False,
    )
    settings.load()
    if access.tls is not None:
        # A context that follows SIGHUP's reloads (uvicorn's own would only take files, once).
        settings.ssl = access.tls.ssl_context()
    server = _Server(settings)
    task = asyncio.create_task(server.serve(sockets=[sock]), name="http")
    return HttpServer(sock, server, task)


def _bind(config: ServerConfig) -> socket.socket:
    address = config.http_address
    try:
        family = socket.getaddrinfo(config.host, config.http_port, type=socket.SOCK_STREAM)[0][0]
        # SO_REUSEADDR (set by create_server) lets a restarted server bind a port whose old
        # connections linger in TIME_WAIT; unlike SO_REUSEPORT it never shares a busy port.
        sock = socket.create_server(
            (config.host, config.http_port or 0), family=family, backlog=2048
        )
    except OSError:
        raise ScratchnetError(
            f"cannot listen on {address} for HTTP: address in use or not available"
        ) from None
    # Accepted connections inherit it: an answer written in two parts (head, then body) would
    # otherwise wait for the client's delayed ACK, 40 ms on Linux (bench/http_serving.py).
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock
