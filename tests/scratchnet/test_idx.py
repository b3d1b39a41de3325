"""scratchnet.idx: reading IDX files, gzip or raw, and its one-line errors."""

from __future__ import annotations

import gzip
import hashlib
import struct
from pathlib import Path

import numpy as np
import pytest

from scratchnet.errors import DataError
from scratchnet.idx import IMAGES_MAGIC, LABELS_MAGIC, read_idx, write_idx


@pytest.mark.parametrize("compress", [True, False])
def test_round_trip_and_md5_of_the_decompressed_bytes(tmp_path: Path, compress: bool) -> None:
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    path = tmp_path / "images"
    write_idx(path, images, compress)
    raw = gzip.decompress(path.read_bytes()) if compress else path.read_bytes()
    assert raw[:4] == b"\x00\x00\x08\x03"
    read = read_idx(path, IMAGES_MAGIC)
    assert read.values.dtype == np.uint8
    np.testing.assert_array_equal(read.values, images)
    assert read.md5 == hashlib.md5(raw).hexdigest()


def test_labels_are_one_dimensional(tmp_path: Path) -> None:
    write_idx(tmp_path / "labels", np.array([3, 1, 4], dtype=np.uint8), compress=False)
    np.testing.assert_array_equal(read_idx(tmp_path / "labels", LABELS_MAGIC).values, [3, 1, 4])


def _expect_error(path: Path, magic: int, *words: str) -> None:
    with pytest.raises(DataError) as caught:
        read_idx(path, magic)
    message = str(caught.value)
    assert "\n" not in message and str(path) in message
    for word in words:
        assert word in message


def test_wrong_magic(tmp_path: Path) -> None:
    write_idx(tmp_path / "labels", np.zeros(3, dtype=np.uint8), compress=True)
    _expect_error(tmp_path / "labels", IMAGES_MAGIC, "not an IDX image file", "0x00000801")


def test_truncated_values(tmp_path: Path) -> None:
    path = tmp_path / "images"
    path.write_bytes(struct.pack(">4I", IMAGES_MAGIC, 2, 3, 4) + bytes(20))
    _expect_error(path, IMAGES_MAGIC, "truncated", "24 values", "holds 20")


def test_truncated_header(tmp_path: Path) -> None:
    path = tmp_path / "images"
    path.write_bytes(struct.pack(">2I", IMAGES_MAGIC, 2))
    _expect_error(path, IMAGES_MAGIC, "truncated", "header")


def test_truncated_gzip_stream(tmp_path: Path) -> None:
    path = tmp_path / "images.gz"
    write_idx(path, np.zeros((50, 8, 8), dtype=np.uint8) + 7, compress=True)
    path.write_bytes(path.read_bytes()[:-12])
    _expect_error(path, IMAGES_MAGIC, "truncated")


def test_extra_bytes(tmp_path: Path) -> None:
    path = tmp_path / "labels"
    path.write_bytes(struct.pack(">2I", LABELS_MAGIC, 2) + bytes(3))
    _expect_error(path, LABELS_MAGIC, "longer than its header says")


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "labels"
    path.write_bytes(b"")
    _expect_error(path, LABELS_MAGIC, "not an IDX label file", "nothing")


@pytest.mark.parametrize("compress", [True, False])
def test_a_header_promising_more_than_the_file_holds_allocates_nothing(
    tmp_path: Path, compress: bool
) -> None:
    # 540 GB promised: allocating it up front would fail with MemoryError, not a DataError.
    payload = struct.pack(">4I", IMAGES_MAGIC, 60000, 3000, 3000) + bytes(100)
    path = tmp_path / "images"
    path.write_bytes(gzip.compress(payload) if compress else payload)
    _expect_error(path, IMAGES_MAGIC, "truncated", "promises 540000000000 values", "holds 100")


def test_not_a_gzip_stream(tmp_path: Path) -> None:
    path = tmp_path / "labels.gz"
    path.write_bytes(b"\x1f\x8b" + bytes(30))
    _expect_error(path, LABELS_MAGIC, "not a valid gzip file")
