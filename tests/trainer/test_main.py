"""`python -m trainer` end to end: outputs, flags, and every bad input as one line on stderr."""

from __future__ import annotations

import fcntl
import gzip
import json
import os
import pty
import shutil
import struct
import subprocess
import sys
import termios
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray

from scratchnet.artifact import load_artifact
from scratchnet.datasets import BUNDLED_MNIST
from scratchnet.idx import write_idx
from tests.conftest import assert_one_line_error

Arrays = dict[str, NDArray[Any]]
Run = Callable[..., subprocess.CompletedProcess[str]]
METADATA_KEYS = {
    "class_labels",
    "input_shape",
    "input_scale",
    "recipe",
    "hyperparameters",
    "dataset",
    "train_accuracy",
    "test_accuracy",
    "versions",
}


def test_a_non_mnist_shape_and_class_count_trains_unchanged(
    tmp_path: Path, toy_idx: Path, trainer_cli: Run
) -> None:
    out = tmp_path / "model.npz"
    result = trainer_cli("--data", toy_idx, "-o", out)
    assert result.returncode == 0, result.stderr
    assert "test accuracy" in result.stdout and result.stderr == ""
    artifact = load_artifact(out)
    assert artifact.weights.shape == (3, 5, 7) and artifact.biases.shape == (3,)
    metadata = artifact.metadata
    assert set(metadata) == METADATA_KEYS
    assert metadata["class_labels"] == ["0", "1", "2"]
    assert metadata["input_shape"] == [5, 7]
    assert metadata["input_scale"] == 1 / 255
    assert metadata["recipe"] == "article"
    assert metadata["dataset"]["name"] == "toy"
    assert set(metadata["versions"]) == {"python", "numpy", "scratchnet"}
    assert metadata["test_accuracy"] > 0.9


def test_json_output_and_recipe_overrides(tmp_path: Path, toy_idx: Path, trainer_cli: Run) -> None:
    out = tmp_path / "model.npz"
    result = trainer_cli(
        "--data",
        toy_idx,
        "-o",
        out,
        "--json",
        "--recipe",
        "modern",
        "--epochs",
        "3",
        "--batch-size",
        "4",
        "--lr",
        "0.3",
        "--schedule",
        "cosine",
        "--loss",
        "squared",
        "--no-shuffle",
        "--seed",
        "5",
        "--init",
        "normal",
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert 0.9 < summary["test_accuracy"] <= 1.0
    assert summary["train_seconds"] > 0
    expected = {
        "epochs": 3,
        "batch_size": 4,
        "lr": 0.3,
        "schedule": "cosine",
        "loss": "squared",
        "shuffle": False,
        "seed": 5,
        "init": "normal",
    }
    assert summary["hyperparameters"] == expected
    metadata = load_artifact(out).metadata
    assert metadata["hyperparameters"] == expected
    assert metadata["recipe"] == "custom"
    assert metadata["test_accuracy"] == summary["test_accuracy"]


def test_quiet_prints_nothing_and_the_default_output_is_artifacts_model_npz(
    tmp_path: Path, toy_idx: Path, trainer_cli: Run
) -> None:
    result = trainer_cli("--data", toy_idx, "--quiet", cwd=tmp_path)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    assert load_artifact(tmp_path / "artifacts" / "model.npz").weights.shape == (3, 5, 7)
    # --json still prints its one object: a script asked for it.
    result = trainer_cli("--data", toy_idx, "--quiet", "--json", cwd=tmp_path)
    assert (result.returncode, result.stderr) == (0, "")
    assert json.loads(result.stdout)["output"] == "artifacts/model.npz"


def test_progress_bar_on_a_terminal_only(tmp_path: Path, toy_idx: Path) -> None:
    leader, follower = pty.openpty()
    # A new pseudo-terminal is 0 columns wide, which leaves tqdm no room to draw.
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    process = subprocess.Popen(
        [sys.executable, "-m", "trainer", "--data", toy_idx, "-o", tmp_path / "m.npz"],
        stdin=subprocess.DEVNULL,
        stdout=follower,
        stderr=follower,
        close_fds=True,
    )
    os.close(follower)
    output = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the terminal closes when the process exits
            break
        if not chunk:
            break
        output += chunk
    os.close(leader)
    assert process.wait(timeout=60) == 0
    assert b"training" in output and b"img" in output  # tqdm's bar
    assert b"test accuracy" in output


@pytest.mark.parametrize(
    ("recipe", "flags"),
    [("article", []), ("modern", ["--recipe", "modern", "--epochs", "2", "--seed", "3"])],
)
def test_the_same_command_gives_a_byte_identical_artifact(
    tmp_path: Path, toy_idx: Path, trainer_cli: Run, recipe: str, flags: list[str]
) -> None:
    outputs = [tmp_path / f"{recipe}-{run}.npz" for run in range(2)]
    for out in outputs:
        assert trainer_cli("--data", toy_idx, "-q", "-o", out, *flags).returncode == 0
    assert outputs[0].read_bytes() == outputs[1].read_bytes()


def test_another_seed_gives_another_artifact(
    tmp_path: Path, toy_idx: Path, trainer_cli: Run
) -> None:
    for seed in (1, 2):
        flags = ["--recipe", "modern", "--epochs", "1", "--seed", str(seed)]
        assert (
            trainer_cli("--data", toy_idx, "-q", "-o", tmp_path / f"{seed}.npz", *flags).returncode
            == 0
        )
    assert (tmp_path / "1.npz").read_bytes() != (tmp_path / "2.npz").read_bytes()


def test_the_article_artifact_is_reproduced_byte_for_byte(
    article_artifact: Path, tmp_path: Path, trainer_cli: Run
) -> None:
    again = tmp_path / "again.npz"
    assert trainer_cli("-q", "-o", again).returncode == 0
    assert again.read_bytes() == article_artifact.read_bytes()


# --- bad input: one line on stderr, a non-zero exit, no traceback, no output file ----------------


def _toy_with(
    tmp_path: Path,
    toy_maker: Callable[..., Arrays],
    idx_writer: Callable[..., Path],
    **changes: NDArray[Any],
) -> Path:
    return idx_writer(tmp_path / "data", {**toy_maker(), **changes})


def _missing(tmp_path: Path, *_: Any) -> list[str]:
    return ["--data", str(tmp_path / "nowhere")]


def _wrong_magic(tmp_path: Path, toy_maker: Any, idx_writer: Any) -> list[str]:
    folder = _toy_with(tmp_path, toy_maker, idx_writer)
    shutil.copy(folder / "train-labels-idx1-ubyte.gz", folder / "train-images-idx3-ubyte.gz")
    return ["--data", str(folder)]


def _truncated(tmp_path: Path, toy_maker: Any, idx_writer: Any) -> list[str]:
    folder = idx_writer(tmp_path / "data", toy_maker(), compress=False)
    path = folder / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])
    return ["--data", str(folder)]


def _count_mismatch(tmp_path: Path, toy_maker: Any, idx_writer: Any) -> list[str]:
    labels = toy_maker()["train_labels"][:-1]
    return ["--data", str(_toy_with(tmp_path, toy_maker, idx_writer, train_labels=labels))]


def _label_too_large(tmp_path: Path, toy_maker: Any, idx_writer: Any) -> list[str]:
    labels = toy_maker()["test_labels"].copy()
    labels[4] = 3
    return ["--data", str(_toy_with(tmp_path, toy_maker, idx_writer, test_labels=labels))]


def _negative_label(tmp_path: Path, toy_maker: Any, _: Any) -> list[str]:
    arrays = toy_maker()
    labels = arrays["test_labels"].astype(np.int64)
    labels[2] = -1
    np.savez(
        tmp_path / "data.npz",
        x_train=arrays["train_images"],
        y_train=arrays["train_labels"],
        x_test=arrays["test_images"],
        y_test=labels,
    )
    return ["--data", str(tmp_path / "data.npz")]


def _empty_set(tmp_path: Path, toy_maker: Any, idx_writer: Any) -> list[str]:
    folder = _toy_with(tmp_path, toy_maker, idx_writer)
    write_idx(folder / "train-images-idx3-ubyte.gz", np.zeros((0, 5, 7), np.uint8), True)
    write_idx(folder / "train-labels-idx1-ubyte.gz", np.zeros(0, np.uint8), True)
    return ["--data", str(folder)]


def _npz_keys(tmp_path: Path, *_: Any) -> list[str]:
    np.savez(tmp_path / "data.npz", images=np.zeros((2, 2, 2), np.uint8))
    return ["--data", str(tmp_path / "data.npz")]


def _wrong_rank(tmp_path: Path, toy_maker: Any, _: Any) -> list[str]:
    arrays = toy_maker()
    np.savez(
        tmp_path / "data.npz",
        trainimages=arrays["train_images"].reshape(150, 35),
        trainlabels=arrays["train_labels"],
        testimages=arrays["test_images"],
        testlabels=arrays["test_labels"],
    )
    return ["--data", str(tmp_path / "data.npz")]


def _truncated_gzip(tmp_path: Path, toy_maker: Any, idx_writer: Any) -> list[str]:
    folder = _toy_with(tmp_path, toy_maker, idx_writer)
    path = folder / "train-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-20])
    return ["--data", str(folder)]


def _header_beyond_the_data(tmp_path: Path, toy_maker: Any, idx_writer: Any) -> list[str]:
    folder = _toy_with(tmp_path, toy_maker, idx_writer)
    header = struct.pack(">4I", 0x803, 60000, 3000, 3000)
    (folder / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(header + bytes(64)))
    return ["--data", str(folder)]


def _infinite_label(tmp_path: Path, toy_maker: Any, _: Any) -> list[str]:
    arrays = toy_maker()
    np.savez(
        tmp_path / "data.npz",
        x_train=arrays["train_images"],
        y_train=np.where(arrays["train_labels"] == 2, np.inf, arrays["train_labels"]),
        x_test=arrays["test_images"],
        y_test=arrays["test_labels"],
    )
    return ["--data", str(tmp_path / "data.npz")]


def _not_data(tmp_path: Path, *_: Any) -> list[str]:
    (tmp_path / "notes.txt").write_text("hello")
    return ["--data", str(tmp_path / "notes.txt")]


def _no_idx_files(tmp_path: Path, *_: Any) -> list[str]:
    (tmp_path / "empty").mkdir()
    return ["--data", str(tmp_path / "empty")]


BAD_DATA = {
    "missing-path": (_missing, "not found: expected a directory of IDX files or an .npz file"),
    "device": (
        lambda *_: ["--data", "/dev/null"],
        "data /dev/null is not a regular file (a device, FIFO or socket): expected a directory",
    ),
    "wrong-idx-magic": (_wrong_magic, "not an IDX image file: magic number 0x00000801"),
    "truncated": (_truncated, "is truncated"),
    "truncated-gzip": (_truncated_gzip, "is truncated: the gzip stream ends early"),
    "header-beyond-data": (_header_beyond_the_data, "promises 540000000000 values"),
    "count-mismatch": (_count_mismatch, "has 150 images but"),
    "label-too-large": (_label_too_large, "label 3 at index 4 is out of range: expected 0..2"),
    "negative-label": (_negative_label, "label -1 at index 2 is out of range"),
    "empty-set": (_empty_set, "is empty: expected at least one image"),
    "infinite-label": (_infinite_label, "labels must be integers, got float64 values"),
    "npz-keys": (_npz_keys, "has keys ['images']: expected trainimages"),
    "wrong-rank": (_wrong_rank, "images must have rank 3 [N, H, W], got shape [150, 35]"),
    "not-data": (_not_data, "is not an npz file: expected a directory of IDX files or an .npz"),
    "no-idx-files": (_no_idx_files, "has no train-images-idx3-ubyte[.gz]"),
}
BAD_FLAGS = {
    "epochs": (["--epochs", "0"], "argument --epochs: expected an integer >= 1, got 0"),
    "lr": (["--lr", "-1"], "argument --lr: expected a positive number, got '-1'"),
    "loss": (["--loss", "hinge"], "argument --loss: invalid choice: 'hinge'"),
    "seed": (["--seed", "x"], "argument --seed: expected an integer, got 'x'"),
    "diverging lr": (
        ["--lr", "1e308"],
        "training diverged: the weights became NaN or infinite at learning rate 1e+308, "
        "expected a smaller --lr",
    ),
}


def _assert_one_line_error(result: subprocess.CompletedProcess[str], fragment: str) -> None:
    assert_one_line_error(result, "python -m trainer", fragment, code=None)


@pytest.mark.parametrize("case", BAD_DATA.values(), ids=BAD_DATA.keys())
def test_bad_data(
    tmp_path: Path,
    toy_maker: Callable[..., Arrays],
    idx_writer: Callable[..., Path],
    trainer_cli: Run,
    case: tuple[Callable[..., list[str]], str],
) -> None:
    make, fragment = case
    args = make(tmp_path, toy_maker, idx_writer)
    out = tmp_path / "out" / "model.npz"
    _assert_one_line_error(trainer_cli(*args, "-o", out), fragment)
    assert not out.parent.exists()


@pytest.mark.parametrize("case", BAD_FLAGS.values(), ids=BAD_FLAGS.keys())
def test_bad_flags(
    tmp_path: Path, toy_idx: Path, trainer_cli: Run, case: tuple[list[str], str]
) -> None:
    flags, fragment = case
    out = tmp_path / "out" / "model.npz"
    _assert_one_line_error(trainer_cli("--data", toy_idx, "-o", out, *flags), fragment)
    assert not out.parent.exists()


def test_an_output_that_is_a_directory(tmp_path: Path, toy_idx: Path, trainer_cli: Run) -> None:
    (tmp_path / "out").mkdir()
    result = trainer_cli("--data", toy_idx, "-o", tmp_path / "out")
    _assert_one_line_error(result, "is a directory, expected a file path")
    assert list((tmp_path / "out").iterdir()) == []


def test_an_unwritable_output_is_refused_before_the_data_is_read(
    tmp_path: Path, trainer_cli: Run
) -> None:
    (tmp_path / "file").write_text("")
    # The data path is missing too: the output's error must come first, before any work.
    result = trainer_cli("--data", tmp_path / "missing", "-o", tmp_path / "file" / "sub" / "m.npz")
    _assert_one_line_error(result, f"{tmp_path / 'file'} is not a folder")


def test_a_corrupt_bundled_set_through_the_command_line(tmp_path: Path) -> None:
    copy = tmp_path / "mnist"
    shutil.copytree(BUNDLED_MNIST, copy)
    path = copy / "train-labels-idx1-ubyte.gz"
    # Same size and header, one label changed: only the MD5 check can catch it.
    raw = bytearray(gzip.decompress(path.read_bytes()))
    raw[8] = (raw[8] + 1) % 10
    write_idx(path, np.frombuffer(bytes(raw[8:]), np.uint8), True)
    out = tmp_path / "out" / "model.npz"
    # The entry point itself, with the bundled folder pointed at the damaged copy.
    code = (
        "import sys, pathlib, scratchnet.datasets as d;"
        " d.BUNDLED_MNIST = pathlib.Path(sys.argv.pop(1));"
        " from trainer.__main__ import main; main()"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(copy), "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    _assert_one_line_error(result, "is corrupt: MD5 of its content is")
    assert not out.parent.exists()
