"""Fixtures shared by every test folder: the bundled data, a trained artifact, exported models and
a real server started as a subprocess on a free port.

Artifacts and models are made once per session through the same command lines a user runs.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from trainer.datasets import Dataset, load_dataset

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
SERVER_START_SECONDS = 60.0


def run_module(
    *args: str | os.PathLike[str],
    check: bool = True,
    timeout: float = 300.0,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run `python -m <args>` from the repository root, capturing text output."""
    result = subprocess.run(
        [PYTHON, "-m", *map(str, args)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        stdin=subprocess.DEVNULL,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"python -m {' '.join(map(str, args))} exited {result.returncode}:\n{result.stderr}"
        )
    return result


@pytest.fixture(scope="session")
def mnist() -> Dataset:
    """The bundled MNIST, checksums verified."""
    return load_dataset(None)


@pytest.fixture(scope="session")
def article_artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An artifact trained with the defaults (the article's exact recipe) on the bundled MNIST."""
    path = tmp_path_factory.mktemp("artifact") / "model.npz"
    run_module("trainer", "--quiet", "-o", path)
    return path


@pytest.fixture(scope="session")
def model_onnx(article_artifact: Path) -> Path:
    """The article artifact exported with the default options (float32 input)."""
    path = article_artifact.with_name("model.onnx")
    run_module("export", article_artifact, "-o", path)
    return path


@pytest.fixture(scope="session")
def model_onnx_uint8(article_artifact: Path) -> Path:
    """The article artifact exported with `--input-dtype uint8`."""
    path = article_artifact.with_name("model-uint8.onnx")
    run_module("export", article_artifact, "-o", path, "--input-dtype", "uint8")
    return path


@dataclass
class RunningServer:
    """A `python -m server` subprocess and where to reach it."""

    process: subprocess.Popen[str]
    host: str
    port: int
    stdout_lines: list[str] = field(default_factory=list)
    stderr_path: Path | None = None

    @property
    def target(self) -> str:
        """HOST:PORT for grpc.insecure_channel."""
        return f"{self.host}:{self.port}"

    def stderr(self) -> str:
        """What the server has written to stderr so far."""
        return self.stderr_path.read_text() if self.stderr_path else ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        """Send `sig`, wait for the exit and return the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"server ignored signal {sig} for {timeout} s") from None


def start_server(
    model: Path,
    *args: str,
    env: dict[str, str] | None = None,
    tmp_dir: Path | None = None,
    wait_serving: bool = True,
) -> RunningServer:
    """Start `python -m server --model MODEL --port 0 ARGS…`, wait for `listening on HOST:PORT`
    and (unless told otherwise) for health SERVING."""
    stderr_path = Path(tmp_dir or REPO / "build") / f"server-{time.monotonic_ns()}.stderr"
    stderr_path.parent.mkdir(parents=True, exist_ok=True)
    with open(stderr_path, "w") as stderr_file:
        process = subprocess.Popen(
            [
                PYTHON,
                "-m",
                "server",
                "--model",
                str(model),
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                *args,
            ],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=stderr_file,
            stdin=subprocess.DEVNULL,
            text=True,
            env={**os.environ, **(env or {})},
        )
    assert process.stdout is not None
    first_line: list[str] = []
    reader_done = threading.Event()
    lines: list[str] = []

    def read_stdout() -> None:
        assert process.stdout is not None
        # Closed here at end of output, since nothing else reads it (pytest treats an unclosed
        # pipe's ResourceWarning as an error).
        with process.stdout:
            for line in process.stdout:
                lines.append(line.rstrip("\n"))
                if not first_line:
                    first_line.append(line)
                    reader_done.set()
        reader_done.set()

    threading.Thread(target=read_stdout, daemon=True).start()
    if not reader_done.wait(SERVER_START_SECONDS) or not first_line:
        process.kill()
        raise AssertionError(f"server printed no `listening on` line:\n{stderr_path.read_text()}")
    words = first_line[0].split()
    assert words[:2] == ["listening", "on"], f"unexpected first line {first_line[0]!r}"
    host, port = words[2].rsplit(":", 1)
    server = RunningServer(process, host, int(port), lines, stderr_path)
    if wait_serving:
        wait_for_health(server.target, health_pb2.HealthCheckResponse.SERVING)
    return server


def wait_for_health(target: str, status: int, timeout: float = SERVER_START_SECONDS) -> None:
    """Poll grpc.health.v1 (overall service "") until it reports `status`."""
    deadline = time.monotonic() + timeout
    last: object = None
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            try:
                last = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=2).status
                if last == status:
                    return
            except grpc.RpcError as error:
                last = error.code()
            time.sleep(0.05)
    raise AssertionError(f"health of {target} never became {status} (last: {last})")


@pytest.fixture(scope="session")
def server(model_onnx: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """One server for the session, serving the float32 article model."""
    running = start_server(model_onnx, tmp_dir=tmp_path_factory.mktemp("server"))
    yield running
    running.stop()


@pytest.fixture(scope="session")
def uint8_server(
    model_onnx_uint8: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    """One server for the session, serving the uint8 article model."""
    running = start_server(model_onnx_uint8, tmp_dir=tmp_path_factory.mktemp("server-uint8"))
    yield running
    assert running.stop() == 0
