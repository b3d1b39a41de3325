"""The Python client of the scratchnet.v1.Classifier gRPC API: numpy images in, labels out.

Images are sent as raw bytes in batches no larger than the server's limit; more than one batch
goes over one PredictStream call with a few batches in flight, or, to replicas (clients.targets),
as one Predict call per batch with a few in flight, spread round robin and retried on another
replica if one fails with UNAVAILABLE. Every call carries a deadline, and over TLS and with a
bearer token when given them (clients.credentials).
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Any, TypeVar

import grpc
import numpy as np
from google.protobuf.message import Message
from numpy.typing import ArrayLike, NDArray

from clients.credentials import Credentials, Pem
from clients.errors import from_rpc_error
from clients.targets import open_channel, parse_targets
from scratchnet import datatypes
from scratchnet.api.v1 import classifier_pb2, classifier_pb2_grpc
from scratchnet.contract import ARTIFACT_SHA256
from scratchnet.errors import (
    ClientError,
    DeadlineExceededError,
    InvalidArgumentError,
    NotFoundError,
    ServerUnavailableError,
)

__all__ = ["BatchPrediction", "Client", "ModelInfo", "Prediction"]

DEFAULT_TIMEOUT = 30.0
MAX_TIMEOUT = 86400.0
"""The longest timeout taken, a day: gRPC keeps deadlines as int64 nanoseconds since the epoch,
so a much longer one overflows and every call fails at once with DEADLINE_EXCEEDED."""
# Without a batch size from the caller, batches hold at most this many bytes of pixels (668 MNIST
# images as uint8): well under gRPC's default 4 MB message limit. Measured on MNIST, 256 KiB to
# 512 KiB batches scored fastest; 1 MiB and more were slower (docs/clients.md).
DEFAULT_BATCH_BYTES = 512 * 1024
# Batches in flight on a stream: the server works on one while the client sends or decodes the
# next. It also bounds the memory held by requests and makes per-batch latency meaningful.
STREAM_WINDOW = 2
# Unary calls in flight per listed replica (at least two replicas' worth when a resolver decides):
# each replica works on one batch while the next waits, as on a stream.
REPLICA_WINDOW = 2

# The pixel types v1 carries, from the datatype table: numpy dtype (little-endian) -> DataType.
_WIRE_DTYPES: dict[np.dtype[Any], int] = {
    row.numpy: row.v1 for row in datatypes.DATATYPES if row.v1 and row.numpy is not None
}
_DTYPE_NAMES = {wire: dtype.name for dtype, wire in _WIRE_DTYPES.items()}
# Bytes of a request or reply besides its pixels, labels, scores and probabilities (fields,
# lengths, names): generously rounded up.
_MESSAGE_OVERHEAD = 4096
# What one image costs in a reply: its label, a varint of at most 10 bytes, and a float per class
# in each of the scores and probabilities asked for.
_LABEL_BYTES = 10
_FLOAT_BYTES = 4
_Reply = TypeVar("_Reply")


@dataclass(frozen=True)
class Prediction:
    """Labels [N] of N images; scores and probabilities [N, C] when asked for, else None."""

    labels: NDArray[np.int64]
    scores: NDArray[np.float32] | None = None
    probabilities: NDArray[np.float32] | None = None


@dataclass(frozen=True)
class BatchPrediction:
    """One batch's prediction: images [start, start + len(labels)), answered in `latency` s."""

    start: int
    prediction: Prediction
    latency: float


@dataclass(frozen=True)
class ModelInfo:
    """What the server says about its model (GetModelInfo)."""

    name: str
    version: str
    input_dtypes: tuple[str, ...]
    image_shape: tuple[int, int]
    num_classes: int
    class_labels: tuple[str, ...]
    max_batch_size: int
    max_message_bytes: int
    outputs: tuple[str, ...]
    metadata: Mapping[str, str]


class Client:
    """A connection to a scratchnet server at `target` (HOST:PORT), or to replicas
    (HOST:PORT,HOST:PORT or dns:///NAME:PORT, see clients.targets); close it or use `with`."""

    def __init__(
        self,
        target: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        batch_size: int | None = None,
        options: Mapping[str, int | str] | None = None,
        tls_ca: Pem | None = None,
        tls_cert: Pem | None = None,
        tls_key: Pem | None = None,
        token: str | None = None,
        model_name: str = "",
        model_version: str = "",
    ) -> None:
        """`timeout`: seconds allowed for each call (one stream is one call); `batch_size`: images
        per request, capped by the server's limit; `options`: extra gRPC channel arguments;
        `model_name` and `model_version`: the model every call asks for ("": the server's
        default model, its newest version), NotFoundError if the server does not serve it.

        `tls_ca` (a PEM file's path or its bytes): call over TLS, trusting that CA (with only
        `tls_cert`, the system's CAs); `tls_cert` and `tls_key`: the client certificate and key
        a server with mutual TLS asks for; `token`: sent as `authorization: Bearer <token>`.
        """
        targets = parse_targets(target)
        self._credentials = Credentials.of(tls_ca, tls_cert, tls_key, token)
        if not (timeout > 0 and math.isfinite(timeout)):
            raise ClientError(f"timeout must be a positive number of seconds, got {timeout}")
        if timeout > MAX_TIMEOUT:
            raise ClientError(
                f"timeout must be at most {MAX_TIMEOUT:g} seconds (a day), got {timeout:g}"
            )
        if batch_size is not None and batch_size < 1:
            raise ClientError(f"batch size must be at least 1, got {batch_size}")
        self.target = target
        self.timeout = timeout
        self.batch_size = batch_size
        self.model_name = model_name
        self.model_version = model_version
        # Replies are as large as the server makes them: the server's --max-message-mb governs.
        settings = {"grpc.max_receive_message_length": -1, **(options or {})}
        self._targets = targets
        self._settings = list(settings.items())
        self._channel = open_channel(targets, self._credentials, self._settings)
        self._stub = classifier_pb2_grpc.ClassifierStub(self._channel)
        self._info: ModelInfo | None = None
        self._closed = False

    def model_info(self) -> ModelInfo:
        """The model's description (the one named, else the server's default), fetched once and
        then remembered. Over listed replicas, every one that answers must serve that model, the
        same one, and the tightest of their batch and message limits holds."""
        if self._info is None:
            request = classifier_pb2.GetModelInfoRequest(
                model_name=self.model_name, model_version=self.model_version
            )
            try:
                info = self._describe(self._stub, request)
            except NotFoundError:
                if len(self._targets.addresses) > 1:
                    # Round robin asked one replica, unnamed: name the first that lacks it.
                    self._described_by_each(request)
                raise
            if len(self._targets.addresses) > 1:
                info = self._agreed(info)
            self._info = info
        return self._info

    def _describe(
        self,
        stub: classifier_pb2_grpc.ClassifierStub,
        request: classifier_pb2.GetModelInfoRequest,
        note: str = "",
    ) -> ModelInfo:
        reply = self._call(stub.GetModelInfo, request, note)
        return ModelInfo(
            name=reply.model_name,
            version=reply.model_version,
            input_dtypes=tuple(_DTYPE_NAMES.get(d, str(d)) for d in reply.input_dtypes),
            image_shape=(int(reply.input_shape[-2]), int(reply.input_shape[-1])),
            num_classes=int(reply.num_classes),
            class_labels=tuple(reply.class_labels),
            max_batch_size=int(reply.max_batch_size),
            max_message_bytes=int(reply.max_message_bytes),
            outputs=tuple(reply.outputs),
            metadata=dict(reply.metadata),
        )

    def _agreed(self, info: ModelInfo) -> ModelInfo:
        """`info`, checked against each replica on its own: round robin would otherwise mix the
        answers of different models served under one name and version (every export is
        version 1), and size batches by the first replica's limits only."""
        request = classifier_pb2.GetModelInfoRequest(
            model_name=info.name, model_version=info.version
        )
        described = self._described_by_each(request)
        identities = {address: _identity(found) for address, found in described.items()}
        if len(set(identities.values())) > 1:
            shown = "; ".join(f"{address}: {_shown(key)}" for address, key in identities.items())
            raise ClientError(
                f"the replicas of {self.target} serve different models as '{info.name}' version "
                f"{info.version} ({shown}): expected the same model on every replica",
                failure=True,
            )

        def tightest(limits: list[int]) -> int:
            return min((limit for limit in limits if limit > 0), default=0)

        return replace(
            info,
            max_batch_size=tightest([found.max_batch_size for found in described.values()]),
            max_message_bytes=tightest([found.max_message_bytes for found in described.values()]),
        )

    def _described_by_each(
        self, request: classifier_pb2.GetModelInfoRequest
    ) -> dict[str, ModelInfo]:
        """The model of `request` as each listed replica that answers describes it; a replica
        without it fails the call (NotFoundError), named."""
        described = {}
        for address in self._targets.addresses:
            with open_channel(parse_targets(address), self._credentials, self._settings) as channel:
                try:
                    described[address] = self._describe(
                        classifier_pb2_grpc.ClassifierStub(channel), request, f" (at {address})"
                    )
                except (ServerUnavailableError, DeadlineExceededError):
                    # Down, or connected but not answering (stopped, a black hole): the calls go
                    # to the replicas that answer, as gRPC's round robin picks only those.
                    continue
        return described

    def predict(
        self, images: ArrayLike, *, scores: bool = False, probabilities: bool = False
    ) -> Prediction:
        """Classify images [N, H, W] or one image [H, W]: uint8 pixels 0-255 or floats in [0, 1]."""
        batches = self.predict_batches(images, scores=scores, probabilities=probabilities)
        parts = [batch.prediction for batch in batches]
        return Prediction(
            labels=np.concatenate([part.labels for part in parts]),
            scores=_concatenate([part.scores for part in parts]),
            probabilities=_concatenate([part.probabilities for part in parts]),
        )

    def predict_batches(
        self, images: ArrayLike, *, scores: bool = False, probabilities: bool = False
    ) -> Iterator[BatchPrediction]:
        """Like predict, but yield each batch's prediction, in order, as soon as it arrives."""
        array = _as_images(images)
        size = self._batch_size(array[0].nbytes, scores + probabilities)
        info = self.model_info()
        # Replicas are asked for the model and version the first one described, so that a
        # replica serving another version fails the call (NOT_FOUND) instead of answering.
        name, version = (
            (info.name, info.version)
            if self._targets.balanced
            else (self.model_name, self.model_version)
        )
        requests = (
            classifier_pb2.PredictRequest(
                images=_tensor(array[start : start + size]),
                return_scores=scores,
                return_probabilities=probabilities,
                model_name=name,
                model_version=version,
            )
            for start in range(0, len(array), size)
        )
        if len(array) <= size:
            return self._unary(next(requests))
        if self._targets.balanced:
            # A stream is one call, pinned to one replica: losing that replica would lose every
            # batch still in it. One call per batch lets each batch be retried on its own.
            return self._calls(requests)
        return self._stream(requests, len(array))

    def close(self) -> None:
        """Close the channel; calls made afterwards raise ClientError."""
        self._closed = True
        self._channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _batch_size(self, image_bytes: int, matrices: int) -> int:
        """Images per request: the caller's choice or DEFAULT_BATCH_BYTES' worth, within the
        server's batch limit and with requests and replies under its message limit."""
        info = self.model_info()
        size = self.batch_size or max(1, DEFAULT_BATCH_BYTES // image_bytes)
        if info.max_batch_size > 0:
            size = min(size, info.max_batch_size)
        if info.max_message_bytes > 0:
            row = _LABEL_BYTES + matrices * _FLOAT_BYTES * info.num_classes
            largest = max(image_bytes, row)
            size = min(size, max(1, (info.max_message_bytes - _MESSAGE_OVERHEAD) // largest))
        return size

    def _check_open(self) -> None:
        if self._closed:
            raise ClientError(f"the client for {self.target} is closed")

    def _call(self, method: Callable[..., _Reply], request: Message, note: str = "") -> _Reply:
        self._check_open()
        try:
            return method(request, timeout=self.timeout, metadata=self._credentials.metadata)
        except grpc.RpcError as error:
            raise self._error(error, note) from None

    def _error(self, error: grpc.RpcError, note: str = "") -> ClientError:
        if isinstance(error, grpc.Call) and error.code() == grpc.StatusCode.UNIMPLEMENTED:
            # A gRPC server, but not scratchnet's: "Method not found!" alone says too little.
            return ClientError(
                f"the server at {self.target} does not implement scratchnet.v1.Classifier "
                f"({error.details()}): expected a scratchnet server (python -m server)",
                error.code(),
            )
        return from_rpc_error(error, self.target, self.timeout, note, self._credentials)

    def _unary(self, request: classifier_pb2.PredictRequest) -> Iterator[BatchPrediction]:
        started = time.perf_counter()
        reply = self._call(self._stub.Predict, request)
        prediction = self._prediction(reply, request.images.shape[0], 0)
        yield BatchPrediction(0, prediction, time.perf_counter() - started)

    def _calls(
        self, requests: Iterator[classifier_pb2.PredictRequest]
    ) -> Iterator[BatchPrediction]:
        """One Predict call per batch, a window of them in flight, replies yielded in order."""
        self._check_open()
        window = REPLICA_WINDOW * max(2, self._targets.replicas or 2)
        pending: deque[tuple[float, int, grpc.Future[classifier_pb2.PredictResponse]]] = deque()
        start = 0
        try:
            while True:
                while len(pending) < window and (request := next(requests, None)) is not None:
                    sent = time.perf_counter()
                    future = self._stub.Predict.future(
                        request, timeout=self.timeout, metadata=self._credentials.metadata
                    )
                    pending.append((sent, request.images.shape[0], future))
                if not pending:
                    return
                batch = self._answer(start, *pending.popleft())
                start += len(batch.prediction.labels)
                yield batch
        finally:
            for _, _, call in pending:
                call.cancel()

    def _answer(
        self,
        start: int,
        sent: float,
        images: int,
        call: grpc.Future[classifier_pb2.PredictResponse],
    ) -> BatchPrediction:
        try:
            reply = call.result()
        except grpc.RpcError as error:
            note = f" (in the request starting at image {start})" if start else ""
            raise self._error(error, note) from None
        prediction = self._prediction(reply, images, start)
        return BatchPrediction(start, prediction, time.perf_counter() - sent)

    def _prediction(
        self, reply: classifier_pb2.PredictResponse, images: int, start: int
    ) -> Prediction:
        """The reply to a request of `images` images (from image `start`); ClientError unless it
        answers each of them: a short reply would shift every later image's label."""
        labels = np.fromiter(reply.labels, dtype=np.int64, count=len(reply.labels))
        wrong = [f"{len(labels)} labels"] if len(labels) != images else []
        for name, values in (("scores", reply.scores), ("probabilities", reply.probabilities)):
            if len(values) % images:
                wrong.append(f"{len(values)} {name}")
        if wrong:
            raise ClientError(
                f"the server at {self.target} answered the request of {images} images starting "
                f"at image {start} with {' and '.join(wrong)}, expected one label (and one row "
                "of scores or probabilities) per image",
                failure=True,
            )
        return Prediction(
            labels=labels,
            scores=_matrix(reply.scores, images),
            probabilities=_matrix(reply.probabilities, images),
        )

    def _stream(
        self, requests: Iterator[classifier_pb2.PredictRequest], total: int
    ) -> Iterator[BatchPrediction]:
        self._check_open()
        slots = threading.Semaphore(STREAM_WINDOW)
        sent: deque[tuple[float, int]] = deque()
        done = threading.Event()

        def windowed() -> Iterator[classifier_pb2.PredictRequest]:
            # grpc pulls requests on its own thread; this makes it wait for a free slot.
            for request in requests:
                slots.acquire()
                if done.is_set():
                    return
                sent.append((time.perf_counter(), request.images.shape[0]))
                yield request

        call = self._stub.PredictStream(
            windowed(), timeout=self.timeout, metadata=self._credentials.metadata
        )
        start = 0
        try:
            for reply in call:
                started, images = sent.popleft()
                latency = time.perf_counter() - started
                slots.release()
                prediction = self._prediction(reply, images, start)
                yield BatchPrediction(start, prediction, latency)
                start += len(prediction.labels)
        except grpc.RpcError as error:
            # The server counts images from the start of the failing request, not of the input.
            note = f" (in the request starting at image {start})" if start else ""
            raise self._error(error, note) from None
        finally:
            done.set()
            slots.release(STREAM_WINDOW)
            call.cancel()
        if start != total:
            raise ClientError(
                f"the server at {self.target} ended the stream after {start} of {total} images, "
                "expected a reply to every request",
                failure=True,
            )


def _as_images(images: ArrayLike) -> NDArray[Any]:
    try:
        array = np.asarray(images)
    except ValueError as error:  # ragged: images of different sizes
        raise InvalidArgumentError(
            f"images: expected one array [N, H, W] of images of one size ({error})"
        ) from None
    if np.issubdtype(array.dtype, np.floating):
        array = array.astype("<f4", copy=False)
    if array.dtype not in _WIRE_DTYPES:
        raise InvalidArgumentError(
            f"images: expected uint8 pixels (0-255) or floats in [0, 1], got {array.dtype}"
        )
    if array.ndim == 2:
        array = array[np.newaxis]
    if array.ndim != 3 or 0 in array.shape:
        raise InvalidArgumentError(
            f"images: expected shape [N, H, W] or [H, W] with N ≥ 1, got {list(np.shape(images))}"
        )
    return array


def _tensor(batch: NDArray[Any]) -> classifier_pb2.Tensor:
    dtype = _WIRE_DTYPES[batch.dtype]
    name = classifier_pb2.DataType.Name(dtype)
    return classifier_pb2.Tensor(dtype=name, shape=batch.shape, data=batch.tobytes())


def _matrix(values: Sequence[float], rows: int) -> NDArray[np.float32] | None:
    if not len(values):
        return None
    return np.fromiter(values, dtype=np.float32, count=len(values)).reshape(rows, -1)


_Identity = tuple[str, tuple[int, int], tuple[str, ...]]


def _identity(info: ModelInfo) -> _Identity:
    """What tells two served models apart: the artifact they were exported from when they say
    (its SHA-256), their image size and class labels."""
    return (info.metadata.get(ARTIFACT_SHA256, ""), info.image_shape, info.class_labels)


def _shown(identity: _Identity) -> str:
    sha, (height, width), labels = identity
    made = f"artifact {sha[:12]}, " if sha else ""
    return f"{made}{height}x{width} images, {len(labels)} classes"


def _concatenate(parts: list[NDArray[np.float32] | None]) -> NDArray[np.float32] | None:
    present = [part for part in parts if part is not None]
    return np.concatenate(present) if present else None
