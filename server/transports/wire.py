"""Tensor bytes in serialized messages, read and written in the protobuf wire format directly.

protobuf copies every bytes field it parses (a 3 MB batch of images twice over: into the message,
then out of it). `split` walks the message's top-level fields, keeps the occurrences of the one
field that holds tensor data as views of the received bytes, and hands the rest — a few hundred
bytes of names, shapes and datatypes — to protobuf as usual.

protobuf also converts every value of a repeated number field to and from a Python object: 250 µs
for the scores of 1000 images of 10 classes. `length_delimited` writes such a field, packed, from
the bytes numpy makes; appended to the rest of the message as protobuf serialized it, it parses
to the same message.
"""

from __future__ import annotations

from google.protobuf.message import DecodeError

__all__ = ["SPLIT_ABOVE", "length_delimited", "split"]

SPLIT_ABOVE = 64 * 1024
"""Messages smaller than this go to protobuf whole: copying them costs less than splitting."""

_VARINT, _FIXED64, _LENGTH, _START_GROUP, _END_GROUP, _FIXED32 = 0, 1, 2, 3, 4, 5
_MAX_GROUP_DEPTH = 100
"""As protobuf's own recursion limit: deeper groups are refused, not followed."""


def _varint(data: memoryview, offset: int) -> tuple[int, int]:
    """The varint at `offset` and the offset after it."""
    value = shift = 0
    while True:
        if offset >= len(data) or shift > 63:
            raise DecodeError("truncated or overlong varint")
        byte = data[offset]
        offset += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, offset
        shift += 7


def _varint_bytes(value: int) -> bytes:
    """`value` (≥ 0) as a varint."""
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def length_delimited(field: int, payload: bytes) -> bytes:
    """Field `field` holding `payload`, as serialized: a bytes or string field, or a packed
    repeated number field whose values `payload` holds (for `repeated float`, float32
    little-endian)."""
    return _varint_bytes(field << 3 | _LENGTH) + _varint_bytes(len(payload)) + payload


def split(data: bytes | memoryview, field: int) -> tuple[list[memoryview], bytes]:
    """The length-delimited occurrences of `field` in a serialized message, as views of `data`
    in order, and the message's other fields, still serialized (to parse with protobuf).

    DecodeError when `data` is not a well-formed message.
    """
    view = memoryview(data)
    found: list[memoryview] = []
    rest = bytearray()
    offset = 0
    while offset < len(view):
        start = offset
        key, offset = _varint(view, offset)
        number, kind = key >> 3, key & 7
        if number == 0:
            raise DecodeError("field number 0")
        if kind == _LENGTH and number == field:
            length, offset = _varint(view, offset)
            if offset + length > len(view):
                raise DecodeError(f"field {number} is truncated")
            found.append(view[offset : offset + length])
            offset += length
            continue
        offset = _skip(view, offset, number, kind, 0)
        rest += view[start:offset]
    return found, bytes(rest)


def _skip(view: memoryview, offset: int, number: int, kind: int, depth: int) -> int:
    """The offset after the value of field `number` (wire type `kind`) that starts at `offset`;
    a group (an unknown field of an old-style message) to its end, as protobuf skips it."""
    if kind == _VARINT:
        _, offset = _varint(view, offset)
    elif kind == _FIXED64:
        offset += 8
    elif kind == _FIXED32:
        offset += 4
    elif kind == _LENGTH:
        length, offset = _varint(view, offset)
        offset += length
    elif kind == _START_GROUP:
        if depth >= _MAX_GROUP_DEPTH:
            raise DecodeError(f"groups nested deeper than {_MAX_GROUP_DEPTH}")
        while True:
            key, offset = _varint(view, offset)
            inner, inner_kind = key >> 3, key & 7
            if inner_kind == _END_GROUP:
                if inner != number:
                    raise DecodeError(f"group {number} ends as group {inner}")
                break
            if inner == 0:
                raise DecodeError("field number 0")
            offset = _skip(view, offset, inner, inner_kind, depth + 1)
    else:  # an end of group with no start, or no wire type at all
        raise DecodeError(f"wire type {kind} of field {number} is not valid here")
    if offset > len(view):
        raise DecodeError(f"field {number} is truncated")
    return offset
