"""`python -m clients.score` against the real server: its figures agree with numpy on the same
model, --plot writes an image, --repeat counts every pass, --output rows match numpy and the Ray
engine's, and bad input is one line on stderr."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pty
import shutil
import struct
import subprocess
import tempfile
import termios
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from clients.ray_engine import RAY_ENVIRONMENT, check_address
from scratchnet.artifact import Artifact
from scratchnet.datasets import Dataset
from scratchnet.forward import predict, probabilities, scores
from tests.conftest import (
    PYTHON,
    REPO,
    UNPRIVILEGED,
    GatedServer,
    RunningServer,
    assert_one_line_error,
    run_module,
)
from tests.server.workers import closed

PROGRAM = "python -m clients.score"
# A local Ray started by the command line: no usage reports, no metrics agent.
RAY_QUIET = dict(RAY_ENVIRONMENT)


def test_json_report_agrees_with_numpy(
    server: RunningServer, mnist: Dataset, artifact: Artifact, tmp_path: Path
) -> None:
    plot = tmp_path / "plots" / "confusion.png"
    result = run_module(
        "clients.score", "--target", server.target, "--json", "--plot", plot, "--batch-size", "500"
    )
    report = json.loads(result.stdout)
    predicted = predict(artifact.weights, artifact.biases, mnist.test_images)
    true = mnist.test_labels
    assert report["accuracy"] == np.mean(predicted == true)
    assert report["correct"] == int(np.sum(predicted == true))
    assert report["images"] == len(true)
    assert report["batch_size"] == 500 and report["batches"] == len(true) // 500
    assert report["images_per_second"] > 0
    assert 0 < report["latency_ms"]["p50"] <= report["latency_ms"]["p99"]
    classes = mnist.num_classes
    confusion = np.bincount(true * classes + predicted, minlength=classes * classes)
    assert report["confusion_matrix"] == confusion.reshape(classes, classes).tolist()
    for index, stats in enumerate(report["classes"]):
        assert stats["index"] == index and stats["label"] == artifact.class_labels[index]
        assert stats["support"] == np.sum(true == index)
        assert stats["precision"] == pytest.approx(np.mean(true[predicted == index] == index))
        assert stats["recall"] == pytest.approx(np.mean(predicted[true == index] == index))
    assert plot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert not list(plot.parent.glob(".*.tmp")), "the plot is written atomically"


def test_text_report_shows_accuracy_throughput_and_tables(
    server: RunningServer, mnist: Dataset
) -> None:
    result = run_module("clients.score", "--target", server.target)
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"scored {len(mnist.test_labels)} test images of mnist")
    assert lines[1].startswith("accuracy    0.9104 (9104 of 10000 correct)")
    assert "images/s" in lines[2] and "p50" in lines[3] and "p99" in lines[3]
    assert any(line.split() == ["class", "precision", "recall", "support"] for line in lines)
    assert "confusion matrix (rows: true class, columns: predicted class)" in lines
    assert result.stderr == "", "no progress bar when stderr is not a terminal"


@pytest.mark.parametrize("quiet", [False, True])
def test_progress_bar_on_a_terminal_unless_quiet(server: RunningServer, quiet: bool) -> None:
    leader, follower = pty.openpty()
    # A fresh pseudo-terminal has 0 columns, where tqdm would draw an empty bar.
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    with os.fdopen(leader, "rb", buffering=0) as terminal:
        try:
            result = subprocess.run(
                [PYTHON, "-m", "clients.score", "--target", server.target]
                + (["--quiet"] if quiet else []),
                cwd=REPO,
                stdout=subprocess.PIPE,
                stderr=follower,
                stdin=subprocess.DEVNULL,
                timeout=120,
                check=False,
            )
        finally:
            os.close(follower)
        shown = b""
        # The bar is a few lines at most, well within the terminal's buffer.
        with contextlib.suppress(OSError):  # EIO once no writer is left
            while chunk := terminal.read(65536):
                shown += chunk
    assert result.returncode == 0
    assert b"accuracy" in result.stdout
    if quiet:
        assert shown == b""
    else:
        assert b"100%" in shown and b"img/s" in shown


def test_plot_without_matplotlib_says_which_extra_to_install(
    server: RunningServer, tmp_path: Path
) -> None:
    # A stand-in package that fails to import, as if matplotlib were not installed.
    (tmp_path / "matplotlib").mkdir()
    (tmp_path / "matplotlib" / "__init__.py").write_text("raise ImportError('not installed')\n")
    result = run_module(
        "clients.score",
        "--target",
        server.target,
        "--plot",
        tmp_path / "cm.png",
        check=False,
        env={"PYTHONPATH": str(tmp_path)},
    )
    assert result.returncode != 0
    assert result.stderr.strip().count("\n") == 0
    assert "pip install scratchnet[plots]" in result.stderr
    assert not (tmp_path / "cm.png").exists()


@pytest.mark.parametrize(
    ("args", "message", "code"),
    [
        (["--target", "127.0.0.1:{closed}"], "UNAVAILABLE from 127.0.0.1:", 1),
        (["--target", "not-a-target"], "expected HOST:PORT", 2),
        (
            ["--target", "{server}", "--batch-size", "0"],
            "--batch-size: expected an integer >= 1, got 0",
            2,
        ),
        (["--target", "{server}", "--split", "validation"], "invalid choice: 'validation'", 2),
        (["--target", "{server}", "--data", "/nonexistent"], "data /nonexistent not found", 2),
        (["--target", "{server}", "--plot", "cm.unknown"], "cannot draw .unknown files", 2),
        (
            ["--target", "{server}", "--plot", ""],
            "--plot: expected a file path, got an empty one",
            2,
        ),
        (["--target", "{server}", "--output", ""], "--output: expected a file path", 2),
        (["--target", "{server}", "--timeout", "0"], "expected a positive number, got '0'", 2),
        (
            ["--target", "{server}", "--timeout", "1e10"],
            "expected at most 86400 seconds (a day)",
            2,
        ),
        ([], "required: --target", 2),
    ],
)
def test_bad_input_exits_2_and_a_failed_call_1_with_one_line(
    server: RunningServer, closed_port: int, args: list[str], message: str, code: int
) -> None:
    args = [
        arg.replace("{server}", server.target).replace("{closed}", str(closed_port)) for arg in args
    ]
    result = run_module("clients.score", *args, check=False)
    assert_one_line_error(result, "python -m clients.score", message, code=code)


def test_a_server_too_busy_to_answer_in_time_is_one_line(gated_server: GatedServer) -> None:
    target = gated_server.server.target
    # The server's runs wait at the gate: the first call waits until its deadline.
    with closed(gated_server.gate):
        result = run_module("clients.score", "--target", target, "--timeout", "0.5", check=False)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr == (
        f"python -m clients.score: error: DEADLINE_EXCEEDED from {target}: no answer within "
        "0.5 s (the timeout: raise it for a busy server)\n"
    )


# --- replicas, --repeat, --output, image files, --engine ray ---------------------------------


def test_repeat_reports_totals_over_every_pass(server: RunningServer) -> None:
    result = run_module("clients.score", "--target", server.target, "--repeat", "3", "--json")
    report = json.loads(result.stdout)
    assert (report["images"], report["repeat"]) == (30000, 3)
    assert (report["correct"], report["accuracy"]) == (3 * 9104, 0.9104)
    assert sum(stats["support"] for stats in report["classes"]) == 30000
    assert report["batches"] == 3 * 15


def test_output_rows_of_a_photo_folder_match_numpy(
    server: RunningServer, mnist: Dataset, artifact: Artifact, tmp_path: Path
) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    images = mnist.test_images[:5]
    for index, image in enumerate(images):
        Image.fromarray(image).save(folder / f"{index}.png")
    output = tmp_path / "out" / "photos.parquet"
    # The photos are MNIST digits already: taken as they are.
    result = run_module(
        "clients.score", "--target", server.target, "--data", folder, "--output", output,
        "--no-preprocess",
    )  # fmt: skip
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"scored 5 images of {folder} with model 'scratchnet'")
    assert lines[1] == "accuracy    n/a (no true labels)"
    assert lines[4] == f"output      {output} (Parquet, one row per image)"
    table = pq.read_table(output)
    assert table.column_names == ["id", "file", "label", "scores", "probabilities"]
    assert table["id"].to_pylist() == list(range(5))
    assert table["file"].to_pylist() == [str(folder / f"{index}.png") for index in range(5)]
    assert table["label"].to_pylist() == predict(artifact.weights, artifact.biases, images).tolist()
    found = np.stack(table["probabilities"].to_numpy(zero_copy_only=False))
    expected = probabilities(scores(artifact.weights, artifact.biases, images))
    assert np.abs(found - expected).max() < 1e-5
    assert [path.name for path in output.parent.iterdir()] == ["photos.parquet"]


def test_an_earlier_output_is_replaced_but_nothing_else(
    server: RunningServer, tmp_path: Path
) -> None:
    output = tmp_path / "scores.parquet"
    data = ("--data", "data/mnist/t10k-images-idx3-ubyte.gz")
    run_module("clients.score", "--target", server.target, *data, "--output", output)
    first = sorted(output.iterdir())
    run_module("clients.score", "--target", server.target, *data, "--output", output)
    assert sorted(output.iterdir()) == first and pq.read_table(output).num_rows == 10000
    (output / "notes.txt").write_text("mine\n")
    result = run_module(
        "clients.score", "--target", server.target, *data, "--output", output, check=False
    )
    assert_one_line_error(result, PROGRAM, "holding other things than .parquet files (notes.txt)")
    assert (output / "notes.txt").read_text() == "mine\n"
    # A name of another format would hold Parquet files under a misleading suffix.
    result = run_module(
        "clients.score", "--target", server.target, *data, "--output", tmp_path / "o.csv",
        check=False,
    )  # fmt: skip
    assert_one_line_error(result, PROGRAM, "expected a name without a suffix or ending in .parquet")
    assert not (tmp_path / "o.csv").exists()


def test_a_plot_that_cannot_be_written_fails_before_anything_is_scored_or_written(
    server: RunningServer, tmp_path: Path
) -> None:
    output = tmp_path / "scores.parquet"
    (tmp_path / "a-file").write_text("")
    for plot, message in [
        (tmp_path, "it is a directory, expected a file path"),
        (tmp_path / "a-file" / "cm.png", "is not a folder (part of that path is a file)"),
    ]:
        result = run_module(
            "clients.score", "--target", server.target, "--output", output, "--plot", plot,
            check=False,
        )  # fmt: skip
        assert_one_line_error(result, PROGRAM, f"cannot write {plot}", message)
        assert not output.exists()


def test_a_garbled_npy_header_is_one_line(server: RunningServer, tmp_path: Path) -> None:
    np.save(tmp_path / "images.npy", np.zeros((2, 28, 28), dtype=np.uint8))
    garbled = bytearray((tmp_path / "images.npy").read_bytes())
    garbled[20:30] = b"{" * 10  # inside the header's dict: numpy's parser fails on it
    (tmp_path / "images.npy").write_bytes(garbled)
    result = run_module(
        "clients.score", "--target", server.target, "--data", tmp_path / "images.npy", check=False
    )
    assert_one_line_error(result, PROGRAM, "images.npy: not a readable .npy array")


@pytest.mark.parametrize("mode", [0o000, 0o444, 0o111], ids=["no access", "no x", "no r"])
def test_a_data_folder_that_may_not_be_read_is_one_line(mode: int) -> None:
    # Not in pytest's tmp_path: its parents may be closed to the unprivileged user.
    parent = Path(tempfile.mkdtemp(prefix="scratchnet-test-"))
    folder = parent / "photos"
    try:
        folder.mkdir()
        np.save(folder / "one.npy", np.zeros((28, 28), dtype=np.uint8))
        parent.chmod(0o755)
        folder.chmod(mode)
        result = subprocess.run(
            [*UNPRIVILEGED, PYTHON, "-m", "clients.score", "--target", "127.0.0.1:1",
             "--data", str(folder)],
            cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
    finally:
        folder.chmod(0o755)
        shutil.rmtree(parent)
    assert_one_line_error(result, PROGRAM, f"data {folder}: cannot read", "Permission denied")


@pytest.mark.serial  # a 2-CPU Ray, as in tests/clients/test_ray_engine.py
def test_ray_engine_gives_the_servers_rows(
    server: RunningServer, model_onnx: Path, tmp_path: Path
) -> None:
    on_ray = tmp_path / "ray.parquet"
    result = run_module(
        "clients.score", "--engine", "ray", "--model", model_onnx, "--actors", "2",
        "--output", on_ray, "-q", env=RAY_QUIET,
    )  # fmt: skip
    lines = result.stdout.splitlines()
    assert lines[0] == (
        "scored 10000 test images of mnist with model 'model' version '1' on Ray (local, 2 actors)"
    )
    assert lines[1].startswith("accuracy    0.9104 (9104 of 10000 correct)")
    assert "Ray started in" in lines[2] and lines[3].startswith("latency     n/a on Ray")
    on_server = tmp_path / "server.parquet"
    run_module("clients.score", "--target", server.target, "--output", on_server)
    ray_table, server_table = pq.read_table(on_ray), pq.read_table(on_server)
    assert ray_table.column_names == server_table.column_names
    assert ray_table["id"].equals(server_table["id"])
    assert ray_table["label"].equals(server_table["label"])
    for name in ("scores", "probabilities"):
        found, expected = (
            np.stack(table[name].to_numpy(zero_copy_only=False))
            for table in (ray_table, server_table)
        )
        assert np.abs(found - expected).max() < 1e-6, name


def test_ray_engine_without_ray_says_how_to_install_it(tmp_path: Path, model_onnx: Path) -> None:
    # A stand-in package that fails to import, as if Ray were not installed.
    (tmp_path / "ray").mkdir()
    (tmp_path / "ray" / "__init__.py").write_text("raise ImportError('not installed')\n")
    result = run_module(
        "clients.score", "--engine", "ray", "--model", model_onnx, check=False,
        env={"PYTHONPATH": str(tmp_path)},
    )  # fmt: skip
    assert_one_line_error(
        result, PROGRAM, "--engine ray needs Ray, which is not installed: pip install "
        "'scratchnet[ray]'",
    )  # fmt: skip


REFUSED = "cannot start Ray at {address}: nothing accepts connections there (Connection refused"
SILENT = "cannot start Ray at {address}: something accepts connections there but does not answer as"


@pytest.mark.parametrize(
    ("address", "code", "message"),
    [
        ("127.0.0.1:{port}", 1, f"{REFUSED}; tried for up to 3 s): expected the GCS of a running"),
        ("ray://127.0.0.1:{port}", 1, f"{REFUSED}; tried for up to 3 s): expected the Ray Client"),
        ("localhost", 2, "expected auto, local, HOST:PORT (a head node's GCS) or ray://HOST:PORT"),
    ],
    ids=["gcs", "ray client", "no port"],
)
def test_ray_engine_fails_fast_where_no_ray_listens(
    model_onnx: Path, closed_port: int, address: str, code: int, message: str
) -> None:
    # ray.init alone retries such an address for 40 s to minutes; the command takes about 5 s
    # (15 s on a busy machine), most of it importing Ray.
    address = address.format(port=closed_port)
    args = ("--engine", "ray", "--model", model_onnx, "--address", address)
    result = run_module("clients.score", *args, check=False, timeout=90, env=RAY_QUIET)
    assert_one_line_error(result, PROGRAM, message.format(address=address), code=code)


@pytest.mark.parametrize(
    ("address", "expected"),
    [("127.0.0.1:{port}", "expected the GCS of"), ("ray://127.0.0.1:{port}", "expected the Ray C")],
    ids=["gcs", "ray client"],
)
def test_ray_engine_fails_fast_where_something_else_listens(
    model_onnx: Path, silent_port: int, address: str, expected: str
) -> None:
    # A listener that is not Ray's (an HTTP server, a database) had kept ray.init retrying for
    # minutes: both of Ray's addresses are gRPC servers, and this one never answers as one.
    address = address.format(port=silent_port)
    args = ("--engine", "ray", "--model", model_onnx, "--address", address)
    result = run_module("clients.score", *args, check=False, timeout=90, env=RAY_QUIET)
    message = f"{SILENT.format(address=address)} a gRPC server (waited 3 s): {expected}"
    assert_one_line_error(result, PROGRAM, message, code=1)


def test_the_ray_address_check_leaves_a_tls_cluster_to_ray(
    silent_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # With Ray's TLS on, its GCS answers no plaintext handshake: only the connection is checked.
    monkeypatch.setenv("RAY_USE_TLS", "1")
    check_address(f"127.0.0.1:{silent_port}")


def test_a_grpc_server_passes_the_ray_address_check() -> None:
    # What the check lets through: any gRPC server (a Ray head's GCS and Ray Client server are
    # two); Ray itself then says whether it is one of them.
    server = grpc.server(ThreadPoolExecutor(1))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        check_address(f"127.0.0.1:{port}")
        check_address(f"ray://127.0.0.1:{port}")
    finally:
        server.stop(None)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--engine", "ray", "--target", "127.0.0.1:1", "--model", "m.onnx"], "--target is for"),
        (["--engine", "ray"], "--engine ray needs --model MODEL.onnx"),
        (["--engine", "ray", "--model", "m.onnx", "--repeat", "2"], "--repeat is for --engine"),
        # Refused when given, even at the default's value: a Ray job has no deadline to set.
        (["--engine", "ray", "--model", "m.onnx", "--timeout", "30"], "--timeout is for --engine"),
        (
            ["--engine", "ray", "--model", "m.onnx", "--model-name", "digits"],
            "--model-name chooses a server's model, for --engine server; --engine ray runs --model",
        ),
        (
            ["--engine", "ray", "--model", "m.onnx", "--model-version", "2"],
            "--model-version chooses a server's model, for --engine server",
        ),
        (["--target", "127.0.0.1:1", "--address", "auto"], "--address is for --engine ray"),
        (["--target", "127.0.0.1:1", "--actors", "2"], "--actors is for --engine ray"),
        (["--engine", "ray", "--model", "m.onnx", "--actors", "0"], "expected an integer >= 1"),
        (["--engine", "ray", "--model", "/nonexistent.onnx"], "model /nonexistent.onnx not found"),
        (["--engine", "spark"], "invalid choice: 'spark'"),
        (["--target", "1.2.3.4:5,", "--repeat", "2"], "expected HOST:PORT"),
        (["--target", "{server}", "--data", "{tmp}", "--split", "train"], "--split applies to"),
        (["--target", "{server}", "--data", "{tmp}"], "a folder without image files"),
        (["--target", "{server}", "--output", "{file}"], "it is a file"),
        (["--target", "{server}", "--repeat", "0"], "expected an integer >= 1, got 0"),
    ],
)
def test_bad_engine_flags_are_one_line(
    server: RunningServer, tmp_path: Path, args: list[str], message: str
) -> None:
    (tmp_path / "file").write_text("")
    values = {"{server}": server.target, "{tmp}": str(tmp_path / "empty"), "{file}": "{tmp}/file"}
    (tmp_path / "empty").mkdir()
    args = [values.get(arg, arg).replace("{tmp}", str(tmp_path)) for arg in args]
    result = run_module("clients.score", *args, check=False)
    assert_one_line_error(result, PROGRAM, message)


def test_ray_engine_refuses_images_of_another_size_before_starting_ray(
    model_onnx: Path, toy_idx: Path
) -> None:
    args = ("--engine", "ray", "--model", model_onnx, "--data", toy_idx)
    result = run_module("clients.score", *args, check=False, env=RAY_QUIET)
    assert_one_line_error(result, PROGRAM, "the images are 5x7, but model 'model' expects 28x28")
