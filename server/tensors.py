"""Tensors as a request brings them, before any check: a name, a datatype, a shape and the data,
either raw little-endian bytes or flat typed values (protobuf contents, JSON). The data plane
checks name, datatype and shape against the model first, then asks for the array.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from scratchnet import datatypes
from scratchnet.datatypes import Datatype
from scratchnet.errors import InvalidArgument
from server.signature import format_dims

__all__ = ["JSON_DATA", "InputTensor", "decode", "pack_strings", "raw_size"]

JSON_DATA = "data"
"""InputTensor.typed_field of values that came as JSON rather than in a protobuf field."""


@dataclass(slots=True)  # not frozen: one is built per request, frozen costs 3x
class InputTensor:
    """One input as the client sent it; `raw` or `typed` holds the data (neither: none sent)."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    raw: bytes | memoryview | None = None
    typed: Sequence[Any] | None = None
    """Flat values, as protobuf's typed contents or JSON give them."""
    typed_field: str = ""
    """Where the typed values came from, for messages: "fp32_contents", "data"."""
    parameters: Mapping[str, Any] = field(default_factory=dict)

    @property
    def element_count(self) -> int:
        """product(shape): how many values the shape promises."""
        return math.prod(self.shape)


def decode(tensor: InputTensor, datatype: Datatype, what: str) -> NDArray[Any]:
    """The tensor's data as an array of its shape, once its datatype and shape passed the checks.

    Raw bytes become a read-only view (no copy). InvalidArgument, naming `what`, when the byte
    length or the number of typed values disagrees with the shape, before anything is converted.
    """
    if datatype.numpy is None:
        raise InvalidArgument(f"{what}: datatype {datatype} is not supported by this server")
    if tensor.raw is not None:
        return _from_raw(tensor.raw, datatype, tensor.shape, what)
    if tensor.typed is None:
        raise InvalidArgument(f"{what}: the request holds no data for it")
    count = len(tensor.typed)
    if count != tensor.element_count:
        raise InvalidArgument(
            f"{what}: expected {tensor.element_count} values for shape "
            f"{format_dims(tensor.shape)}, got {count} in {tensor.typed_field}"
        )
    return _from_typed(tensor.typed, datatype, tensor.shape, what, tensor.typed_field)


def _from_raw(
    data: bytes | memoryview, datatype: Datatype, shape: tuple[int, ...], what: str
) -> NDArray[Any]:
    assert datatype.numpy is not None
    if datatype.itemsize == 0:
        return _strings(data, shape, what)
    expected = math.prod(shape) * datatype.itemsize
    if len(data) != expected:
        raise InvalidArgument(
            f"{what}: expected {expected} bytes for shape {format_dims(shape)} of {datatype} "
            f"({datatype.itemsize} per element), got {len(data)}"
        )
    array = np.frombuffer(data, dtype=datatype.numpy).reshape(shape)
    if array.dtype == np.bool_:
        # numpy takes any byte as a bool, but a model would compute on the byte itself.
        octets = np.frombuffer(data, dtype=np.uint8)
        if octets.size and int(np.maximum.reduce(octets)) > 1:
            first = int(np.flatnonzero(octets > 1)[0])
            raise InvalidArgument(
                f"{what}: BOOL bytes must be 0 or 1, found {int(octets[first])} at index {first}"
            )
    return array


def _strings(data: bytes | memoryview, shape: tuple[int, ...], what: str) -> NDArray[Any]:
    """BYTES elements as the protocol packs them raw: each a 4-byte little-endian length and
    then its bytes."""
    view = memoryview(data)
    count = math.prod(shape)
    values: list[bytes] = []
    offset = 0
    while offset < len(view) and len(values) < count:
        if offset + 4 > len(view):
            break
        length = int.from_bytes(view[offset : offset + 4], "little")
        offset += 4
        if offset + length > len(view):
            break
        values.append(bytes(view[offset : offset + length]))
        offset += length
    if len(values) != count or offset != len(view):
        raise InvalidArgument(
            f"{what}: expected {count} length-prefixed BYTES elements for shape "
            f"{format_dims(shape)} in {len(view)} bytes, which do not hold them exactly"
        )
    array = np.empty(count, dtype=object)
    array[:] = values
    return array.reshape(shape)


def pack_strings(array: NDArray[Any]) -> bytes:
    """A BYTES array packed raw: each element's 4-byte little-endian length, then its bytes."""
    parts = []
    for value in array.ravel():
        data = value if isinstance(value, bytes) else str(value).encode()
        parts += [len(data).to_bytes(4, "little"), data]
    return b"".join(parts)


def raw_size(array: NDArray[Any]) -> int:
    """The bytes `array` takes as a raw tensor of its datatype (BYTES: packed, as above)."""
    itemsize = datatypes.by_numpy(array.dtype).itemsize
    return len(pack_strings(array)) if itemsize == 0 else array.size * itemsize


def _check_float_range(
    values: Sequence[Any], array: NDArray[Any], datatype: Datatype, what: str, where: str
) -> None:
    """A finite value too large for the datatype (70000 as FP16) is refused as what it is, not
    left to become infinity, which the checks would call a NaN or infinity sent."""
    if np.isfinite(array).all():
        return
    sent = np.asarray(values, dtype=np.float64).reshape(-1)
    overflowed = np.isfinite(sent) & ~np.isfinite(array.reshape(-1))
    if overflowed.any():
        first = int(np.flatnonzero(overflowed)[0])
        largest = float(np.finfo(datatype.numpy).max)
        raise InvalidArgument(
            f"{what}: {where}[{first}] is {sent[first]:g}, outside the {datatype} range "
            f"[{-largest:g}, {largest:g}]"
        )


def _beyond_float(value: Any) -> bool:
    """Whether `value` is a Python int too large for a float64."""
    if not isinstance(value, int):
        return False
    try:
        float(value)
    except OverflowError:
        return True
    return False


def _from_typed(
    values: Sequence[Any], datatype: Datatype, shape: tuple[int, ...], what: str, where: str
) -> NDArray[Any]:
    assert datatype.numpy is not None
    if datatype.numpy.kind == "O":
        array = np.empty(len(values), dtype=object)
        array[:] = [bytes(value) for value in values]
        return array.reshape(shape)
    if datatype.numpy.kind not in "iu":
        try:
            with np.errstate(over="ignore"):  # an overflow is named below
                array = np.asarray(values, dtype=datatype.numpy).reshape(shape)
        except OverflowError:
            # A JSON integer past float64's range (10**400): Python cannot make it a float.
            first = next((i for i, v in enumerate(values) if _beyond_float(v)), None)
            found = (
                f"{where} holds an integer"
                if first is None
                else f"{where}[{first}] is an integer of {len(str(abs(values[first])))} digits"
            )
            largest = float(np.finfo(datatype.numpy).max)
            raise InvalidArgument(
                f"{what}: {found}, outside the {datatype} range [{-largest:g}, {largest:g}]"
            ) from None
        except (TypeError, ValueError) as error:
            raise InvalidArgument(
                f"{what}: {where} holds values that are not {datatype} ({error})"
            ) from None
        if array.dtype.kind == "f":
            _check_float_range(values, array, datatype, what, where)
        return array
    # Narrow integers travel in 32-bit fields, JSON integers in any size: a value that does not
    # fit is refused, not wrapped. The values are compared as they came (numpy compares Python
    # ints exactly), so that -1 is not read as a UINT64 of 2**64 - 1.
    wide = np.asarray(values)
    if wide.dtype.kind == "f" and all(isinstance(value, int) for value in values):
        # Integers past INT64's range beside others (a UINT64 of 2**63 next to 1): numpy makes
        # them all float64, which loses digits; compared as Python ints instead.
        wide = np.array(values, dtype=object)
    if wide.dtype.kind not in "iuO":
        raise InvalidArgument(f"{what}: {where} holds values that are not {datatype}")
    limits = np.iinfo(datatype.numpy)
    flat = wide.reshape(-1)
    if flat.dtype.kind == "O":  # Python ints past 64 bits (JSON)
        try:
            outside = np.array([not limits.min <= int(v) <= limits.max for v in flat], bool)
        except (TypeError, ValueError) as error:
            raise InvalidArgument(
                f"{what}: {where} holds values that are not {datatype} ({error})"
            ) from None
    else:
        outside = (flat < limits.min) | (flat > limits.max)
    if outside.any():
        first = int(np.flatnonzero(outside)[0])
        raise InvalidArgument(
            f"{what}: {where}[{first}] is {int(flat[first])}, outside the {datatype} range "
            f"[{limits.min}, {limits.max}]"
        )
    return flat.astype(datatype.numpy).reshape(shape)
