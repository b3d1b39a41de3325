"""Helpers for tests of the server's workers and queue (--workers, --max-queue): keep a worker
busy for as long as a test needs, and make a call that must get in despite grpc's late accounting.

grpc counts a call against `maximum_concurrent_rpcs` from the moment it admits it until the
handler's thread has finished, which happens a moment *after* the client has its answer — longer
on a busy machine, where that thread may wait for a CPU. A call made right after another one
finished can therefore still find the limit reached. Tests of the limit must not depend on that
moment: they retry the calls that must get in (`admitted`), and assert RESOURCE_EXHAUSTED only
while a call they control is certainly running (`busy_worker`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import grpc
from numpy.typing import NDArray

from scratchnet.api.v1 import classifier_pb2 as pb
from scratchnet.api.v1 import classifier_pb2_grpc

ADMISSION_SECONDS = 30.0
RESOURCE_EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED
_T = TypeVar("_T")


def uint8_request(images: NDArray[Any]) -> pb.PredictRequest:
    """A v1 PredictRequest carrying uint8 `images` [N, H, W] raw."""
    tensor = pb.Tensor(dtype=pb.DATA_TYPE_UINT8, shape=images.shape, data=images.tobytes())
    return pb.PredictRequest(images=tensor)


def admitted(call: Callable[[], _T], seconds: float = ADMISSION_SECONDS) -> _T:
    """`call()`, retried while the server answers RESOURCE_EXHAUSTED because it still counts
    calls that have already ended (see the module docstring); any other error is raised."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return call()
        except grpc.RpcError as error:
            full = isinstance(error, grpc.Call) and error.code() == RESOURCE_EXHAUSTED
            if not full or time.monotonic() > deadline:
                raise
        time.sleep(0.01)


@contextmanager
def busy_worker(target: str, image: NDArray[Any]) -> Iterator[None]:
    """Occupy one of the server's workers for the duration of the block.

    A PredictStream sends one uint8 `image` [1, H, W], and once answered waits to send the next:
    from then on its handler holds a worker until the block ends and the stream closes.
    """
    release = threading.Event()

    def requests() -> Iterator[pb.PredictRequest]:
        yield uint8_request(image)
        release.wait(ADMISSION_SECONDS * 4)

    def open_stream() -> Any:
        stream = stub.PredictStream(requests(), timeout=ADMISSION_SECONDS * 4)
        next(stream)  # answered: the handler now runs on a worker, waiting for a request
        return stream

    with grpc.insecure_channel(target) as channel:
        stub = classifier_pb2_grpc.ClassifierStub(channel)
        stream = admitted(open_stream)
        try:
            yield
        finally:
            release.set()
        assert list(stream) == [], "the stream ends cleanly once it stops sending"
