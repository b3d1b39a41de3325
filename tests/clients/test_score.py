"""`python -m clients.score` against the real server: its figures agree with numpy on the same
model, --plot writes an image, and bad input is one line on stderr."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pty
import struct
import subprocess
import termios
from pathlib import Path

import numpy as np
import pytest

from scratchnet.artifact import Artifact
from scratchnet.datasets import Dataset
from scratchnet.forward import predict
from tests.conftest import (
    PYTHON,
    REPO,
    GatedServer,
    RunningServer,
    assert_one_line_error,
    run_module,
)
from tests.server.workers import closed


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
    ("args", "message"),
    [
        (["--target", "127.0.0.1:{closed}"], "UNAVAILABLE from 127.0.0.1:"),
        (["--target", "not-a-target"], "expected HOST:PORT"),
        (
            ["--target", "{server}", "--batch-size", "0"],
            "--batch-size: expected an integer >= 1, got 0",
        ),
        (["--target", "{server}", "--split", "validation"], "invalid choice: 'validation'"),
        (["--target", "{server}", "--data", "/nonexistent"], "data /nonexistent not found"),
        (["--target", "{server}", "--plot", "cm.unknown"], "cannot draw .unknown files"),
        (["--target", "{server}", "--timeout", "0"], "expected a positive number, got '0'"),
        ([], "required: --target"),
    ],
)
def test_bad_input_is_one_line_and_a_nonzero_exit(
    server: RunningServer, closed_port: int, args: list[str], message: str
) -> None:
    args = [
        arg.replace("{server}", server.target).replace("{closed}", str(closed_port)) for arg in args
    ]
    result = run_module("clients.score", *args, check=False)
    assert_one_line_error(result, "python -m clients.score", message, code=None)


def test_a_server_too_busy_to_answer_in_time_is_one_line(gated_server: GatedServer) -> None:
    target = gated_server.server.target
    # The server's runs wait at the gate: the first call waits until its deadline.
    with closed(gated_server.gate):
        result = run_module("clients.score", "--target", target, "--timeout", "0.5", check=False)
    assert result.returncode != 0 and result.stdout == ""
    assert result.stderr == (
        f"python -m clients.score: error: DEADLINE_EXCEEDED from {target}: no answer within "
        "0.5 s (the timeout: raise it for a busy server)\n"
    )
