"""server.transports.v1_codec as plain functions: Predict messages to classify requests and back."""

from __future__ import annotations

import numpy as np
import pytest

from scratchnet.api.v1 import classifier_pb2 as pb
from server.dataplane import ClassifyResponse
from server.transports import v1_codec


def test_a_predict_request_becomes_a_classify_request() -> None:
    images = pb.Tensor(dtype=pb.DATA_TYPE_UINT8, shape=[2, 3, 4], data=bytes(24))
    message = pb.PredictRequest(images=images, return_probabilities=True, request_id="x")
    request = v1_codec.classify_request(v1_codec.receive(message.SerializeToString()), "digits")
    assert (request.model_name, request.model_version, request.id) == ("digits", "", "x")
    assert list(request.outputs) == ["label", "probabilities"]
    assert request.images is not None
    assert (request.images.datatype, request.images.shape) == ("UINT8", (2, 3, 4))
    assert v1_codec.classify_request(v1_codec.receive(b""), "d").images is None


def test_a_dtype_without_a_datatype_keeps_its_v1_name_for_the_message() -> None:
    unset = pb.PredictRequest(images=pb.Tensor(shape=[1]))
    assert (
        v1_codec.classify_request(v1_codec.receive(unset.SerializeToString()), "d").images.datatype
        == "DATA_TYPE_UNSPECIFIED"
    )  # type: ignore[union-attr]
    unknown = pb.PredictRequest(images=pb.Tensor(dtype=7, shape=[1]))  # type: ignore[arg-type]
    assert (
        v1_codec.classify_request(
            v1_codec.receive(unknown.SerializeToString()), "d"
        ).images.datatype
        == "DataType value 7"
    )  # type: ignore[union-attr]


def test_a_response_carries_labels_and_row_major_matrices() -> None:
    outputs = {
        "label": np.array([2, 0], dtype=np.int64),
        "scores": np.arange(6, dtype=np.float32).reshape(2, 3),
    }
    data = v1_codec.predict_response(ClassifyResponse("d", "1", "x", 3, outputs))
    message = pb.PredictResponse.FromString(data)
    assert list(message.labels) == [2, 0] and list(message.scores) == [0, 1, 2, 3, 4, 5]
    assert not message.probabilities and message.num_classes == 3
    assert (message.model_name, message.model_version, message.request_id) == ("d", "1", "x")


@pytest.mark.parametrize("rows", [1, 3, 1000])
def test_a_response_parses_as_the_message_protobuf_writes(rows: int) -> None:
    scores = np.random.default_rng(rows).normal(size=(rows, 10)).astype(np.float32)
    outputs = {
        "label": scores.argmax(axis=1).astype(np.int64),
        "scores": scores,
        "probabilities": np.full((rows, 10), 0.1, dtype=np.float32),
    }
    expected = pb.PredictResponse(
        labels=outputs["label"].tolist(),
        scores=scores.ravel().tolist(),
        probabilities=outputs["probabilities"].ravel().tolist(),
        num_classes=10,
        model_name="m",
        model_version="2",
        request_id="r",
    )
    data = v1_codec.predict_response(ClassifyResponse("m", "2", "r", 10, outputs))
    assert pb.PredictResponse.FromString(data) == expected
    assert len(data) == len(expected.SerializeToString())
