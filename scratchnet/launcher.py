"""Run `python -m server` as a subprocess: start it on a free port, learn the port from its
`listening on HOST:PORT` line, wait for health SERVING, stop it with a signal.

The server announces each of its other listeners with a line `NAME listening on HOST:PORT`
(`metrics listening on 127.0.0.1:41234`, `http listening on …`); `ServerProcess.listeners` holds
them by NAME.

What the demo, the benchmarks and the end-to-end tests use to run a real server. The server's
output goes to files the caller names, read as they grow: nothing waits on a pipe, so a silent
or hung server is reported after a timeout instead of blocking its supervisor.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Self

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from scratchnet.errors import LaunchError

__all__ = [
    "SERVING",
    "START_SECONDS",
    "STOP_SECONDS",
    "ServerProcess",
    "server_command",
    "wait_for_health",
]

# Loading the model takes well under a second; the margin is for a busy machine.
START_SECONDS = 60.0
"""Default wait for the `listening on` line, and again for health SERVING."""
STOP_SECONDS = 30.0
"""Default wait for the server to drain and exit after the signal, before it is killed."""
SERVING: int = health_pb2.HealthCheckResponse.SERVING
_POLL_SECONDS = 0.05
_CHECK_SECONDS = 2.0
_MIN_CHECK_SECONDS = 0.05

Guard = Callable[[], AbstractContextManager[object]]
"""A context to wrap around starting or stopping the process (see ServerProcess.start)."""


def server_command(
    model: str | os.PathLike[str],
    *args: str,
    python_args: Sequence[str] = ("-m", "server"),
    model_flag: str = "--model",
    wrapper: Sequence[str] = (),
) -> list[str]:
    """The command that serves `model` (a file, or a repository with `model_flag`
    "--model-repository") on a free 127.0.0.1 port, `args` appended, run under `wrapper` (a
    command prefix such as valgrind's) if given."""
    return [
        *wrapper,
        sys.executable,
        *python_args,
        model_flag,
        str(model),
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        *args,
    ]


@dataclass(eq=False)
class ServerProcess:
    """A `python -m server` subprocess, where to reach it and where its output goes."""

    process: subprocess.Popen[bytes]
    host: str
    port: int
    stdout_path: Path | None = None
    stderr_path: Path | None = None
    health_credentials: grpc.ChannelCredentials | None = None
    """How to reach a TLS server's health service; None: plaintext."""
    listeners: dict[str, str] = field(default_factory=dict)
    """HOST:PORT of the server's other listeners by name, e.g. "metrics" (with --metrics-port)."""

    @classmethod
    def start(
        cls,
        model: str | os.PathLike[str],
        *args: str,
        stdout: Path,
        stderr: Path | None = None,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        serving: bool = True,
        health_credentials: grpc.ChannelCredentials | None = None,
        timeout: float = START_SECONDS,
        guard: Guard = contextlib.nullcontext,
        python_args: Sequence[str] = ("-m", "server"),
        model_flag: str = "--model",
        http: bool = False,
        wait_for: Sequence[str] = (),
        wrapper: Sequence[str] = (),
    ) -> Self:
        """Run server_command(model, *args) with its stdout in file `stdout` and its stderr in
        `stderr` (default: the same file), `env` added to this process's environment. With
        `http`, `--http-port 0` is added and the HTTP port read too. `wait_for`: names of other
        listeners whose `NAME listening on` lines to wait for as well. `wrapper`: a command
        prefix to run the server under (see server_command).

        Returns once the server listens and, if `serving`, once its health says SERVING, each
        within `timeout` s; else stops it and raises LaunchError. `guard` wraps starting the
        process and stopping it after a failure: a caller that turns signals into exceptions
        passes one that holds them back, so that none leaves a server running that nobody stops.
        """
        stderr = stderr or stdout
        for log in (stdout, stderr):
            try:
                log.parent.mkdir(parents=True, exist_ok=True)
            except (FileExistsError, NotADirectoryError):  # a part of the folder path is a file
                raise LaunchError(
                    f"cannot write the server's log {log}: {log.parent} is not a folder"
                ) from None
        process: subprocess.Popen[bytes] | None = None
        try:
            with contextlib.ExitStack() as files:
                out = files.enter_context(open(stdout, "wb"))
                err = out if stderr == stdout else files.enter_context(open(stderr, "wb"))
                with guard():
                    extra = ("--http-port", "0") if http else ()
                    process = subprocess.Popen(
                        server_command(
                            model,
                            *args,
                            *extra,
                            python_args=python_args,
                            model_flag=model_flag,
                            wrapper=wrapper,
                        ),
                        stdout=out,
                        stderr=err,
                        stdin=subprocess.DEVNULL,
                        cwd=cwd,
                        env={**os.environ, **env} if env is not None else None,
                    )
            names = (*wait_for, *(("http",) if http else ()))
            host, port, listeners = _wait_listening(process, stdout, stderr, timeout, names)
            server = cls(
                process=process,
                host=host,
                port=port,
                stdout_path=stdout,
                stderr_path=stderr,
                health_credentials=health_credentials,
                listeners=listeners,
            )
            if serving:
                server.wait_serving(timeout)
        except BaseException:
            if process is not None:
                with guard():
                    _stop(process, signal.SIGTERM, STOP_SECONDS)
            raise
        return server

    @property
    def pid(self) -> int:
        """The server's process id."""
        return self.process.pid

    @property
    def target(self) -> str:
        """HOST:PORT, for grpc.insecure_channel and the clients' --target."""
        return f"{self.host}:{self.port}"

    @property
    def http_port(self) -> int | None:
        """The HTTP port, when started with `http=True` (the server's --http-port)."""
        address = self.listeners.get("http")
        return None if address is None else int(address.rsplit(":", 1)[1])

    @property
    def http_url(self) -> str:
        """http://HOST:HTTP_PORT, for a server started with `http=True`."""
        if self.http_port is None:
            raise LaunchError("this server was started without HTTP (http=True)")
        return f"http://{self.host}:{self.http_port}"

    def wait_serving(self, timeout: float = START_SECONDS) -> None:
        """Wait until health (overall service "") says SERVING; LaunchError if the server exits
        or `timeout` s pass first."""
        wait_for_health(
            self.target, SERVING, timeout, self._check_alive, credentials=self.health_credentials
        )

    def stop(self, sig: int = signal.SIGTERM, timeout: float = STOP_SECONDS) -> int:
        """Send `sig` (unless the server has exited already) and return its exit code; a server
        that ignores the signal for `timeout` s is killed (exit code -9)."""
        return _stop(self.process, sig, timeout)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _check_alive(self) -> None:
        _check_alive(self.process, self.stderr_path)


def wait_for_health(
    target: str,
    status: int = SERVING,
    timeout: float = START_SECONDS,
    check: Callable[[], None] | None = None,
    credentials: grpc.ChannelCredentials | None = None,
) -> None:
    """Poll grpc.health.v1 at `target` (overall service "", over TLS with `credentials`) until it
    reports `status`, calling `check` (which may raise) before each try; LaunchError after
    `timeout` s."""
    deadline = time.monotonic() + timeout
    request = health_pb2.HealthCheckRequest(service="")
    channel = (
        grpc.secure_channel(target, credentials)
        if credentials is not None
        else grpc.insecure_channel(target)
    )
    with channel:
        health = health_pb2_grpc.HealthStub(channel)
        while (left := deadline - time.monotonic()) > 0:
            if check is not None:
                check()
            # Never past the deadline, but long enough for an answer to arrive at all.
            wait = max(_MIN_CHECK_SECONDS, min(_CHECK_SECONDS, left))
            try:
                if health.Check(request, timeout=wait).status == status:
                    return
            except grpc.RpcError:
                pass  # not answering yet: ask again
            time.sleep(_POLL_SECONDS)
    name = health_pb2.HealthCheckResponse.ServingStatus.Name(status)
    raise _failed(f"the server at {target} was not {name} after {timeout:g} s")


def _wait_listening(
    process: subprocess.Popen[bytes],
    stdout: Path,
    stderr: Path,
    timeout: float,
    names: Sequence[str] = (),
) -> tuple[str, int, dict[str, str]]:
    """The gRPC host and port once announced, with the HOST:PORT of every other listener
    announced by then (`NAME listening on HOST:PORT`), and of each of `names` at least."""
    deadline = time.monotonic() + timeout
    grpc_address: tuple[str, int] | None = None
    listeners: dict[str, str] = {}
    while time.monotonic() < deadline:
        # Only whole lines: the server may be halfway through writing one.
        for line in stdout.read_text(errors="replace").splitlines(keepends=True):
            words = line.split()
            if not line.endswith("\n"):
                break
            if line.startswith("listening on "):
                host, port = words[2].rsplit(":", 1)
                grpc_address = host, int(port)
            elif len(words) == 4 and words[1:3] == ["listening", "on"]:
                listeners[words[0]] = words[3]
        if grpc_address is not None and all(name in listeners for name in names):
            return *grpc_address, listeners
        _check_alive(process, stderr)
        time.sleep(_POLL_SECONDS)
    missing = [f"`{name} listening on`" for name in names if name not in listeners]
    if grpc_address is None:
        missing.insert(0, "`listening on`")
    raise _failed(f"the server printed no {' or '.join(missing)} line in {timeout:g} s")


def _check_alive(process: subprocess.Popen[bytes], stderr: Path | None) -> None:
    if process.poll() is not None:
        text = stderr.read_text(errors="replace") if stderr is not None else ""
        lines = text.strip().splitlines()
        last = lines[-1] if lines else "no output"
        raise _failed(f"the server exited with code {process.returncode}: {last}")


def _failed(message: str) -> LaunchError:
    """A server that did not start or answer: a failure (exit 1), as a call that failed."""
    error = LaunchError(message)
    error.failure = True
    return error


def _stop(process: subprocess.Popen[bytes], sig: int, timeout: float) -> int:
    if process.poll() is None:
        process.send_signal(sig)
    try:
        return process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait()
