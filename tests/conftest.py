"""Fixtures shared by every test folder: the bundled data, a trained artifact, exported models and
a real server started as a subprocess on a free port.

Artifacts and models are made once per session through the same command lines a user runs.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray

from scratchnet.artifact import Artifact, load_artifact
from scratchnet.datasets import Dataset, load_dataset
from scratchnet.idx import write_idx
from scratchnet.launcher import STOP_SECONDS, ServerProcess
from tests.certificates import Pem, client_credentials, make_pki

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


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


UNPRIVILEGED = (
    ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups"]
    if os.geteuid() == 0
    else []
)
"""A command prefix that runs as an unprivileged user, for whom file permissions hold (root reads
everything): setpriv is util-linux's, on every Debian."""


# --- small data sets on disk ----------------------------------------------------------------
Arrays = dict[str, NDArray[Any]]
IDX_NAMES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def make_toy(
    height: int = 5,
    width: int = 7,
    classes: int = 3,
    train: int = 150,
    test: int = 45,
    seed: int = 0,
) -> Arrays:
    """A learnable data set: each class lights its own random pattern, plus noise."""
    rng = np.random.default_rng(seed)
    patterns = rng.random((classes, height, width)) < 0.4

    def part(count: int) -> tuple[NDArray[np.uint8], NDArray[np.uint8]]:
        labels = (np.arange(count) % classes).astype(np.uint8)
        noise = rng.integers(0, 60, size=(count, height, width))
        images = np.where(patterns[labels], 255 - noise, noise).astype(np.uint8)
        return images, labels

    train_images, train_labels = part(train)
    test_images, test_labels = part(test)
    return {
        "train_images": train_images,
        "train_labels": train_labels,
        "test_images": test_images,
        "test_labels": test_labels,
    }


def write_idx_dir(
    folder: Path, arrays: Arrays, compress: bool = True, dotted: bool = False
) -> Path:
    """Write the four arrays as IDX files named like MNIST's (or `train-images.idx3-ubyte`)."""
    folder.mkdir(parents=True, exist_ok=True)
    for role, name in IDX_NAMES.items():
        if dotted:
            name = name.replace("-idx", ".idx")
        write_idx(folder / (name + (".gz" if compress else "")), arrays[role], compress)
    return folder


@pytest.fixture(scope="session")
def toy_maker() -> Callable[..., Arrays]:
    """`make_toy(height, width, classes, train, test, seed)`."""
    return make_toy


@pytest.fixture(scope="session")
def idx_writer() -> Callable[..., Path]:
    """`write_idx_dir(folder, arrays, compress=True, dotted=False)`."""
    return write_idx_dir


@pytest.fixture
def toy_idx(tmp_path: Path) -> Path:
    """A gzip IDX directory of 5x7 images in 3 classes."""
    return write_idx_dir(tmp_path / "toy", make_toy())


def assert_one_line_error(
    result: subprocess.CompletedProcess[str],
    program: str,
    *fragments: str,
    code: int | None = 2,
) -> str:
    """A command line's failure as users must see it: exit `code` (any non-zero if None), nothing
    on stdout, no traceback, one stderr line `PROGRAM: error: ...` holding every fragment."""
    if code is None:
        assert result.returncode != 0, result.stderr
    else:
        assert result.returncode == code, result.stderr
    assert result.stdout == "", result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"{program}: error: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


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
def artifact(article_artifact: Path) -> Artifact:
    """The parameters the article models (and so the shared servers) were exported from."""
    return load_artifact(article_artifact)


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


class RunningServer(ServerProcess):
    """A server as tests use it: its output at hand, and a stop that fails the test when the
    server ignores the signal."""

    @property
    def stdout_lines(self) -> list[str]:
        """What the server has written to stdout so far, line by line."""
        return self.stdout_path.read_text().splitlines() if self.stdout_path else []

    def stderr(self) -> str:
        """What the server has written to stderr so far."""
        return self.stderr_path.read_text() if self.stderr_path else ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = STOP_SECONDS) -> int:
        """Send `sig`, wait for the exit and return the exit code."""
        code = super().stop(sig, timeout)
        if code == -signal.SIGKILL and sig != signal.SIGKILL:
            raise AssertionError(f"server ignored signal {sig} for {timeout} s")
        return code


def start_server(
    model: Path, *args: str, tmp_dir: Path, wait_serving: bool = True, **options: Any
) -> RunningServer:
    """Start `python -m server --model MODEL --port 0 ARGS…` with its output in `tmp_dir`, wait
    for `listening on HOST:PORT` and (unless told otherwise) for health SERVING.

    `options` (env, python_args, timeout, …) go to ServerProcess.start as they are.
    """
    logs = tmp_dir / f"server-{time.monotonic_ns()}"
    return RunningServer.start(
        model,
        *args,
        stdout=logs.with_suffix(".stdout"),
        stderr=logs.with_suffix(".stderr"),
        cwd=REPO,
        serving=wait_serving,
        **options,
    )


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Pem]:
    """Throwaway CAs and certificates for the TLS tests (tests.certificates.make_pki)."""
    return make_pki(tmp_path_factory.mktemp("pki"))


TOKENS = ("first-token", "second-token")
"""The bearer tokens the `secured` server takes."""


@pytest.fixture(scope="session")
def secured(
    model_onnx: Path, pki: dict[str, Pem], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    """One server for the session with mutual TLS (pki's "server", clients of "client_ca") and
    bearer tokens (TOKENS) together, on the gRPC and HTTP ports."""
    folder = tmp_path_factory.mktemp("secured")
    tokens = folder / "tokens"
    tokens.write_text("# one per line\n" + "\n".join(TOKENS) + "\n")
    running = start_server(
        model_onnx,
        "--tls-cert", str(pki["server"].cert), "--tls-key", str(pki["server"].key),
        "--tls-client-ca", str(pki["client_ca"].cert), "--auth-token-file", str(tokens),
        tmp_dir=folder,
        http=True,
        health_credentials=client_credentials(pki),
    )  # fmt: skip
    yield running
    assert running.stop() == 0


@pytest.fixture(scope="session")
def server(model_onnx: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """One server for the session, serving the float32 article model."""
    running = start_server(model_onnx, tmp_dir=tmp_path_factory.mktemp("server"))
    yield running
    assert running.stop() == 0


@pytest.fixture(scope="session")
def http_server(
    model_onnx: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    """One server for the session, serving the float32 article model over gRPC and HTTP."""
    running = start_server(model_onnx, tmp_dir=tmp_path_factory.mktemp("http-server"), http=True)
    yield running
    assert running.stop() == 0


@pytest.fixture(scope="session")
def uint8_server(
    model_onnx_uint8: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    """One server for the session, serving the uint8 article model."""
    running = start_server(model_onnx_uint8, tmp_dir=tmp_path_factory.mktemp("server-uint8"))
    yield running
    assert running.stop() == 0


@dataclass(frozen=True)
class GatedServer:
    """A server with one inference thread and a queue of 8, whose runs wait while `gate`
    exists (tests.server.workers.closed): its calls wait, whatever the speed of the machine."""

    server: RunningServer
    gate: Path


@pytest.fixture(scope="session")
def gated_server(
    model_onnx: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatedServer]:
    """The session's GatedServer."""
    from tests.server.workers import start_gated_server  # workers imports this module

    folder = tmp_path_factory.mktemp("gated")
    gate = folder / "gate"
    running = start_gated_server(
        model_onnx, gate, "--workers", "1", "--max-queue", "8", tmp_dir=folder
    )
    yield GatedServer(running, gate)
    gate.unlink(missing_ok=True)
    assert running.stop() == 0


def processes_mentioning(text: str) -> list[str]:
    """The command lines of running processes that contain `text`."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            words = cmdline.read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue  # ended meanwhile
        if text in words:
            found.append(" ".join(words))
    return found
