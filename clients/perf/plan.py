"""A run's requests, built and serialised once before it starts, and the decoding of replies."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from numpy.typing import NDArray

from clients.perf.model import V1_DATATYPES, ModelSpec
from clients.shared_memory import Region
from scratchnet.api.inference import open_inference_grpc_pb2 as oip
from scratchnet.api.v1 import classifier_pb2 as v1
from scratchnet.errors import ScratchnetError

__all__ = [
    "APIS",
    "DEFAULT_OUTPUTS",
    "DISTINCT_REQUESTS",
    "SEED",
    "SENDABLE",
    "Plan",
    "build_plan",
    "in_shared_memory",
]

APIS = {
    "v1": "/scratchnet.v1.Classifier/Predict",
    "v2": "/inference.GRPCInferenceService/ModelInfer",
}

DEFAULT_OUTPUTS = ("label", "scores")
# A few different requests, sent in turn, so that no cache of one answer flatters the server.
DISTINCT_REQUESTS = 8
SEED = 0
# Datatype names of the Open Inference Protocol -> little-endian numpy dtypes, for the tensors
# perf sends (UINT8, FP32) and the outputs it decodes.
_NUMPY: dict[str, np.dtype[Any]] = {
    "UINT8": np.dtype("u1"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
}
SENDABLE = ("UINT8", "FP32")
"""The pixel types perf sends."""
_V1_ENUMS = {name: enum for enum, name in V1_DATATYPES.items()}


@dataclass(frozen=True)
class Plan:
    """Requests serialised once before a run, and the images each carries."""

    api: str
    requests: tuple[bytes, ...]
    images: tuple[NDArray[Any], ...]
    datatype: str
    outputs: tuple[str, ...]
    model: str = ""
    version: str = ""

    @property
    def method(self) -> str:
        """The gRPC method the requests go to."""
        return APIS[self.api]

    @property
    def batch(self) -> int:
        """Images per request."""
        return len(self.images[0])

    def decode(self, reply: bytes) -> dict[str, NDArray[Any]]:
        """The output arrays of one serialised reply, by output name."""
        if self.api == "v1":
            return _decode_v1(v1.PredictResponse.FromString(reply))
        return _decode_v2(oip.ModelInferResponse.FromString(reply))


def build_plan(
    spec: ModelSpec,
    api: str,
    batch: int,
    *,
    datatype: str | None = None,
    outputs: Sequence[str] = DEFAULT_OUTPUTS,
    pixels: NDArray[np.uint8] | None = None,
    count: int = DISTINCT_REQUESTS,
) -> Plan:
    """`count` requests of `batch` images each: `pixels` (uint8 [N, *image_dims], or [N,H,W] for
    an input [N,1,H,W] or [N,H·W]; cycled) or random pixels from a fixed seed, sent as `datatype`
    (default: the model's own).

    v1 lists every datatype the server accepts; v2 metadata gives only the model's own, so v2
    sends another datatype asked for as it is, and the server decides."""
    datatype = datatype or spec.datatypes[0]
    if datatype not in spec.datatypes and (api == "v1" or datatype not in SENDABLE):
        raise ScratchnetError(
            f"model '{spec.name}' takes {' or '.join(spec.datatypes)} images, not {datatype}"
        )
    if datatype not in SENDABLE:
        raise ScratchnetError(f"perf sends UINT8 or FP32 images, not {datatype}")
    unknown = [name for name in outputs if name not in spec.outputs]
    if unknown or not outputs:
        raise ScratchnetError(
            f"model '{spec.name}' has no output {', '.join(map(repr, unknown)) or 'asked for'}: "
            f"expected some of {', '.join(spec.outputs)}"
        )
    if spec.max_batch and batch > spec.max_batch:
        raise ScratchnetError(
            f"batch {batch} is more than the server takes in one request ({spec.max_batch})"
        )
    item_bytes = math.prod(spec.image_dims) * np.dtype(_NUMPY[datatype]).itemsize
    if batch * item_bytes > _MAX_REQUEST_BYTES:
        raise ScratchnetError(
            f"batch {batch} takes {batch * item_bytes:,} bytes a request, more than perf sends "
            f"({_MAX_REQUEST_BYTES:,}): send a smaller batch"
        )
    if pixels is None:
        rng = np.random.default_rng(SEED)
        pixels = rng.integers(0, 256, size=(count * batch, *spec.image_dims), dtype=np.uint8)
    elif spec.image_dims in ((1, *pixels.shape[1:]), (math.prod(pixels.shape[1:]),)):
        # Images [N,H,W] for an input [N,1,H,W] or [N,H·W]: the same row-major pixels.
        pixels = pixels.reshape(len(pixels), *spec.image_dims)
    elif pixels.shape[1:] != spec.image_dims:
        raise ScratchnetError(
            f"the images are {list(pixels.shape[1:])}, model '{spec.name}' takes "
            f"{list(spec.image_dims)}"
        )
    index = np.arange(count * batch) % len(pixels)
    chunks = [pixels[index[start : start + batch]] for start in range(0, len(index), batch)]
    images = tuple(_as_datatype(chunk, datatype) for chunk in chunks)
    encode = _request_v1 if api == "v1" else _request_v2
    requests = tuple(encode(spec, chunk, datatype, outputs) for chunk in images)
    return Plan(api, requests, images, datatype, tuple(outputs), spec.name, spec.version)


def in_shared_memory(plan: Plan, spec: ModelSpec) -> tuple[Plan, list[Region]]:
    """The plan with each request's images in a shared-memory region of its own (Triton's
    system shared-memory extension; v2 only, the server on this host), and the regions, to
    register with `clients.shared_memory.registered`."""
    if plan.api != "v2":
        raise ScratchnetError("shared memory belongs to the Open Inference Protocol: use --api v2")
    regions, requests = [], []
    for index, images in enumerate(plan.images):
        region = Region(f"perf-{os.getpid()}-{index}", images.nbytes)
        region.write(images.tobytes())
        regions.append(region)
        requests.append(_request_v2(spec, images, plan.datatype, plan.outputs, region))
    return replace(plan, requests=tuple(requests)), regions


_MAX_REQUEST_BYTES = 1 << 30
"""The largest request perf builds (a gigabyte of images): protobuf's own limit is 2 GB."""


def _as_datatype(pixels: NDArray[np.uint8], datatype: str) -> NDArray[Any]:
    if datatype == "UINT8":
        return pixels
    if datatype == "FP32":
        # Pixels in [0, 1], as the models exported here (and MNIST models generally) take them.
        return (pixels / np.float32(255)).astype("<f4")
    raise ValueError(datatype)  # build_plan sends only SENDABLE ones


def _request_v1(
    spec: ModelSpec, images: NDArray[Any], datatype: str, outputs: Sequence[str]
) -> bytes:
    tensor = v1.Tensor(dtype=_V1_ENUMS[datatype], shape=images.shape, data=images.tobytes())
    request = v1.PredictRequest(
        images=tensor,
        return_scores="scores" in outputs,
        return_probabilities="probabilities" in outputs,
        model_name=spec.name,
        model_version=spec.version,
    )
    return request.SerializeToString()


def _request_v2(
    spec: ModelSpec,
    images: NDArray[Any],
    datatype: str,
    outputs: Sequence[str],
    region: Region | None = None,
) -> bytes:
    tensor = oip.ModelInferRequest.InferInputTensor(
        name=spec.input_name, datatype=datatype, shape=images.shape
    )
    if region is not None:
        tensor.parameters["shared_memory_region"].string_param = region.name
        tensor.parameters["shared_memory_byte_size"].int64_param = images.nbytes
    request = oip.ModelInferRequest(
        model_name=spec.name,
        model_version=spec.version,
        inputs=[tensor],
        outputs=[oip.ModelInferRequest.InferRequestedOutputTensor(name=name) for name in outputs],
        raw_input_contents=[] if region is not None else [images.tobytes()],
    )
    return request.SerializeToString()


def _decode_v1(reply: v1.PredictResponse) -> dict[str, NDArray[Any]]:
    arrays: dict[str, NDArray[Any]] = {"label": np.array(reply.labels, dtype=np.int64)}
    for name in ("scores", "probabilities"):
        values = getattr(reply, name)
        if len(values):
            arrays[name] = np.array(values, dtype=np.float32).reshape(len(reply.labels), -1)
    return arrays


def _decode_v2(reply: oip.ModelInferResponse) -> dict[str, NDArray[Any]]:
    arrays: dict[str, NDArray[Any]] = {}
    for index, tensor in enumerate(reply.outputs):
        dtype = _NUMPY.get(tensor.datatype)
        if dtype is None:
            raise ScratchnetError(f"output '{tensor.name}': perf cannot read {tensor.datatype}")
        if index < len(reply.raw_output_contents):
            values = np.frombuffer(reply.raw_output_contents[index], dtype=dtype)
        else:
            # Typed contents: the field that carries the datatype is the one that is set.
            contents = tensor.contents
            typed = [getattr(contents, f.name) for f, _ in contents.ListFields()]
            values = np.array(typed[0] if typed else [], dtype=dtype)
        arrays[tensor.name] = values.reshape(tuple(tensor.shape))
    return arrays
