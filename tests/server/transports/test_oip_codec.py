"""server.transports.oip_codec as plain functions: messages in, data plane requests out."""

from __future__ import annotations

import numpy as np
import pytest

from scratchnet.api.inference import open_inference_grpc_pb2 as pb
from scratchnet.errors import InvalidArgument
from server.dataplane import InferResponse
from server.transports import oip_codec


def received(message: pb.ModelInferRequest) -> oip_codec.Received:
    """The message as the server receives it: serialized, then read (tensors uncopied)."""
    return oip_codec.receive(message.SerializeToString())


def _request(**fields: object) -> pb.ModelInferRequest:
    return pb.ModelInferRequest(model_name="m", model_version="2", id="r1", **fields)  # type: ignore[arg-type]


def test_raw_inputs_pair_with_inputs_in_order_and_are_not_copied() -> None:
    raw = [np.arange(4, dtype=np.float32).tobytes(), b"\x01\x02"]
    message = _request(
        inputs=[
            pb.ModelInferRequest.InferInputTensor(name="a", datatype="FP32", shape=[1, 4]),
            pb.ModelInferRequest.InferInputTensor(name="b", datatype="UINT8", shape=[2]),
        ],
        outputs=[pb.ModelInferRequest.InferRequestedOutputTensor(name="y")],
        raw_input_contents=raw,
    )
    request = oip_codec.infer_request(received(message))
    assert (request.model_name, request.model_version, request.id) == ("m", "2", "r1")
    assert [(t.name, t.datatype, t.shape, t.raw) for t in request.inputs] == [
        ("a", "FP32", (1, 4), raw[0]),
        ("b", "UINT8", (2,), raw[1]),
    ]
    assert [output.name for output in request.outputs] == ["y"]


def test_typed_contents_are_passed_uncounted_with_their_field() -> None:
    tensor = pb.ModelInferRequest.InferInputTensor(
        name="a",
        datatype="INT64",
        shape=[3],
        contents=pb.InferTensorContents(int64_contents=[1, 2, 3]),
    )
    request = oip_codec.infer_request(received(_request(inputs=[tensor])))
    assert request.inputs[0].typed_field == "int64_contents"
    assert list(request.inputs[0].typed or []) == [1, 2, 3]
    empty = pb.ModelInferRequest.InferInputTensor(name="a", datatype="FP32", shape=[1])
    empty.contents.SetInParent()
    assert (
        oip_codec.infer_request(received(_request(inputs=[empty]))).inputs[0].typed_field
        == "fp32_contents"
    )


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"raw_input_contents": [b"", b""]}, "expected 1 raw_input_contents entry"),
        ({}, "unable to find data for input tensor 'a' for model 'm'"),
    ],
)
def test_protocol_mistakes_are_named_in_triton_words(
    fields: dict[str, object], message: str
) -> None:
    tensor = pb.ModelInferRequest.InferInputTensor(name="a", datatype="FP32", shape=[1])
    with pytest.raises(InvalidArgument, match=message):
        oip_codec.infer_request(received(_request(inputs=[tensor], **fields)))


def test_raw_and_contents_together_and_extension_parameters_are_refused() -> None:
    tensor = pb.ModelInferRequest.InferInputTensor(
        name="a", datatype="FP32", shape=[1], contents=pb.InferTensorContents(fp32_contents=[1])
    )
    with pytest.raises(InvalidArgument, match="contents field must not be specified"):
        oip_codec.infer_request(received(_request(inputs=[tensor], raw_input_contents=[b"\0" * 4])))
    plain = pb.ModelInferRequest.InferInputTensor(name="a", datatype="FP32", shape=[1])
    plain.parameters["shared_memory_region"].string_param = "r"
    with pytest.raises(InvalidArgument, match="needs parameters shared_memory_region"):
        oip_codec.infer_request(received(_request(inputs=[plain])))


def test_output_parameters_pass_as_plain_values() -> None:
    output = pb.ModelInferRequest.InferRequestedOutputTensor(name="y")
    output.parameters["classification"].int64_param = 3
    plain = pb.ModelInferRequest.InferInputTensor(name="a", datatype="FP32", shape=[1])
    message = _request(inputs=[plain], outputs=[output], raw_input_contents=[b"\0" * 4])
    request = oip_codec.infer_request(received(message))
    assert request.outputs[0].parameters == {"classification": 3}


def test_outputs_go_back_raw_with_name_datatype_and_shape() -> None:
    label = np.array([3, 1], dtype=np.int64)
    scores = np.arange(6, dtype=np.float32).reshape(2, 3)
    message = oip_codec.infer_response(InferResponse("m", "2", "r1", {"label": label, "s": scores}))
    assert [(o.name, o.datatype, list(o.shape)) for o in message.outputs] == [
        ("label", "INT64", [2]),
        ("s", "FP32", [2, 3]),
    ]
    assert np.frombuffer(message.raw_output_contents[1], "<f4").tolist() == scores.ravel().tolist()
    assert (message.model_name, message.model_version, message.id) == ("m", "2", "r1")
