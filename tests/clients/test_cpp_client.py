"""End to end: the C++ client (clients/cpp, built by `make cpp-client`) against the real server.

Its labels must equal the Python client's and the numpy forward pass's on the same images; bad
input must end in one line on stderr and a non-zero exit.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray

from clients import Client
from scratchnet.artifact import Artifact
from scratchnet.datasets import BUNDLED_MNIST, Dataset
from scratchnet.forward import predict
from scratchnet.idx import write_idx
from tests.conftest import RunningServer, assert_one_line_error, start_server
from tests.server.onnx_models import build_classifier

REPO = Path(__file__).resolve().parents[2]
BINARY = REPO / "clients" / "cpp" / "build" / "scratchnet_predict"
EXIT_SERVER_ERROR = 1
EXIT_INPUT_ERROR = 2


@pytest.fixture(scope="module")
def binary() -> Path:
    """The built client; its absence is a failure, not a skip."""
    if not os.access(BINARY, os.X_OK):
        pytest.fail(f"{BINARY.relative_to(REPO)} is missing: build it with `make cpp-client`")
    return BINARY


def run_client(binary: Path, *args: str | os.PathLike[str]) -> subprocess.CompletedProcess[str]:
    """Run the C++ client with `args`, capturing text output."""
    return subprocess.run(
        [binary, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def write_images_and_labels(
    folder: Path, images: NDArray[np.generic], labels: NDArray[np.int64], compress: bool
) -> tuple[Path, Path]:
    """IDX files of uint8 `images` and their `labels` in `folder`."""
    assert images.dtype == np.uint8, images.dtype
    suffix = ".gz" if compress else ""
    images_path, labels_path = folder / f"images.idx{suffix}", folder / f"labels.idx{suffix}"
    write_idx(images_path, images.astype(np.uint8), compress=compress)
    write_idx(labels_path, labels.astype(np.uint8), compress=compress)
    return images_path, labels_path


def assert_cpp_error(result: subprocess.CompletedProcess[str], code: int, *words: str) -> None:
    """The run failed with `code` and one stderr line naming each of `words`."""
    assert_one_line_error(result, "scratchnet_predict", *words, code=code)


def test_test_set_labels_equal_python_client_and_numpy(
    binary: Path, server: RunningServer, mnist: Dataset, artifact: Artifact
) -> None:
    # The bundled files themselves, as a user passes them; `mnist` holds the same arrays.
    images_path = BUNDLED_MNIST / "t10k-images-idx3-ubyte.gz"
    labels_path = BUNDLED_MNIST / "t10k-labels-idx1-ubyte.gz"
    result = run_client(
        binary, "--target", server.target, "--images", images_path, "--labels", labels_path
    )
    assert result.returncode == 0, result.stderr
    labels = np.array(result.stdout.split(), dtype=np.int64)

    with Client(server.target) as client:
        python_labels = client.predict(mnist.test_images).labels
    numpy_labels = predict(artifact.weights, artifact.biases, mnist.test_images)
    np.testing.assert_array_equal(labels, python_labels)
    np.testing.assert_array_equal(labels, numpy_labels)

    correct = int((labels == mnist.test_labels).sum())
    count = len(mnist.test_labels)
    assert f"accuracy {correct / count:.4f} ({correct}/{count} correct)" in result.stderr


def test_uint8_model_raw_idx_json_and_labels_out(
    binary: Path, uint8_server: RunningServer, mnist: Dataset, tmp_path: Path
) -> None:
    images, true_labels = mnist.test_images[:3000], mnist.test_labels[:3000]
    images_path, labels_path = write_images_and_labels(tmp_path, images, true_labels, False)
    labels_out = tmp_path / "out" / "labels.txt"
    result = run_client(
        binary,
        "--target",
        uint8_server.target,
        "--images",
        images_path,
        "--labels",
        labels_path,
        "--batch-size",
        "100",
        "--labels-out",
        labels_out,
        "--json",
    )
    assert result.returncode == 0, result.stderr
    with Client(uint8_server.target) as client:
        python_labels = client.predict(images).labels
        info = client.model_info()
    labels = np.array(labels_out.read_text().split(), dtype=np.int64)
    np.testing.assert_array_equal(labels, python_labels)

    summary = json.loads(result.stdout)
    assert "labels" not in summary  # they went to --labels-out
    assert summary["images"] == len(images)
    assert summary["correct"] == int((labels == true_labels).sum())
    assert summary["accuracy"] == pytest.approx(float(np.mean(labels == true_labels)))
    assert (summary["model_name"], summary["model_version"]) == (info.name, info.version)
    assert summary["images_per_second"] > 0


def test_image_shape_comes_from_the_idx_header(binary: Path, tmp_path: Path) -> None:
    classes, height, width = 3, 5, 7  # a classifier this project did not export
    rng = np.random.default_rng(7)
    weights, biases = rng.normal(size=(classes, height, width)), rng.normal(size=classes)
    model = build_classifier(
        tmp_path / "foreign.onnx",
        weights,
        biases,
        input_dtype="uint8",
        input_name="x",
        outputs=[("scores", "logits")],
    )
    images = rng.integers(0, 256, size=(200, height, width), dtype=np.uint8)
    expected = predict(weights, biases, images)
    images_path, _ = write_images_and_labels(tmp_path, images, expected, compress=True)

    server = start_server(model, tmp_dir=tmp_path)
    try:
        result = run_client(binary, "--target", server.target, "--images", images_path)
    finally:
        server.stop()
    assert result.returncode == 0, result.stderr
    np.testing.assert_array_equal(np.array(result.stdout.split(), dtype=np.int64), expected)


def test_missing_file_is_one_line(binary: Path, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-images.idx.gz"
    result = run_client(binary, "--target", "127.0.0.1:1", "--images", missing)
    assert_cpp_error(result, EXIT_INPUT_ERROR, str(missing), "No such file")


def test_bad_flag_is_one_line(binary: Path) -> None:
    result = run_client(binary, "--target", "127.0.0.1:1", "--images", "x", "--batch-size", "0")
    assert_cpp_error(result, EXIT_INPUT_ERROR, "--batch-size", "positive integer")


def test_labels_of_another_length_are_refused(binary: Path, mnist: Dataset, tmp_path: Path) -> None:
    images_path, _ = write_images_and_labels(
        tmp_path, mnist.test_images[:10], mnist.test_labels[:10], compress=False
    )
    labels_path = tmp_path / "nine-labels.idx"
    write_idx(labels_path, mnist.test_labels[:9].astype(np.uint8), compress=False)
    result = run_client(
        binary, "--target", "127.0.0.1:1", "--images", images_path, "--labels", labels_path
    )
    assert_cpp_error(result, EXIT_INPUT_ERROR, str(labels_path), "9 labels, expected 10")


def test_truncated_file_is_one_line(binary: Path, mnist: Dataset, tmp_path: Path) -> None:
    images_path, _ = write_images_and_labels(
        tmp_path, mnist.test_images[:10], mnist.test_labels[:10], compress=False
    )
    images_path.write_bytes(images_path.read_bytes()[:-1])
    result = run_client(binary, "--target", "127.0.0.1:1", "--images", images_path)
    assert_cpp_error(result, EXIT_INPUT_ERROR, str(images_path), "truncated")


def test_images_of_another_shape_are_refused(
    binary: Path, server: RunningServer, mnist: Dataset, tmp_path: Path
) -> None:
    count, height, width = 5, *mnist.test_images.shape[1:]
    images_path, _ = write_images_and_labels(
        tmp_path, mnist.test_images[:count, 1:, :], mnist.test_labels[:count], compress=True
    )
    result = run_client(binary, "--target", server.target, "--images", images_path)
    assert_cpp_error(
        result,
        EXIT_INPUT_ERROR,
        f"expected shape [-1,{height},{width}]",
        f"got [{count},{height - 1},{width}]",
        str(images_path),
    )


def test_batch_size_above_the_model_limit_is_refused(
    binary: Path, server: RunningServer, mnist: Dataset, tmp_path: Path
) -> None:
    with Client(server.target) as client:
        limit = client.model_info().max_batch_size
    images_path, _ = write_images_and_labels(
        tmp_path, mnist.test_images[:10], mnist.test_labels[:10], compress=True
    )
    result = run_client(
        binary, "--target", server.target, "--images", images_path, "--batch-size", str(limit + 1)
    )
    assert_cpp_error(result, EXIT_INPUT_ERROR, f"at most {limit}")


def test_unreachable_server_is_one_line(
    binary: Path, mnist: Dataset, tmp_path: Path, closed_port: int
) -> None:
    images_path, _ = write_images_and_labels(
        tmp_path, mnist.test_images[:10], mnist.test_labels[:10], compress=True
    )
    result = run_client(
        binary, "--target", f"127.0.0.1:{closed_port}", "--images", images_path, "--timeout", "5"
    )
    assert_cpp_error(result, EXIT_SERVER_ERROR, "cannot reach the server", str(closed_port))


def test_silent_server_hits_the_deadline(binary: Path, mnist: Dataset, tmp_path: Path) -> None:
    images_path, _ = write_images_and_labels(
        tmp_path, mnist.test_images[:10], mnist.test_labels[:10], compress=True
    )
    with socket.socket() as silent:  # accepts connections (via the backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        target = f"127.0.0.1:{silent.getsockname()[1]}"
        result = run_client(binary, "--target", target, "--images", images_path, "--timeout", "0.5")
    assert_cpp_error(result, EXIT_SERVER_ERROR, "GetModelInfo", "0.5 s deadline")
