"""End to end: the C++ client (clients/cpp, built by `make cpp-client`) against the real server.

Its labels must equal the Python client's and the numpy forward pass's on the same images; bad
input must end in one line on stderr and a non-zero exit. Also: the model and version it asks
for (a model repository), TLS, mutual TLS and bearer tokens (a secured server), and replicas
behind one --target (two servers, one killed mid-run).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import TextIO

import grpc
import numpy as np
import pytest
from cryptography.hazmat.primitives import serialization
from numpy.typing import NDArray

from clients import Client
from scratchnet.api.inference import open_inference_grpc_pb2 as oip
from scratchnet.api.inference.open_inference_grpc_pb2_grpc import GRPCInferenceServiceStub
from scratchnet.artifact import Artifact, load_artifact, save_artifact
from scratchnet.datasets import BUNDLED_MNIST, Dataset
from scratchnet.forward import predict
from scratchnet.idx import write_idx
from tests.certificates import Pem
from tests.clients.failover import kill_mid_run
from tests.conftest import TOKENS, RunningServer, assert_one_line_error, run_module, start_server
from tests.server.onnx_models import build_classifier, random_classifier

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


def run_client(
    binary: Path,
    *args: str | os.PathLike[str],
    env: dict[str, str] | None = None,
    stdout: TextIO | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run the C++ client with `args` (and `env` added to the environment), capturing text;
    its standard output goes to `stdout` instead when given."""
    return subprocess.run(
        [binary, *map(str, args)],
        stdout=stdout or subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
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


def assert_cpp_error(result: subprocess.CompletedProcess[str], code: int, *words: str) -> str:
    """The run failed with `code` and one stderr line naming each of `words`; that line."""
    return assert_one_line_error(result, "scratchnet_predict", *words, code=code)


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
    # A symbolic link is written through, as the Python CLIs do, not replaced by a file.
    labels_out = tmp_path / "out" / "labels.txt"
    kept = tmp_path / "kept" / "labels.txt"
    kept.parent.mkdir()
    labels_out.parent.mkdir()
    labels_out.symlink_to(Path("..") / "kept" / "labels.txt")
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
    assert labels_out.is_symlink()
    labels = np.array(kept.read_text().split(), dtype=np.int64)
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


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("--bogus",), "unknown flag --bogus"),  # last: not "expects a value"
        (("--version",), "unknown flag --version"),
        (("--bogus", "x"), "unknown flag --bogus"),
        (("--timeout",), "--timeout expects a value"),
    ],
)
def test_an_unknown_flag_is_named_wherever_it_is(
    binary: Path, args: tuple[str, ...], words: str
) -> None:
    result = run_client(binary, "--target", "127.0.0.1:1", "--images", "x", *args)
    assert_cpp_error(result, EXIT_INPUT_ERROR, words)


@pytest.mark.parametrize("timeout", ["1e16", "9e15", "86400.5"])
def test_a_timeout_above_a_day_is_refused(
    binary: Path, mnist: Dataset, tmp_path: Path, closed_port: int, timeout: str
) -> None:
    # Its milliseconds overflowed an int64: a negative deadline, or a huge one gRPC's own
    # int64 nanoseconds could not hold, and every call failed at once as if the server were silent.
    images_path, _ = write_images_and_labels(
        tmp_path, mnist.test_images[:10], mnist.test_labels[:10], compress=False
    )
    base = ("--target", f"127.0.0.1:{closed_port}", "--images", images_path)
    result = run_client(binary, *base, "--timeout", timeout)
    assert_cpp_error(
        result, EXIT_INPUT_ERROR, "--timeout expects at most 86400 seconds (a day)", f"'{timeout}'"
    )
    # A day itself is taken: the run gets as far as the (closed) port.
    result = run_client(binary, *base, "--timeout", "86400")
    assert_cpp_error(result, EXIT_SERVER_ERROR, "cannot reach the server")


def test_labels_out_naming_a_folder_or_fifo_is_refused_before_connecting(
    binary: Path, mnist: Dataset, tmp_path: Path, closed_port: int
) -> None:
    images_path, _ = write_images_and_labels(
        tmp_path, mnist.test_images[:10], mnist.test_labels[:10], compress=False
    )
    missing = tmp_path / "missing"
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    cases = [
        (f"{missing}/", ["it names a folder (it ends in '/'), expected a file path"]),
        (str(tmp_path), ["it is a folder, expected a file path"]),
        ("", ["cannot write '': expected a file path"]),
        (str(fifo), ["it is not a regular file (a device, FIFO or socket), expected a file path"]),
    ]
    for labels_out, fragments in cases:
        result = run_client(
            binary, "--target", f"127.0.0.1:{closed_port}", "--images", images_path,
            "--labels-out", labels_out,
        )  # fmt: skip
        assert_cpp_error(result, EXIT_INPUT_ERROR, f"cannot write {labels_out}", *fragments)
    assert not missing.exists()  # "missing/" was no reason to create the folder


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


def test_labels_beyond_the_models_classes_are_refused(
    binary: Path, server: RunningServer, mnist: Dataset, tmp_path: Path
) -> None:
    # Scored, they would read as mistakes: a labelled set meant for another model.
    images_path, labels_path = write_images_and_labels(
        tmp_path, mnist.test_images[:10], np.full(10, 11), compress=False
    )
    result = run_client(
        binary, "--target", server.target, "--images", images_path, "--labels", labels_path
    )
    assert_cpp_error(
        result,
        EXIT_INPUT_ERROR,
        f"{labels_path}: the labels go up to 11, but model 'scratchnet' has only 10 classes",
    )


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


def test_a_full_standard_output_is_one_line_without_the_summary(
    binary: Path, server: RunningServer, mnist: Dataset, tmp_path: Path
) -> None:
    images_path, labels_path = write_images_and_labels(
        tmp_path, mnist.test_images[:10], mnist.test_labels[:10], compress=False
    )
    with open("/dev/full", "w") as full:  # every write fails with ENOSPC
        result = run_client(
            binary, "--target", server.target, "--images", images_path, "--labels", labels_path,
            stdout=full,
        )  # fmt: skip
    # The labels were not written: the run failed, and no "accuracy ..." line says otherwise.
    assert result.returncode == EXIT_SERVER_ERROR, result.stderr
    assert result.stderr == (
        "scratchnet_predict: error: cannot write to standard output (No space left on device)\n"
    )


def test_labels_out_that_cannot_be_written_after_the_calls_exits_1(
    binary: Path, server: RunningServer, mnist: Dataset, tmp_path: Path
) -> None:
    images_path, _ = write_images_and_labels(
        tmp_path, mnist.test_images[:10], mnist.test_labels[:10], compress=False
    )
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    labels_out = blocker / "labels.txt"  # under a file: only writing it finds that out
    result = run_client(
        binary, "--target", server.target, "--images", images_path, "--labels-out", labels_out
    )
    assert_cpp_error(result, EXIT_SERVER_ERROR, f"cannot write {labels_out}", "Not a directory")


# --- choosing the model and its version --------------------------------------------------------


@pytest.fixture(scope="module")
def variant_artifact(artifact: Artifact, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The article's parameters with shifted biases: a second model, made without training, that
    labels some test images unlike the article's."""
    path = tmp_path_factory.mktemp("variant") / "variant.npz"
    shift = np.random.default_rng(3).normal(scale=0.5, size=artifact.biases.shape)
    save_artifact(path, replace(artifact, biases=artifact.biases + shift))
    return path


@pytest.fixture(scope="module")
def repository_server(
    article_artifact: Path, variant_artifact: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    """A repository of `digits` version 1 (the article's model, the server's default) and
    `digits2` versions 2 (the article's) and 3 (the variant), both served."""
    root = tmp_path_factory.mktemp("repository")
    for artifact, name, version in [
        (article_artifact, "digits", "1"),
        (article_artifact, "digits2", "2"),
        (variant_artifact, "digits2", "3"),
    ]:
        run_module(
            "export", artifact, "--triton-repo", root, "--model-name", name,
            "--model-version", version,
        )  # fmt: skip
    with (root / "digits2" / "config.pbtxt").open("a") as config:
        config.write("version_policy: { all { } }\n")
    running = start_server(
        root, "--model-name", "digits", tmp_dir=root, model_flag="--model-repository"
    )
    yield running
    assert running.stop() == 0


@pytest.mark.parametrize(
    ("flags", "name", "version", "parameters"),
    [
        ((), "digits", "1", "article"),
        (("--model", "digits2"), "digits2", "3", "variant"),
        (("--model", "digits2", "--model-version", "2"), "digits2", "2", "article"),
    ],
    ids=["the server's default", "a model, its newest version", "a model and a version"],
)
def test_model_and_version_are_chosen(
    binary: Path,
    repository_server: RunningServer,
    mnist: Dataset,
    artifact: Artifact,
    variant_artifact: Path,
    tmp_path: Path,
    flags: tuple[str, ...],
    name: str,
    version: str,
    parameters: str,
) -> None:
    images_path, labels_path = write_images_and_labels(
        tmp_path, mnist.test_images[:2000], mnist.test_labels[:2000], compress=False
    )
    result = run_client(
        binary, "--target", repository_server.target, "--images", images_path,
        "--labels", labels_path, "--json", *flags,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert (summary["model_name"], summary["model_version"]) == (name, version)
    variant = load_artifact(variant_artifact)
    chosen, other = (artifact, variant) if parameters == "article" else (variant, artifact)
    images = mnist.test_images[:2000]
    assert summary["labels"] == predict(chosen.weights, chosen.biases, images).tolist()
    assert summary["labels"] != predict(other.weights, other.biases, images).tolist()


def test_an_unknown_version_is_one_line(
    binary: Path, repository_server: RunningServer, mnist: Dataset, tmp_path: Path
) -> None:
    images_path, _ = write_images_and_labels(
        tmp_path, mnist.test_images[:10], mnist.test_labels[:10], compress=False
    )
    result = run_client(
        binary, "--target", repository_server.target, "--images", images_path,
        "--model", "digits2", "--model-version", "7",
    )  # fmt: skip
    assert_cpp_error(result, EXIT_SERVER_ERROR, "NOT_FOUND", "'digits2' version 7")


# --- TLS, mutual TLS and bearer tokens ---------------------------------------------------------


def _tls(pki: dict[str, Pem], trust: str = "ca", client: str | None = "client") -> list[str]:
    flags = ["--tls-ca", str(pki[trust].cert)]
    if client:
        flags += ["--tls-cert", str(pki[client].cert), "--tls-key", str(pki[client].key)]
    return flags


def test_the_right_client_is_served(
    binary: Path,
    secured: RunningServer,
    pki: dict[str, Pem],
    mnist: Dataset,
    artifact: Artifact,
    tmp_path: Path,
) -> None:
    images_path, _ = write_images_and_labels(
        tmp_path, mnist.test_images[:2000], mnist.test_labels[:2000], compress=False
    )
    token_file = tmp_path / "token"
    token_file.write_text(TOKENS[0] + "\n")
    expected = predict(artifact.weights, artifact.biases, mnist.test_images[:2000])
    # A bundle of CAs, another first, passes the check of the TLS files (the last --tls-ca wins).
    bundle = tmp_path / "bundle.crt"
    bundle.write_bytes(pki["other"].cert.read_bytes() + pki["ca"].cert.read_bytes())
    runs: list[tuple[list[str], dict[str, str]]] = [
        (["--token-file", str(token_file)], {}),
        ([], {"SCRATCHNET_TOKEN": TOKENS[1]}),
        (["--tls-ca", str(bundle)], {"SCRATCHNET_TOKEN": TOKENS[0]}),
    ]
    for flags, env in runs:
        args = ["--target", secured.target, "--images", str(images_path), *_tls(pki), *flags]
        result = run_client(binary, *args, env=env)
        assert result.returncode == 0, result.stderr
        assert len(result.stderr.splitlines()) == 1, result.stderr  # the summary, no gRPC log
        np.testing.assert_array_equal(np.array(result.stdout.split(), dtype=np.int64), expected)


@pytest.mark.parametrize(
    ("trust", "client", "token", "fragments"),
    [
        (None, None, TOKENS[0], ["UNAVAILABLE", "If it requires TLS, pass --tls-ca FILE"]),
        ("other", "client", TOKENS[0], ["certificate verify failed", "signed by the CA trusted"]),
        ("ca", None, TOKENS[0], ["UNAVAILABLE", "clients without a certificate (else pass"]),
        ("ca", "stranger", TOKENS[0], ["UNAVAILABLE", "accept this client certificate"]),
        ("ca", "client", "", ["UNAUTHENTICATED", "no bearer token was sent: pass --token-file"]),
        ("ca", "client", "guess", ["UNAUTHENTICATED", "the bearer token sent", "was refused"]),
    ],
    ids=[
        "plaintext", "another CA", "no client certificate", "a stranger's certificate",
        "no token", "a wrong token",
    ],
)  # fmt: skip
def test_refusals_are_one_line_saying_what_to_change(
    binary: Path,
    secured: RunningServer,
    pki: dict[str, Pem],
    mnist: Dataset,
    tmp_path: Path,
    trust: str | None,
    client: str | None,
    token: str,
    fragments: list[str],
) -> None:
    images_path, _ = write_images_and_labels(
        tmp_path, mnist.test_images[:10], mnist.test_labels[:10], compress=False
    )
    flags = _tls(pki, trust, client) if trust else []
    result = run_client(
        binary, "--target", secured.target, "--images", images_path, "--timeout", "10", *flags,
        env={"SCRATCHNET_TOKEN": token},
    )  # fmt: skip
    line = assert_cpp_error(result, EXIT_SERVER_ERROR, *fragments)
    assert TOKENS[0] not in line and "guess" not in line


def test_bad_tls_and_token_files_are_named(
    binary: Path, pki: dict[str, Pem], mnist: Dataset, tmp_path: Path
) -> None:
    empty, two = tmp_path / "empty", tmp_path / "two"
    empty.write_text("\n")
    two.write_text("secret-one\nsecret-two\n")
    images_path, _ = write_images_and_labels(
        tmp_path, mnist.test_images[:10], mnist.test_labels[:10], compress=False
    )
    base = ("--target", "127.0.0.1:1", "--images", images_path)
    readme = str(REPO / "README.md")
    cases = [
        (("--tls-cert", str(pki["client"].cert)), ["--tls-cert and --tls-key go together"]),
        (("--tls-ca", str(tmp_path / "no.pem")), ["--tls-ca", "no.pem", "cannot read it"]),
        (("--tls-ca", readme), ["--tls-ca", "README.md: not a PEM certificate"]),
        (
            ("--tls-cert", str(pki["client"].cert), "--tls-key", str(pki["client"].cert)),
            ["--tls-key", "not a PEM private key"],
        ),
        (("--token-file", str(empty)), ["--token-file", "holds no token"]),
        (("--token-file", str(two)), ["expected one token on one line"]),
        (("--model", ""), ["--model expects a non-empty value"]),
        (("--target", "127.0.0.1:1,nohost"), ["expected HOST:PORT, several separated by commas"]),
    ]
    for flags, fragments in cases:
        line = assert_cpp_error(run_client(binary, *base, *flags), EXIT_INPUT_ERROR, *fragments)
        assert "secret" not in line


def test_tls_files_are_parsed_and_matched_before_connecting(
    binary: Path, pki: dict[str, Pem], mnist: Dataset, tmp_path: Path, closed_port: int
) -> None:
    # gRPC parses them only when it connects: each of these was reported as an unreachable
    # server ("UNAVAILABLE: empty address list"), exit 1.
    images_path, _ = write_images_and_labels(
        tmp_path, mnist.test_images[:10], mnist.test_labels[:10], compress=False
    )
    ca, cert, key = pki["ca"].cert, pki["client"].cert, pki["client"].key
    cut_ca, cut_cert, cut_key = tmp_path / "cut-ca.crt", tmp_path / "cut.crt", tmp_path / "cut.key"
    cut_ca.write_bytes(ca.read_bytes()[:100])
    cut_cert.write_bytes(cert.read_bytes()[:-30])
    cut_key.write_bytes(key.read_bytes()[:100])
    good_then_cut = tmp_path / "good-then-cut.crt"
    good_then_cut.write_bytes(ca.read_bytes() + cut_ca.read_bytes())
    encrypted = tmp_path / "encrypted.key"
    encrypted.write_bytes(
        serialization.load_pem_private_key(key.read_bytes(), None).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    base = ("--target", f"127.0.0.1:{closed_port}", "--images", images_path, "--tls-ca", ca)
    stranger_key = pki["stranger"].key
    cases = [
        (
            ("--tls-cert", cert, "--tls-key", stranger_key),
            [f"--tls-key {stranger_key}: not the private key of the certificate in --tls-cert "
             f"{cert}"],
        ),
        (("--tls-ca", cut_ca), [f"--tls-ca {cut_ca}: not a readable certificate"]),
        (("--tls-ca", good_then_cut), [f"--tls-ca {good_then_cut}: not a readable certificate"]),
        (
            ("--tls-cert", cut_cert, "--tls-key", key),
            [f"--tls-cert {cut_cert}: not a readable certificate"],
        ),
        (
            ("--tls-cert", cert, "--tls-key", cut_key),
            [f"--tls-key {cut_key}: not a readable private key"],
        ),
        (
            ("--tls-cert", cert, "--tls-key", encrypted),
            ["--tls-key", "an encrypted private key, expected an unencrypted"],
        ),
    ]  # fmt: skip
    for flags, fragments in cases:
        assert_cpp_error(run_client(binary, *base, *flags), EXIT_INPUT_ERROR, *fragments)


@pytest.mark.parametrize("flag", ["--tls-ca", "--tls-cert", "--tls-key", "--token-file"])
def test_a_folder_as_a_tls_or_token_file_is_named(
    binary: Path, pki: dict[str, Pem], mnist: Dataset, tmp_path: Path, flag: str
) -> None:
    images_path, _ = write_images_and_labels(
        tmp_path, mnist.test_images[:10], mnist.test_labels[:10], compress=False
    )
    folder = tmp_path / "folder"
    folder.mkdir()
    files = {"--tls-cert": pki["client"].cert, "--tls-key": pki["client"].key}
    if flag in files:
        files[flag] = folder
        flags = [part for pair in files.items() for part in map(str, pair)]
    else:
        flags = [flag, str(folder)]
    result = run_client(binary, "--target", "127.0.0.1:1", "--images", images_path, *flags)
    assert_cpp_error(result, EXIT_INPUT_ERROR, f"{flag} {folder}: it is a folder, expected a file")


# --- replicas: several targets, round robin, retries -------------------------------------------


def served(target: str) -> tuple[int, int]:
    """(successful calls, images) the server at `target` has answered (Triton's statistics)."""
    with grpc.insecure_channel(target) as channel:
        reply = GRPCInferenceServiceStub(channel).ModelStatistics(
            oip.ModelStatisticsRequest(), timeout=10
        )
    return (
        sum(stats.inference_stats.success.count for stats in reply.model_stats),
        sum(stats.inference_count for stats in reply.model_stats),
    )


@pytest.fixture
def replicas(model_onnx: Path, tmp_path: Path) -> Iterator[list[RunningServer]]:
    """Two servers of the article model on free ports."""
    servers = [start_server(model_onnx, tmp_dir=tmp_path) for _ in range(2)]
    yield servers
    for server in servers:
        if server.process.poll() is None:  # not the one a test killed
            assert server.stop() == 0


def test_both_replicas_get_traffic_and_the_labels_of_one_server(
    binary: Path, replicas: list[RunningServer], mnist: Dataset, artifact: Artifact
) -> None:
    labels_path = BUNDLED_MNIST / "t10k-labels-idx1-ubyte.gz"
    images_path = BUNDLED_MNIST / "t10k-images-idx3-ubyte.gz"
    before = [served(server.target) for server in replicas]
    targets = ",".join(server.target for server in replicas)
    result = run_client(
        binary, "--target", targets, "--images", images_path, "--labels", labels_path,
        "--batch-size", "500",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    after = [served(server.target) for server in replicas]
    calls = [now[0] - then[0] for now, then in zip(after, before, strict=True)]
    images = [now[1] - then[1] for now, then in zip(after, before, strict=True)]
    assert all(count > 0 for count in calls), calls
    assert sum(images) == 10000, "each image scored once, on one replica"
    expected = predict(artifact.weights, artifact.biases, mnist.test_images)
    np.testing.assert_array_equal(np.array(result.stdout.split(), dtype=np.int64), expected)


def test_a_replica_killed_mid_run_costs_no_image(
    binary: Path, replicas: list[RunningServer], mnist: Dataset, artifact: Artifact
) -> None:
    victim, survivor = replicas
    images_path = BUNDLED_MNIST / "t10k-images-idx3-ubyte.gz"
    labels_path = BUNDLED_MNIST / "t10k-labels-idx1-ubyte.gz"
    # Small batches: a thousand calls, so that the run is under way for a while.
    command = [str(binary), "--target", f"{victim.target},{survivor.target}"]
    command += ["--images", str(images_path), "--labels", str(labels_path), "--batch-size", "10"]
    start = served(victim.target)[0]
    stdout, stderr, killed_at = kill_mid_run(
        command, victim, lambda: served(victim.target)[0] != start, REPO
    )
    expected = predict(artifact.weights, artifact.biases, mnist.test_images)
    labels = np.array(stdout.split(), dtype=np.int64)
    np.testing.assert_array_equal(labels, expected)  # every image once, in order
    correct = int((expected == mnist.test_labels).sum())
    assert f"accuracy {correct / 10000:.4f} ({correct}/10000 correct)" in stderr
    assert time.monotonic() - killed_at < 60  # the survivor took over, no long timeout


def test_replicas_must_serve_one_model_and_the_tightest_limit_holds(
    binary: Path,
    server: RunningServer,
    model_onnx: Path,
    mnist: Dataset,
    tmp_path: Path,
    closed_port: int,
) -> None:
    images_path, _ = write_images_and_labels(
        tmp_path, mnist.test_images[:700], mnist.test_labels[:700], compress=False
    )
    other = build_classifier(tmp_path / "other.onnx", *random_classifier(10, *mnist.image_shape))
    small = start_server(model_onnx, "--max-batch", "100", tmp_dir=tmp_path)
    stranger = start_server(other, tmp_dir=tmp_path)
    try:
        for first, second in ((server, small), (small, server)):  # whichever is listed first
            targets = f"{first.target},{second.target}"
            result = run_client(
                binary, "--target", targets, "--images", images_path, "--batch-size", "101"
            )
            assert_cpp_error(result, EXIT_INPUT_ERROR, "expected at most 100")
        # Default batches (over a thousand images) would be refused by `small`.
        targets = f"{server.target},{small.target}"
        result = run_client(binary, "--target", targets, "--images", images_path)
        assert result.returncode == 0, result.stderr
        assert len(result.stdout.split()) == 700
        # A replica that is down is skipped, not named.
        down = f"127.0.0.1:{closed_port}"
        targets = f"{server.target},{down},{stranger.target}"
        result = run_client(binary, "--target", targets, "--images", images_path)
        line = assert_cpp_error(
            result, EXIT_SERVER_ERROR,
            f"the replicas of {targets} serve different models as 'scratchnet' version 1 "
            f"({server.target}: artifact ", f", 28x28 images, 10 classes; {stranger.target}: 28x28 "
            "images, 10 classes): expected the same model on every replica",
        )  # fmt: skip
        assert down not in line.partition(" serve ")[2], line
    finally:
        assert small.stop() == 0 and stranger.stop() == 0
