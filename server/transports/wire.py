"""Reading the tensor bytes of a request straight out of its serialized message, without copies.

protobuf copies every bytes field it parses (a 3 MB batch of images twice over: into the message,
then out of it). `split` walks the message's top-level fields in the protobuf wire format, keeps
the occurrences of the one field that holds tensor data as views of the received bytes, and
hands the rest — a few hundred bytes of names, shapes and datatypes — to protobuf as usual.
"""

from __future__ import annotations

from google.protobuf.message import DecodeError

__all__ = ["SPLIT_ABOVE", "split"]

SPLIT_ABOVE = 64 * 1024
"""Messages smaller than this go to protobuf whole: copying them costs less than splitting."""

_VARINT, _FIXED64, _LENGTH, _FIXED32 = 0, 1, 2, 5


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
        if kind == _VARINT:
            _, offset = _varint(view, offset)
        elif kind == _FIXED64:
            offset += 8
        elif kind == _FIXED32:
            offset += 4
        elif kind == _LENGTH:
            length, offset = _varint(view, offset)
            if number == field:
                if offset + length > len(view):
                    raise DecodeError(f"field {number} is truncated")
                found.append(view[offset : offset + length])
                offset += length
                continue
            offset += length
        else:
            raise DecodeError(f"wire type {kind} of field {number} is not supported")
        if offset > len(view):
            raise DecodeError(f"field {number} is truncated")
        rest += view[start:offset]
    return found, bytes(rest)
