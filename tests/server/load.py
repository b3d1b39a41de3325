"""Many concurrent clients on one server, for the load and drain tests: each client has a channel
(a connection) of its own and makes a fixed, mixed series of calls — both APIs, unary calls and
streams, uint8 and float32 pixels, batches of 1, 16 and 256 MNIST test images — and every answer
is recorded with when it was sent, so that a test can check each label against the numpy
forward pass and sort calls by what happened to them.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import numpy as np
from numpy.typing import NDArray

from scratchnet.api.inference import open_inference_grpc_pb2 as oip
from scratchnet.api.inference.open_inference_grpc_pb2_grpc import GRPCInferenceServiceStub
from scratchnet.api.v1 import classifier_pb2 as v1
from scratchnet.api.v1.classifier_pb2_grpc import ClassifierStub
from scratchnet.artifact import Artifact
from scratchnet.forward import predict

APIS = ("v1", "v2")
DTYPES = ("uint8", "float32")
_V1_DTYPES = {"uint8": v1.DATA_TYPE_UINT8, "float32": v1.DATA_TYPE_FLOAT32}
_V2_DTYPES = {"uint8": "UINT8", "float32": "FP32"}


@dataclass(frozen=True)
class Call:
    """One call of a client: `len(starts)` requests of `batch` images each (a stream if
    `stream`, else one unary call), the first image of request i at `starts[i]`."""

    api: str
    dtype: str
    batch: int
    stream: bool
    starts: tuple[int, ...]


@dataclass
class Outcome:
    """What became of one call."""

    call: Call
    sent: float
    """time.monotonic() when the call started."""
    ended: float = 0.0
    code: grpc.StatusCode = grpc.StatusCode.OK
    details: str = ""
    answers: int = 0
    """Requests answered (for a stream, how many replies came before the end)."""
    wrong: list[str] = field(default_factory=list)
    """Answers whose labels differ from the reference, described."""


@dataclass(frozen=True)
class Images:
    """The MNIST test images as each pixel type travels, and the forward pass's labels for each."""

    pixels: dict[str, NDArray[Any]]
    labels: dict[str, NDArray[np.int64]]

    @classmethod
    def of(cls, images: NDArray[np.uint8], artifact: Artifact) -> Images:
        pixels = {"uint8": images, "float32": (images / 255.0).astype(np.float32)}
        labels = {
            dtype: predict(artifact.weights, artifact.biases, array)
            for dtype, array in pixels.items()
        }
        return cls(pixels, labels)

    def __len__(self) -> int:
        return len(self.pixels["uint8"])


def plan(client: int, requests: int, images: int) -> list[Call]:
    """Client `client`'s `requests` requests in calls: first one unary call of 256 images for each
    API and pixel type (the largest messages, so that the connection's buffers have grown before
    anything is measured), then, shuffled, two unary calls of 16 images for each, a tenth of the
    requests as unary calls of one image, and the rest as one image per request on four streams
    (one per API and pixel type)."""
    rng = random.Random(client)
    kinds = [(api, dtype) for api in APIS for dtype in DTYPES]
    calls: list[Call] = []

    def add(count: int, batch: int, stream_of: int = 0, kind: int = 0) -> None:
        for index in range(count):
            api, dtype = kinds[(client + kind + index) % len(kinds)]
            starts = tuple(rng.randrange(images - batch) for _ in range(stream_of or 1))
            calls.append(Call(api, dtype, batch, stream_of > 0, starts))

    add(len(kinds), 256)
    first = len(calls)
    add(2 * len(kinds), 16)
    add(requests // 10, 1)
    streamed = requests - requests_in(calls)
    assert streamed >= len(kinds), f"{requests} requests are too few for every kind of call"
    for index in range(len(kinds)):
        add(1, 1, streamed // len(kinds) + (index < streamed % len(kinds)), kind=index)
    rest = calls[first:]
    rng.shuffle(rest)
    return calls[:first] + rest


def requests_in(calls: Sequence[Call]) -> int:
    """How many requests `calls` make."""
    return sum(len(call.starts) for call in calls)


def _v1_request(images: Images, call: Call, start: int) -> v1.PredictRequest:
    batch = images.pixels[call.dtype][start : start + call.batch]
    tensor = v1.Tensor(dtype=_V1_DTYPES[call.dtype], shape=batch.shape, data=batch.tobytes())
    return v1.PredictRequest(images=tensor, request_id=str(start))


def _v2_request(images: Images, call: Call, start: int) -> oip.ModelInferRequest:
    batch = images.pixels[call.dtype][start : start + call.batch]
    request = oip.ModelInferRequest(model_name="scratchnet", id=str(start))
    request.inputs.add(name="images", datatype=_V2_DTYPES[call.dtype], shape=batch.shape)
    request.outputs.add(name="label")
    request.raw_input_contents.append(batch.tobytes())
    return request


def _labels_v1(reply: v1.PredictResponse) -> tuple[str, NDArray[np.int64]]:
    return reply.request_id, np.array(reply.labels, dtype=np.int64)


def _labels_v2(reply: oip.ModelInferResponse) -> tuple[str, NDArray[np.int64]]:
    assert [output.name for output in reply.outputs] == ["label"]
    return reply.id, np.frombuffer(reply.raw_output_contents[0], dtype=np.int64)


class Client:
    """One client: a channel of its own and its series of calls."""

    def __init__(self, target: str, images: Images, on_answer: Callable[[], None]) -> None:
        # A connection of its own: grpc would otherwise share one between channels.
        options = [("grpc.max_receive_message_length", -1), ("grpc.use_local_subchannel_pool", 1)]
        self.channel = grpc.aio.insecure_channel(target, options=options)
        self.v1 = ClassifierStub(self.channel)
        self.v2 = GRPCInferenceServiceStub(self.channel)
        self.images = images
        self.on_answer = on_answer

    async def run(
        self, calls: Sequence[Call], stop_when_refused: bool = False, timeout: float = 120.0
    ) -> list[Outcome]:
        """Make `calls` one after another; with `stop_when_refused`, stop at the first call
        that fails (a draining server refuses new calls)."""
        outcomes = []
        for call in calls:
            outcome = Outcome(call, time.monotonic())
            try:
                if call.stream:
                    await self._stream(call, outcome, timeout)
                else:
                    await self._unary(call, outcome, timeout)
            except grpc.aio.AioRpcError as error:
                outcome.code, outcome.details = error.code(), error.details() or ""
            outcome.ended = time.monotonic()
            outcomes.append(outcome)
            if stop_when_refused and outcome.code != grpc.StatusCode.OK:
                break
        return outcomes

    async def close(self) -> None:
        await self.channel.close()

    def _check(self, outcome: Outcome, request_id: str, labels: NDArray[np.int64]) -> None:
        call = outcome.call
        start = int(request_id)
        expected = self.images.labels[call.dtype][start : start + call.batch]
        if not np.array_equal(labels, expected):
            outcome.wrong.append(f"{call} at {start}: {labels.tolist()} != {expected.tolist()}")
        outcome.answers += 1
        self.on_answer()

    async def _unary(self, call: Call, outcome: Outcome, timeout: float) -> None:
        [start] = call.starts
        if call.api == "v1":
            v1_reply = await self.v1.Predict(_v1_request(self.images, call, start), timeout=timeout)
            self._check(outcome, *_labels_v1(v1_reply))
        else:
            v2_reply = await self.v2.ModelInfer(
                _v2_request(self.images, call, start), timeout=timeout
            )
            self._check(outcome, *_labels_v2(v2_reply))

    async def _stream(self, call: Call, outcome: Outcome, timeout: float) -> None:
        # One request at a time, each written once the previous one is answered: grpc.aio
        # reports a write made after the server ended the stream as INTERNAL, in place of the
        # server's status (grpc/grpc#36066), and a refused stream must read as refused.
        if call.api == "v1":
            stream = self.v1.PredictStream(timeout=timeout)
        else:
            stream = self.v2.ModelStreamInfer(timeout=timeout)
        for start in call.starts:
            if call.api == "v1":
                await stream.write(_v1_request(self.images, call, start))
            else:
                await stream.write(_v2_request(self.images, call, start))
            reply = await stream.read()
            if reply is grpc.aio.EOF:
                break
            if call.api == "v1":
                self._check(outcome, *_labels_v1(reply))
            elif reply.error_message:  # an error in one reply: the stream goes on
                outcome.code = grpc.StatusCode.UNKNOWN
                outcome.details = f"in a stream reply: {reply.error_message}"
            else:
                self._check(outcome, *_labels_v2(reply.infer_response))
        await stream.done_writing()
        code = await stream.code()
        if code != grpc.StatusCode.OK:
            outcome.code, outcome.details = code, await stream.details()
        elif outcome.answers != len(call.starts) and outcome.code == grpc.StatusCode.OK:
            outcome.code = grpc.StatusCode.DATA_LOSS
            outcome.details = f"{outcome.answers} answers to {len(call.starts)} requests"


def rss_bytes(pid: int) -> int:
    """The resident set of process `pid` (VmRSS), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for process {pid}")


async def run_clients(
    target: str,
    images: Images,
    plans: Sequence[Sequence[Call]],
    on_answer: Callable[[], None],
    stop_when_refused: bool = False,
) -> list[Outcome]:
    """Run one client per plan at once; every call's outcome."""
    clients = [Client(target, images, on_answer) for _ in plans]
    try:
        results = await asyncio.gather(
            *(
                client.run(calls, stop_when_refused)
                for client, calls in zip(clients, plans, strict=True)
            )
        )
    finally:
        await asyncio.gather(*(client.close() for client in clients))
    return [outcome for outcomes in results for outcome in outcomes]
