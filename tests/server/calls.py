"""Calls on both APIs for tests that count them (metrics, access log): the same uint8 images as a
v1 Predict or an Open Inference Protocol ModelInfer, answered with a status code."""

from __future__ import annotations

from collections.abc import Sequence

import grpc
import numpy as np
from numpy.typing import NDArray

from scratchnet.api.inference import open_inference_grpc_pb2 as oip
from scratchnet.api.inference.open_inference_grpc_pb2_grpc import GRPCInferenceServiceStub
from scratchnet.api.v1 import classifier_pb2 as pb
from scratchnet.api.v1.classifier_pb2_grpc import ClassifierStub

APIS = ("v1", "v2")
CALL_SECONDS = 30.0
"""Deadline of each call: far above any answer's time, so that a test cannot hang."""


def images(count: int, shape: tuple[int, int] = (28, 28), value: int = 0) -> NDArray[np.uint8]:
    """`count` uint8 images of `shape`, every pixel `value`."""
    return np.full((count, *shape), value, np.uint8)


def v1_request(pixels: NDArray[np.uint8]) -> pb.PredictRequest:
    """A Predict request carrying `pixels` [N,H,W] raw."""
    tensor = pb.Tensor(dtype=pb.DATA_TYPE_UINT8, shape=pixels.shape, data=pixels.tobytes())
    return pb.PredictRequest(images=tensor)


def v2_request(pixels: NDArray[np.uint8], model: str = "scratchnet") -> oip.ModelInferRequest:
    """A ModelInfer request for `model` carrying `pixels` [N,H,W] raw, asking for the label."""
    tensor = oip.ModelInferRequest.InferInputTensor(
        name="images", datatype="UINT8", shape=list(pixels.shape)
    )
    return oip.ModelInferRequest(
        model_name=model,
        inputs=[tensor],
        outputs=[oip.ModelInferRequest.InferRequestedOutputTensor(name="label")],
        raw_input_contents=[pixels.tobytes()],
    )


class Caller:
    """Both APIs' stubs on one channel."""

    def __init__(self, channel: grpc.Channel, metadata: Sequence[tuple[str, str]] = ()) -> None:
        self.v1 = ClassifierStub(channel)
        self.v2 = GRPCInferenceServiceStub(channel)
        self.metadata = tuple(metadata)

    def call(self, api: str, pixels: NDArray[np.uint8]) -> grpc.StatusCode:
        """Send `pixels` through `api` (v1 or v2); OK or the status code of the refusal."""
        try:
            if api == "v1":
                self.v1.Predict(v1_request(pixels), timeout=CALL_SECONDS, metadata=self.metadata)
            else:
                self.v2.ModelInfer(v2_request(pixels), timeout=CALL_SECONDS, metadata=self.metadata)
        except grpc.RpcError as error:
            code: grpc.StatusCode = error.code()  # type: ignore[attr-defined]
            return code
        return grpc.StatusCode.OK
