"""scratchnet.datasets: the bundled MNIST, IDX directories, the article's and Keras' npz files."""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import sys
import tempfile
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray

from scratchnet import datasets
from scratchnet.datasets import BUNDLED_MNIST, Dataset, load_dataset
from scratchnet.errors import DataError
from scratchnet.idx import LABELS_MAGIC, read_idx, write_idx
from tests.conftest import REPO, UNPRIVILEGED

Arrays = dict[str, NDArray[Any]]


def _assert_matches(dataset: Dataset, arrays: Arrays) -> None:
    for role in ("train_images", "train_labels", "test_images", "test_labels"):
        np.testing.assert_array_equal(getattr(dataset, role), arrays[role])
    assert dataset.train_images.dtype == dataset.test_images.dtype == np.uint8
    assert dataset.train_labels.dtype == dataset.test_labels.dtype == np.int64


def test_bundled_mnist(mnist: Dataset) -> None:
    assert mnist.name == "mnist"
    assert mnist.train_images.shape == (60000, 28, 28)
    assert mnist.test_images.shape == (10000, 28, 28)
    assert mnist.train_images.dtype == np.uint8
    assert mnist.train_labels.dtype == np.int64
    assert mnist.num_classes == 10
    assert mnist.image_shape == (28, 28)
    assert re.fullmatch(r"[0-9a-f]{64}", mnist.checksum)


def test_bundled_checksums_are_the_readme_table() -> None:
    table = dict(
        re.findall(r"\| (\S+\.gz) +\| ([0-9a-f]{32}) \|", (BUNDLED_MNIST / "README.md").read_text())
    )
    assert table == datasets._BUNDLED_MD5


@pytest.mark.parametrize("compress", [True, False])
@pytest.mark.parametrize("dotted", [False, True])
def test_idx_directory(
    tmp_path: Path,
    toy_maker: Callable[..., Arrays],
    idx_writer: Callable[..., Path],
    compress: bool,
    dotted: bool,
) -> None:
    arrays = toy_maker()
    folder = idx_writer(tmp_path / "toy-set", arrays, compress=compress, dotted=dotted)
    dataset = load_dataset(folder)
    _assert_matches(dataset, arrays)
    assert dataset.name == "toy-set"
    assert dataset.num_classes == 3 and dataset.image_shape == (5, 7)


def test_the_checksum_identifies_the_data_not_the_file_format(
    tmp_path: Path, toy_maker: Callable[..., Arrays], idx_writer: Callable[..., Path]
) -> None:
    arrays = toy_maker()
    gz = load_dataset(idx_writer(tmp_path / "gz", arrays))
    raw = load_dataset(idx_writer(tmp_path / "raw", arrays, compress=False))
    np.savez(
        tmp_path / "keras.npz",
        x_train=arrays["train_images"],
        y_train=arrays["train_labels"],
        x_test=arrays["test_images"],
        y_test=arrays["test_labels"],
    )
    keras = load_dataset(tmp_path / "keras.npz")
    assert gz.checksum == raw.checksum == keras.checksum
    arrays["test_labels"][0] = (arrays["test_labels"][0] + 1) % 3
    assert load_dataset(idx_writer(tmp_path / "changed", arrays)).checksum != gz.checksum


def _save_article_npz(path: Path, arrays: Arrays, images: Callable[[NDArray[Any]], Any]) -> Path:
    np.savez(
        path,
        trainimages=images(arrays["train_images"]),
        trainlabels=arrays["train_labels"],
        testimages=images(arrays["test_images"]),
        testlabels=arrays["test_labels"],
    )
    return path


def test_article_npz_uint8(tmp_path: Path, toy_maker: Callable[..., Arrays]) -> None:
    arrays = toy_maker()
    dataset = load_dataset(_save_article_npz(tmp_path / "article.npz", arrays, lambda x: x))
    _assert_matches(dataset, arrays)
    assert dataset.name == "article"


@pytest.mark.parametrize(
    "scale",
    [
        lambda x: x / 255.0,
        lambda x: (x / 255.0).astype(np.float32),
        lambda x: x.astype(np.float32) / np.float32(255),
    ],
    ids=["float64", "float32-rounded", "float32-divided"],
)
def test_article_npz_floats_of_whole_pixels_become_uint8(
    tmp_path: Path, toy_maker: Callable[..., Arrays], scale: Callable[[NDArray[Any]], Any]
) -> None:
    arrays = toy_maker()
    dataset = load_dataset(_save_article_npz(tmp_path / "article.npz", arrays, scale))
    _assert_matches(dataset, arrays)


def test_article_npz_other_floats_are_kept_as_float32(
    tmp_path: Path, toy_maker: Callable[..., Arrays]
) -> None:
    arrays = toy_maker()
    path = _save_article_npz(tmp_path / "article.npz", arrays, lambda x: x / 256.0)
    dataset = load_dataset(path)
    assert dataset.train_images.dtype == np.float32
    np.testing.assert_allclose(dataset.train_images, arrays["train_images"] / 256.0, rtol=1e-7)


def test_keras_npz(tmp_path: Path, toy_maker: Callable[..., Arrays]) -> None:
    arrays = toy_maker(height=4, width=9, classes=5)
    np.savez_compressed(
        tmp_path / "mnist.npz",
        x_train=arrays["train_images"],
        y_train=arrays["train_labels"],
        x_test=arrays["test_images"],
        y_test=arrays["test_labels"],
    )
    dataset = load_dataset(tmp_path / "mnist.npz")
    _assert_matches(dataset, arrays)
    assert dataset.num_classes == 5 and dataset.image_shape == (4, 9)


def test_the_class_count_is_the_number_of_distinct_training_labels(
    tmp_path: Path, toy_maker: Callable[..., Arrays], idx_writer: Callable[..., Path]
) -> None:
    arrays = toy_maker(classes=4)
    assert load_dataset(idx_writer(tmp_path / "four", arrays)).num_classes == 4


def _bad_npz(tmp_path: Path, arrays: Arrays, **changes: Any) -> Path:
    values = {
        "x_train": arrays["train_images"],
        "y_train": arrays["train_labels"],
        "x_test": arrays["test_images"],
        "y_test": arrays["test_labels"],
        **changes,
    }
    np.savez(tmp_path / "bad.npz", **values)
    return tmp_path / "bad.npz"


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"x_test": np.zeros((45, 5, 7), dtype=np.int16) - 1}, ["range over -1..-1", "0..255"]),
        ({"x_test": np.full((45, 5, 7), 2.5)}, ["[2.5, 2.5]", "expected [0, 1]"]),
        ({"x_test": np.full((45, 5, 7), np.nan)}, ["finite"]),
        ({"x_test": np.zeros((45, 5, 7), dtype=np.complex64)}, ["complex64"]),
        ({"y_train": np.full(150, 0.5)}, ["labels must be integers"]),
        ({"y_train": np.zeros((150, 1), dtype=np.uint8)}, ["rank 1"]),
        ({"x_test": np.zeros((45, 5, 8), dtype=np.uint8)}, ["[5, 8]", "[5, 7]"]),
        ({"x_train": np.zeros((150, 0, 7), dtype=np.uint8)}, ["empty"]),
    ],
    ids=["int16", "float-range", "nan", "complex", "float-labels", "label-rank", "size", "0-high"],
)
def test_bad_npz_content(
    tmp_path: Path, toy_maker: Callable[..., Arrays], change: Arrays, words: list[str]
) -> None:
    path = _bad_npz(tmp_path, toy_maker(), **change)
    with pytest.raises(DataError) as caught:
        load_dataset(path)
    message = str(caught.value)
    assert "\n" not in message and str(path) in message
    for word in words:
        assert word in message


def test_a_single_npy_array_is_not_an_npz(tmp_path: Path) -> None:
    np.save(tmp_path / "images.npy", np.zeros((2, 2, 2), dtype=np.uint8))
    with pytest.raises(DataError, match=r"images\.npy is not an npz file: expected a directory"):
        load_dataset(tmp_path / "images.npy")


def _npz_with_a_member(path: Path, name: str, member: bytes) -> Path:
    """A Keras-style npz of tiny valid arrays, except for the member `name`."""
    with zipfile.ZipFile(path, "w") as archive:
        for key in ("x_train", "y_train", "x_test", "y_test"):
            buffer = io.BytesIO()
            np.save(buffer, np.zeros((1, 2, 2) if key.startswith("x") else 1, dtype=np.uint8))
            archive.writestr(f"{key}.npy", member if key == name else buffer.getvalue())
    return path


def _npy_header(text: str) -> bytes:
    return b"\x93NUMPY\x01\x00" + len(text).to_bytes(2, "little") + text.encode()


@pytest.mark.parametrize(
    ("member", "fragment"),
    [
        # A shape far beyond memory: numpy raises MemoryError while allocating.
        (
            _npy_header("{'descr': '|u1', 'fortran_order': False, 'shape': (9000000, 9000000), }\n")
            + bytes(16),
            "is not a readable npz file (",
        ),
        # A garbled header: numpy's parser raises a tokenizer error.
        (_npy_header("{'descr': '|u1', 'shape': (2,\n"), "is not a readable npz file ("),
        # Not .npy at all: np.load returns the member's bytes.
        (b"not an array at all", "[x_train] is not an .npy array"),
    ],
    ids=["absurd-shape", "garbled-header", "not-npy"],
)
def test_a_damaged_npz_member_is_one_data_error(
    tmp_path: Path, member: bytes, fragment: str
) -> None:
    path = _npz_with_a_member(tmp_path / "damaged.npz", "x_train", member)
    with pytest.raises(DataError) as caught:
        load_dataset(path)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(str(path)) and fragment in message


@pytest.mark.parametrize(
    ("labels", "fragment"),
    [
        (np.full(150, np.inf), "labels must be integers, got float64 values"),
        (np.full(150, np.nan), "labels must be integers, got float64 values"),
        (np.full(150, 1e30), "label 1e+30 at index 0 is out of range: expected 0..0"),
        (np.full(150, 2**63 + 5, dtype=np.uint64), "label 9223372036854775813 at index 0 is out"),
    ],
    ids=["inf", "nan", "huge-float", "huge-uint64"],
)
def test_labels_beyond_int64_are_rejected_not_wrapped(
    tmp_path: Path, toy_maker: Callable[..., Arrays], labels: NDArray[Any], fragment: str
) -> None:
    path = _bad_npz(tmp_path, toy_maker(), y_train=labels)
    with pytest.raises(DataError, match=re.escape(fragment)), warnings.catch_warnings():
        warnings.simplefilter("error")  # a wrapped cast would warn before failing
        load_dataset(path)


def test_whole_float_labels_become_int64(tmp_path: Path, toy_maker: Callable[..., Arrays]) -> None:
    arrays = toy_maker()
    path = _bad_npz(tmp_path, arrays, y_train=arrays["train_labels"].astype(np.float32))
    _assert_matches(load_dataset(path), arrays)


def test_without_the_bundled_folder_the_error_says_pass_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(datasets, "BUNDLED_MNIST", tmp_path / "absent")
    with pytest.raises(DataError, match="pass --data"):
        load_dataset(None)


def test_a_corrupt_bundled_file_fails_its_checksum(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    copy = tmp_path / "mnist"
    shutil.copytree(BUNDLED_MNIST, copy)
    # A well-formed IDX label file with different content: only the checksum can tell.
    labels = copy / "t10k-labels-idx1-ubyte.gz"
    values = read_idx(labels, LABELS_MAGIC).values.copy()
    values[0] = (values[0] + 1) % 10
    write_idx(labels, values, compress=True)
    monkeypatch.setattr(datasets, "BUNDLED_MNIST", copy)
    with pytest.raises(
        DataError, match=r"corrupt: MD5 of its content is [0-9a-f]{32}, expected 27ae"
    ):
        load_dataset(None)


def test_files_this_user_may_not_read_are_named_in_one_line() -> None:
    folder = Path(tempfile.mkdtemp(prefix="scratchnet-unreadable-"))
    try:
        folder.chmod(0o755)  # reachable by the unprivileged user below
        for name in ("data.npz", "model.npz"):
            (folder / name).write_bytes(b"PK\x05\x06" + bytes(18))  # an empty zip
            (folder / name).chmod(0)
        (folder / "idx").mkdir(mode=0)
        code = (
            "import sys\n"
            "from scratchnet.artifact import load_artifact\n"
            "from scratchnet.datasets import load_dataset\n"
            "from scratchnet.errors import ScratchnetError\n"
            "for load, path in ((load_dataset, 'data.npz'), (load_dataset, 'idx'),"
            " (load_artifact, 'model.npz')):\n"
            "    try:\n"
            "        load(f'{sys.argv[1]}/{path}')\n"
            "    except ScratchnetError as error:\n"
            "        print(error)\n"
        )
        command = [*UNPRIVILEGED, sys.executable, "-c", code, str(folder)]
        result = subprocess.run(
            command, cwd=REPO, capture_output=True, text=True, timeout=60, check=False
        )
        assert result.returncode == 0 and result.stderr == "", result.stderr
        assert result.stdout.splitlines() == [
            f"cannot read {folder}/data.npz: permission denied",
            f"cannot read {folder}/idx/train-images-idx3-ubyte.gz: permission denied",
            f"cannot read artifact {folder}/model.npz: Permission denied",
        ]
    finally:
        (folder / "idx").chmod(0o755)
        shutil.rmtree(folder)
