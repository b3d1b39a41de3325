"""server.transports.v1_codec as plain functions: Predict messages to classify requests and back."""

from __future__ import annotations

import numpy as np

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
    message = v1_codec.predict_response(ClassifyResponse("d", "1", "x", 3, outputs))
    assert list(message.labels) == [2, 0] and list(message.scores) == [0, 1, 2, 3, 4, 5]
    assert not message.probabilities and message.num_classes == 3
    assert (message.model_name, message.model_version, message.request_id) == ("d", "1", "x")
