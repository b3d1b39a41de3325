"""Image classification data sets: the bundled MNIST, IDX directories and npz files.

`load_dataset(None)` is the MNIST bundled in <repo>/data/mnist, its content MD5-verified.
`load_dataset(PATH)` reads
  - a directory of four IDX files, gzip or raw, named `train-images-idx3-ubyte[.gz]` or
    `train-images.idx3-ubyte[.gz]` (likewise train-labels, t10k-images, t10k-labels);
  - the article's npz (`trainimages, trainlabels, testimages, testlabels`);
  - a Keras-style npz such as `mnist.npz` (`x_train, y_train, x_test, y_test`).

Images are kept as uint8 [N, H, W]. Float images in npz files must lie in [0, 1]: when every
value is exactly k/255 (what dividing uint8 pixels by 255 gives, in float64 or float32) they are
turned back into the uint8 pixels k, so that training sees the very same values; any other floats
are kept as float32, which `scratchnet.forward.scale_pixels` takes as already scaled.
H and W come from the images; the number of classes C is the number of distinct training labels,
and every label must lie in 0..C-1.
"""

from __future__ import annotations

import hashlib
import os
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from scratchnet.errors import DataError
from scratchnet.files import not_a_file
from scratchnet.idx import IMAGES_MAGIC, LABELS_MAGIC, read_idx

__all__ = ["BUNDLED_MNIST", "Dataset", "Images", "as_pixels", "load_dataset"]

Images = NDArray[np.uint8] | NDArray[np.float32]

BUNDLED_MNIST = Path(__file__).resolve().parent.parent / "data" / "mnist"
# MD5 of each bundled file's decompressed content, as listed in data/mnist/README.md.
_BUNDLED_MD5 = {
    "train-images-idx3-ubyte.gz": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte.gz": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte.gz": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte.gz": "27ae3e4e09519cfbb04c329615203637",
}
# The four arrays of a data set, in order, with their IDX file stem parts and magic numbers.
_ROLES = ("train_images", "train_labels", "test_images", "test_labels")
_IDX_FILES = {
    "train_images": ("train-images", "idx3", IMAGES_MAGIC),
    "train_labels": ("train-labels", "idx1", LABELS_MAGIC),
    "test_images": ("t10k-images", "idx3", IMAGES_MAGIC),
    "test_labels": ("t10k-labels", "idx1", LABELS_MAGIC),
}
_NPZ_KEYS = {
    "the article's": ("trainimages", "trainlabels", "testimages", "testlabels"),
    "Keras'": ("x_train", "y_train", "x_test", "y_test"),
}
# Rows checked at a time when converting float images, to bound temporary copies.
_ROWS = 8192


@dataclass(frozen=True, eq=False)
class Dataset:
    """A training and a test set of images [N, H, W] with int64 labels in 0..num_classes-1."""

    name: str
    train_images: Images
    train_labels: NDArray[np.int64]
    test_images: Images
    test_labels: NDArray[np.int64]
    num_classes: int
    checksum: str

    @property
    def image_shape(self) -> tuple[int, int]:
        """(H, W) of every image."""
        return int(self.train_images.shape[1]), int(self.train_images.shape[2])


def load_dataset(path: str | os.PathLike[str] | None) -> Dataset:
    """Load the data set at `path` (an IDX directory or an npz file), or the bundled MNIST."""
    if path is None:
        return _load_bundled()
    source = Path(path)
    try:
        if source.is_dir():
            files = {role: _idx_file(source, role) for role in _ROLES}
            arrays = {
                role: read_idx(file, _IDX_FILES[role][2]).values for role, file in files.items()
            }
            sources = {role: str(file) for role, file in files.items()}
            return _assemble(source.resolve().name, arrays, sources)
        if source.is_file():
            arrays, sources = _read_npz(source)
            return _assemble(source.stem, arrays, sources)
    except PermissionError as error:  # a folder or file this user may not read
        raise DataError(f"cannot read {error.filename or source}: permission denied") from None
    raise DataError(
        f"data {source} {not_a_file(source)}: expected a directory of IDX files or an .npz file"
    )


def _load_bundled() -> Dataset:
    if not BUNDLED_MNIST.is_dir():
        raise DataError(
            f"the bundled MNIST is not installed (no {BUNDLED_MNIST}): "
            "pass --data PATH to an IDX directory or npz file"
        )
    arrays: dict[str, NDArray[Any]] = {}
    sources: dict[str, str] = {}
    for role in _ROLES:
        stem, idx_kind, magic = _IDX_FILES[role]
        file_name = f"{stem}-{idx_kind}-ubyte.gz"
        path = BUNDLED_MNIST / file_name
        if not path.is_file():
            raise DataError(f"the bundled MNIST lacks {path}: pass --data PATH, or reinstall")
        idx = read_idx(path, magic)
        if idx.md5 != _BUNDLED_MD5[file_name]:
            raise DataError(
                f"bundled file {path} is corrupt: MD5 of its content is {idx.md5}, "
                f"expected {_BUNDLED_MD5[file_name]} (see {BUNDLED_MNIST / 'README.md'})"
            )
        arrays[role], sources[role] = idx.values, str(path)
    return _assemble("mnist", arrays, sources)


def _idx_file(directory: Path, role: str) -> Path:
    stem, idx, _ = _IDX_FILES[role]
    names = [f"{stem}-{idx}-ubyte", f"{stem}.{idx}-ubyte"]
    for name in names:
        for candidate in (directory / f"{name}.gz", directory / name):
            if candidate.is_file():
                return candidate
    raise DataError(
        f"{directory} has no {names[0]}[.gz] (nor {names[1]}[.gz]): expected the IDX files "
        "train-images, train-labels, t10k-images and t10k-labels"
    )


def _read_npz(path: Path) -> tuple[dict[str, NDArray[Any]], dict[str, str]]:
    open(path, "rb").close()  # is_zipfile says False for a file it may not read
    if not zipfile.is_zipfile(path):
        raise DataError(
            f"{path} is not an npz file: expected a directory of IDX files or an .npz file"
        )
    try:
        # Opened here, not by np.load, which leaks the handle when the zip is unreadable.
        with open(path, "rb") as handle, np.load(handle, allow_pickle=False) as npz:
            for keys in _NPZ_KEYS.values():
                if set(keys) <= set(npz.files):
                    arrays = {role: npz[key] for role, key in zip(_ROLES, keys, strict=True)}
                    sources = {
                        role: f"{path}[{key}]" for role, key in zip(_ROLES, keys, strict=True)
                    }
                    for role, array in arrays.items():
                        # np.load hands back the raw bytes of a member that is not an .npy file.
                        if not isinstance(array, np.ndarray):
                            raise DataError(f"{sources[role]} is not an .npy array: expected one")
                    return arrays, sources
            expected = "; or ".join(f"{', '.join(k)} ({who})" for who, k in _NPZ_KEYS.items())
            raise DataError(f"{path} has keys {sorted(npz.files)}: expected {expected}")
    except DataError:
        raise
    # numpy reports a damaged member in many ways (OSError, ValueError, zlib.error, a tokenizer
    # error for a garbled header, MemoryError for an absurd shape): to a user they mean the same.
    except Exception as error:
        raise DataError(
            f"{path} is not a readable npz file ({' '.join(str(error).split())}): expected the "
            "arrays saved by numpy.savez"
        ) from None


def _assemble(name: str, arrays: Mapping[str, NDArray[Any]], sources: Mapping[str, str]) -> Dataset:
    """Validate the four arrays and build the Dataset (uint8 or float32 images, int64 labels)."""
    images = {role: arrays[role] for role in ("train_images", "test_images")}
    labels = {role: arrays[role] for role in ("train_labels", "test_labels")}
    for role, array in images.items():
        if array.ndim != 3:
            raise DataError(
                f"{sources[role]}: images must have rank 3 [N, H, W], got shape {list(array.shape)}"
            )
    for role, array in labels.items():
        if array.ndim != 1:
            raise DataError(
                f"{sources[role]}: labels must have rank 1 [N], got shape {list(array.shape)}"
            )
    for part in ("train", "test"):
        count, label_count = len(arrays[f"{part}_images"]), len(arrays[f"{part}_labels"])
        if count != label_count:
            raise DataError(
                f"{sources[f'{part}_images']} has {count} images but {sources[f'{part}_labels']} "
                f"has {label_count} labels: expected one label per image"
            )
        if count == 0:
            raise DataError(f"{sources[f'{part}_images']} is empty: expected at least one image")
    train_shape, test_shape = images["train_images"].shape[1:], images["test_images"].shape[1:]
    if 0 in train_shape:
        raise DataError(f"{sources['train_images']}: images of size {list(train_shape)} are empty")
    if train_shape != test_shape:
        raise DataError(
            f"{sources['test_images']}: test images are {list(test_shape)}, expected the training "
            f"images' size {list(train_shape)}"
        )
    num_classes = len(np.unique(labels["train_labels"]))
    train_labels = _as_labels(labels["train_labels"], num_classes, sources["train_labels"])
    test_labels = _as_labels(labels["test_labels"], num_classes, sources["test_labels"])
    train_images = as_pixels(images["train_images"], sources["train_images"])
    test_images = as_pixels(images["test_images"], sources["test_images"])
    checksum = _checksum((train_images, train_labels, test_images, test_labels))
    return Dataset(
        name, train_images, train_labels, test_images, test_labels, num_classes, checksum
    )


def _as_labels(labels: NDArray[Any], num_classes: int, where: str) -> NDArray[np.int64]:
    """`labels` as int64, after checking that each is a whole number in 0..num_classes-1."""
    if np.issubdtype(labels.dtype, np.floating):
        whole = np.isfinite(labels).all() and np.array_equal(labels, np.round(labels))
    else:
        whole = np.issubdtype(labels.dtype, np.integer)
    if not whole:
        raise DataError(f"{where}: labels must be integers, got {labels.dtype} values")
    # Checked before the cast to int64, which would wrap a label too large for it.
    bad = np.flatnonzero((labels < 0) | (labels >= num_classes))
    if bad.size:
        raise DataError(
            f"{where}: label {labels[bad[0]]} at index {bad[0]} is out of range: expected "
            f"0..{num_classes - 1} ({num_classes} classes, the number of distinct training labels)"
        )
    return labels.astype(np.int64)


def as_pixels(images: NDArray[Any], where: str) -> Images:
    """Non-empty images as uint8, or float32 in [0, 1] (exact k/255 floats become the uint8 k);
    integers outside 0..255, other floats or other types are a DataError naming `where`."""
    if images.dtype == np.uint8:
        return np.ascontiguousarray(images)
    if np.issubdtype(images.dtype, np.integer):
        if images.min() < 0 or images.max() > 255:
            raise DataError(
                f"{where}: integer pixels range over {images.min()}..{images.max()}, "
                "expected 0..255"
            )
        return images.astype(np.uint8)
    if not np.issubdtype(images.dtype, np.floating):
        raise DataError(
            f"{where}: pixels of type {images.dtype}, expected uint8 or floats in [0, 1]"
        )
    for start in range(0, len(images), _ROWS):
        block = images[start : start + _ROWS]
        if not np.isfinite(block).all():
            raise DataError(f"{where}: pixels must be finite (found NaN or inf)")
        low, high = block.min(), block.max()
        if low < 0 or high > 1:
            raise DataError(
                f"{where}: float pixels range over [{low}, {high}], expected [0, 1] "
                "(or uint8 0..255)"
            )
    pixels = _exact_uint8(images)
    return pixels if pixels is not None else images.astype(np.float32)


def _exact_uint8(images: NDArray[np.floating]) -> NDArray[np.uint8] | None:
    """The uint8 pixels k whose k/255 gives exactly `images` (float64 or float32), else None."""
    levels = np.arange(256)
    # Both ways of producing float32 scaled pixels: round k/255 from float64, or divide in float32.
    tables = [
        (levels / 255.0).astype(images.dtype),
        levels.astype(images.dtype) / images.dtype.type(255),
    ]
    pixels = np.empty(images.shape, dtype=np.uint8)
    for start in range(0, len(images), _ROWS):
        block = images[start : start + _ROWS]
        k = np.rint(block * 255).astype(np.uint8)
        if not ((tables[0][k] == block) | (tables[1][k] == block)).all():
            return None
        pixels[start : start + _ROWS] = k
    return pixels


def _checksum(arrays: tuple[NDArray[Any], ...]) -> str:
    """SHA-256 of the arrays' types, shapes and values: equal data in any file format agree."""
    digest = hashlib.sha256()
    for array in arrays:
        digest.update(f"{array.dtype.str}{list(array.shape)};".encode())
        digest.update(np.ascontiguousarray(array).data)
    return digest.hexdigest()
