"""server.transports.wire: tensor bytes found in place in serialized messages, the rest parsed by
protobuf to the same message, and malformed bytes refused as protobuf would."""

from __future__ import annotations

import numpy as np
import pytest
from google.protobuf import descriptor_pb2
from google.protobuf.message import DecodeError

from scratchnet.api.inference import open_inference_grpc_pb2 as pb
from scratchnet.api.v1 import classifier_pb2 as v1
from server.transports import oip_codec, v1_codec, wire


def test_raw_contents_are_views_of_the_message_and_the_rest_parses_the_same() -> None:
    pixels = np.arange(wire.SPLIT_ABOVE, dtype=np.float32).tobytes()
    message = pb.ModelInferRequest(model_name="m", id="x", raw_input_contents=[pixels, b"second"])
    message.inputs.add(name="images", datatype="FP32", shape=[1, wire.SPLIT_ABOVE])
    message.parameters["p"].int64_param = 7
    data = message.SerializeToString()
    received = oip_codec.receive(data)
    assert [bytes(view) for view in received.raw] == [pixels, b"second"]
    assert all(isinstance(view, memoryview) and view.obj is data for view in received.raw)
    expected = pb.ModelInferRequest()
    expected.CopyFrom(message)
    expected.ClearField("raw_input_contents")
    assert received.message == expected


def test_a_small_request_is_parsed_whole_with_the_same_contents() -> None:
    pixels = np.arange(784, dtype=np.float32).tobytes()
    message = pb.ModelInferRequest(model_name="m", id="x", raw_input_contents=[pixels, b"second"])
    message.inputs.add(name="images", datatype="FP32", shape=[1, 28, 28])
    received = oip_codec.receive(message.SerializeToString())
    assert [bytes(view) for view in received.raw] == [pixels, b"second"]
    assert received.message.id == "x" and list(received.message.inputs[0].shape) == [1, 28, 28]


def test_a_predict_request_keeps_its_pixels_in_place() -> None:
    pixels = bytes(range(256)) * 3
    message = v1.PredictRequest(
        images=v1.Tensor(dtype=v1.DATA_TYPE_UINT8, shape=[3, 16, 16], data=pixels),
        return_scores=True,
        model_name="digits",
    )
    received = v1_codec.receive(message.SerializeToString())
    assert received.pixels is not None and bytes(received.pixels) == pixels
    assert received.message.model_name == "digits" and received.message.return_scores
    assert list(received.message.images.shape) == [3, 16, 16]
    assert v1_codec.receive(v1.PredictRequest().SerializeToString()).pixels is None
    empty = v1_codec.receive(v1.PredictRequest(images=v1.Tensor()).SerializeToString())
    assert empty.pixels is not None and len(empty.pixels) == 0


@pytest.mark.parametrize("length", [0, 1, 127, 128, 300, 70_000])
def test_a_length_delimited_field_is_written_as_protobuf_writes_it(length: int) -> None:
    payload = bytes(range(256)) * (length // 256) + bytes(length % 256)
    one_byte_key = pb.ModelInferRequest(raw_input_contents=[payload])  # field 7
    assert wire.length_delimited(7, payload) == one_byte_key.SerializeToString()
    text = payload.decode("latin-1")
    two_byte_key = descriptor_pb2.FileOptions(swift_prefix=text)  # field 39; "" is not written
    if length:
        assert wire.length_delimited(39, text.encode()) == two_byte_key.SerializeToString()


@pytest.mark.parametrize(
    "data", [b"\xff\xff\xff", b"\x3a\x05ab", b"\x08", b"\x00\x01", b"\x0f\x00"], ids=repr
)
def test_malformed_bytes_are_a_decode_error(data: bytes) -> None:
    with pytest.raises(DecodeError):
        wire.split(data, 7)


def _key(number: int, kind: int) -> bytes:
    """A field's key, for numbers under 16 (one byte)."""
    return bytes([number << 3 | kind])


def test_an_unknown_group_is_skipped_at_every_size_as_protobuf_skips_it() -> None:
    # Field 15 as an old-style group holding a varint and a nested group: unknown to the schema.
    group = _key(15, 3) + _key(1, 0) + b"\x05" + _key(2, 3) + _key(2, 4) + _key(15, 4)
    for size in (16, wire.SPLIT_ABOVE):  # parsed whole, then split in place
        pixels = np.zeros(size, dtype=np.float32).tobytes()
        message = pb.ModelInferRequest(model_name="m", raw_input_contents=[pixels])
        message.inputs.add(name="images", datatype="FP32", shape=[1, size])
        received = oip_codec.receive(message.SerializeToString() + group)
        assert received.message.model_name == "m" and [bytes(v) for v in received.raw] == [pixels]


@pytest.mark.parametrize(
    "data",
    [_key(15, 3) + _key(1, 0) + b"\x05", _key(15, 3) + _key(14, 4), _key(15, 4)],
    ids=["never ends", "ends as another", "ends without a start"],
)
def test_a_malformed_group_is_a_decode_error(data: bytes) -> None:
    with pytest.raises(DecodeError):
        wire.split(data, 7)
