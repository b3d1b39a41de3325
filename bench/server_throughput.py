"""Images per second through the gRPC server over loopback, by batch size, next to the same
onnxruntime model called in process (the ceiling), in one run.

    .venv/bin/python bench/server_throughput.py [MODEL] [--data PATH] [--rounds N] [--threads N]

MODEL (default artifacts/model.onnx, from `make demo`) is served by a `python -m server`
subprocess on a free 127.0.0.1 port. Contenders, labels only, uint8 test images unless noted:
in-process onnxruntime (the server's session); unary Predict; PredictStream (one stream per
round, one request per batch); unary Predict with float32 pixels (4x the bytes). Each figure is
the median over rounds of images scored / seconds; each contender scores at least 2,000 images a
round (batch 1: 2,000 calls), taking turns; a ratio is the median of the per-round ratios.
"""

from __future__ import annotations

import math
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
from numpy.typing import NDArray

from scratchnet import datatypes
from scratchnet.api.v1 import classifier_pb2 as pb
from scratchnet.api.v1 import classifier_pb2_grpc
from scratchnet.cli import ArgumentParser, integer, run_cli
from scratchnet.contract import DEFAULT_MAX_BATCH
from scratchnet.datasets import load_dataset
from scratchnet.errors import ScratchnetError
from scratchnet.launcher import ServerProcess
from server.model import Model, load_model

BATCHES = (1, 16, 256, 1024)
MIN_IMAGES_PER_ROUND = 2000
# A round's work: score `calls` batches of `batch` images taken from `images`.
Runner = Callable[[NDArray[Any], int, int], None]


def _batches(images: NDArray[Any], batch: int, calls: int) -> Iterator[NDArray[Any]]:
    for index in range(calls):
        start = (index * batch) % (len(images) - batch + 1)
        yield images[start : start + batch]


def _request(images: NDArray[Any]) -> pb.PredictRequest:
    dtype = datatypes.by_numpy(images.dtype).v1
    tensor = pb.Tensor(dtype=pb.DataType.Name(dtype), shape=images.shape, data=images.tobytes())
    return pb.PredictRequest(images=tensor)


def in_process(model: Model) -> Runner:
    """The model's onnxruntime session with no gRPC in between."""

    classifier = model.classifier
    assert classifier is not None

    def run(images: NDArray[Any], batch: int, calls: int) -> None:
        for chunk in _batches(images, batch, calls):
            feed = classifier.feed(chunk.astype(classifier.input.datatype.numpy))
            model.session.run(classifier.onnx_outputs, {classifier.input.name: feed})

    return run


def unary(stub: classifier_pb2_grpc.ClassifierStub) -> Runner:
    """One Predict call per batch."""

    def run(images: NDArray[Any], batch: int, calls: int) -> None:
        for chunk in _batches(images, batch, calls):
            stub.Predict(_request(chunk), timeout=60)

    return run


def stream(stub: classifier_pb2_grpc.ClassifierStub) -> Runner:
    """One PredictStream carrying every batch of the round."""

    def run(images: NDArray[Any], batch: int, calls: int) -> None:
        requests = (_request(chunk) for chunk in _batches(images, batch, calls))
        for _ in stub.PredictStream(requests, timeout=600):
            pass

    return run


def measure(
    contenders: dict[str, tuple[Runner, NDArray[Any]]], batch: int, rounds: int
) -> dict[str, list[float]]:
    """images/s of each contender in each round."""
    calls = math.ceil(MIN_IMAGES_PER_ROUND / batch)
    for run, images in contenders.values():
        run(images, batch, 1)  # warm-up: first-call allocations are not what we measure
    rates: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(rounds):
        # Contenders take turns within a round, so that load from other processes hits all alike.
        for name, (run, images) in contenders.items():
            began = time.perf_counter()
            run(images, batch, calls)
            rates[name].append(calls * batch / (time.perf_counter() - began))
    return rates


def main() -> int:
    """Measure and print the table."""
    parser = ArgumentParser(prog="bench/server_throughput.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("model", nargs="?", type=Path, default=Path("artifacts/model.onnx"))
    parser.add_argument("--data", help="data set (default: the bundled MNIST)")
    parser.add_argument(
        "--rounds", type=integer(1), default=5, help="rounds per figure (default 5)"
    )
    parser.add_argument("--threads", type=integer(0), default=0, help="the server's --threads")
    args = parser.parse_args()
    model = load_model(args.model, "bench", threads=args.threads, max_batch=DEFAULT_MAX_BATCH)
    classifier = model.classifier
    assert classifier is not None  # load_model refuses models that are not classifiers
    pixels = load_dataset(args.data).test_images
    if pixels.dtype != np.uint8 or pixels.shape[1:] != (classifier.height, classifier.width):
        raise ScratchnetError(
            f"data set images are {pixels.dtype} {list(pixels.shape[1:])}: expected uint8 "
            f"[{classifier.height}, {classifier.width}] for {args.model}"
        )
    floats = (pixels * classifier.input_scale).astype(np.float32)
    with (
        tempfile.TemporaryDirectory() as logs,
        ServerProcess.start(
            args.model,
            "--threads",
            str(args.threads),
            "--log-level",
            "warning",
            stdout=Path(logs) / "server.log",
        ) as server,
    ):
        target = server.target
        with grpc.insecure_channel(target) as channel:
            stub = classifier_pb2_grpc.ClassifierStub(channel)
            contenders = {
                "in process": (in_process(model), pixels),
                "Predict": (unary(stub), pixels),
                "PredictStream": (stream(stub), pixels),
                "Predict float32": (unary(stub), floats),
            }
            print(
                f"{args.model} over {target}; {len(pixels)} test images {list(pixels.shape[1:])}"
                f", labels only; images/s, median of {args.rounds} "
                f"round{'' if args.rounds == 1 else 's'}\n"
            )
            columns = [*contenders, "Predict/in process", "PredictStream/Predict"]
            print("| batch | " + " | ".join(columns) + " |")
            print("|" + "---:|" * (len(columns) + 1))
            for batch in BATCHES:
                rates = measure(contenders, batch, args.rounds)
                cells = [f"{statistics.median(rates[name]):,.0f}" for name in contenders]
                for fast, slow in (("Predict", "in process"), ("PredictStream", "Predict")):
                    pairs = zip(rates[fast], rates[slow], strict=True)
                    cells.append(f"{statistics.median(a / b for a, b in pairs):.2f}x")
                print(f"| {batch} | " + " | ".join(cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    run_cli("bench/server_throughput.py", main)
