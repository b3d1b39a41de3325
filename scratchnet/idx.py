"""Reading IDX files (the MNIST format), gzip-compressed or raw, straight into uint8 arrays.

Layout: a big-endian header — magic (two zero bytes, a type code, the number of dimensions), then
one uint32 per dimension — followed by the values. Only unsigned bytes (type code 0x08) are read.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import math
import os
import struct
import zlib
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from scratchnet.errors import DataError
from scratchnet.files import atomic_write

__all__ = ["IMAGES_MAGIC", "LABELS_MAGIC", "IdxArray", "read_idx", "write_idx"]

IMAGES_MAGIC = 0x00000803
LABELS_MAGIC = 0x00000801
_UBYTE = 0x08
_GZIP_SIGNATURE = b"\x1f\x8b"
_READ_BYTES = 1 << 22


@dataclass(frozen=True)
class IdxArray:
    """The values of one IDX file and the MD5 of its (decompressed) bytes."""

    values: NDArray[np.uint8]
    md5: str


def read_idx(path: str | os.PathLike[str], magic: int) -> IdxArray:
    """Read an IDX file of unsigned bytes whose header must start with `magic`.

    The file may be gzip-compressed (detected from its first bytes, not its name). A wrong magic,
    a short header or short data is a DataError naming the file.
    """
    name = str(path)
    try:
        with open(path, "rb") as raw:
            compressed = raw.read(2) == _GZIP_SIGNATURE
            raw.seek(0)
            if compressed:
                with gzip.GzipFile(fileobj=raw) as stream:
                    return _read_stream(stream, name, magic)
            return _read_stream(raw, name, magic)
    except EOFError:
        raise DataError(f"{name} is truncated: the gzip stream ends early") from None
    except (gzip.BadGzipFile, zlib.error) as error:
        raise DataError(f"{name} is not a valid gzip file ({error})") from None
    except OSError as error:
        raise DataError(f"cannot read {name}: {error.strerror or error}") from None


def _read_stream(stream: io.BufferedIOBase, name: str, magic: int) -> IdxArray:
    ndim = magic & 0xFF
    header = stream.read(4 + 4 * ndim)
    if len(header) < 4 or struct.unpack(">I", header[:4])[0] != magic:
        found = f"0x{struct.unpack('>I', header[:4])[0]:08x}" if len(header) >= 4 else "nothing"
        kind = "image" if magic == IMAGES_MAGIC else "label"
        raise DataError(
            f"{name} is not an IDX {kind} file: magic number {found}, expected 0x{magic:08x}"
        )
    if len(header) < 4 + 4 * ndim:
        raise DataError(f"{name} is truncated: its IDX header ends after {len(header)} bytes")
    shape = struct.unpack(f">{ndim}I", header[4:])
    size = math.prod(shape)
    # Grown as the data arrives rather than allocated from the header, which may be corrupt.
    values = bytearray()
    while len(values) < size:
        chunk = stream.read(min(_READ_BYTES, size - len(values)))
        if not chunk:
            raise DataError(
                f"{name} is truncated: its header promises {size} values "
                f"({'x'.join(map(str, shape))}), the file holds {len(values)}"
            )
        values += chunk
    if stream.read(1):
        raise DataError(
            f"{name} is longer than its header says ({'x'.join(map(str, shape))} values): "
            "expected nothing after the last value"
        )
    digest = hashlib.md5(header, usedforsecurity=False)
    digest.update(values)
    return IdxArray(np.frombuffer(values, dtype=np.uint8).reshape(shape), digest.hexdigest())


def write_idx(path: str | os.PathLike[str], values: NDArray[np.uint8], compress: bool) -> None:
    """Write `values` (uint8, 1-D labels or 3-D images) as an IDX file, gzip-compressed or raw."""
    array = np.ascontiguousarray(values, dtype=np.uint8)
    magic = (_UBYTE << 8) | array.ndim
    payload = struct.pack(f">I{array.ndim}I", magic, *array.shape) + array.tobytes()
    with atomic_write(path) as handle:
        handle.write(gzip.compress(payload, mtime=0) if compress else payload)
