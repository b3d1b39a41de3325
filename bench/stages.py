"""Where a ModelInfer call's time goes inside the server, stage by stage, in process (no network):
parse, the data plane (checks, scheduling, onnxruntime, statistics), onnxruntime alone, encode.

    .venv/bin/python bench/stages.py [--model artifacts/model.onnx] [--batches 1,1000]

Each stage is timed over many calls; the median is printed, in µs per call, next to protobuf's
own parse for comparison. For figures that the machine's load does not move, run it under
valgrind and count instructions instead (docs/performance.md shows how). Writes nothing.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from scratchnet.api.inference import open_inference_grpc_pb2 as pb
from scratchnet.cli import ArgumentParser, integer, integers, positive_number, run_cli
from scratchnet.contract import LABEL, SCORES
from scratchnet.errors import ScratchnetError
from server.dataplane import Call, DataPlane
from server.memory import tune_allocator
from server.model_control import LoadOptions, ModelControl, SingleFile
from server.repository import ModelRepository
from server.shared_memory import SharedMemory
from server.transports import oip_codec

PROGRAM = "bench/stages.py"
OUTPUTS = (LABEL, SCORES)
COLUMNS = ("parse", "protobuf", "plane", "ort whole", "encode")
"""parse: ours (oip_codec, zero-copy); protobuf: its FromString alone, for comparison; plane:
DataPlane.infer (checks, scheduling in slices, onnxruntime, statistics); ort whole: onnxruntime
on the whole batch at once, no slicing; encode: the reply, serialised."""


def _median_us(work: Callable[[], object], seconds: float) -> float:
    """The median time of `work()` over about `seconds`, in µs."""
    times: list[float] = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(times) < 5:
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1e6


def _stages(
    plane: DataPlane, loop: asyncio.AbstractEventLoop, batch: int, seconds: float
) -> list[float]:
    """The median µs per call of each of COLUMNS, for requests of `batch` random images."""
    model = plane.model("m")
    spec = model.inputs[0]
    dims = tuple(dim for dim in spec.dims if dim > 0)
    # Pixels in the model's own datatype and range: 0-255 for UINT8, the [0, 1) of
    # scratchnet's float models (their input_scale is 1/255).
    pixels = np.random.default_rng(0).random((batch, *dims))
    images = (
        pixels.astype(spec.datatype.numpy)
        if spec.datatype.is_float
        else (pixels * 256).astype(np.uint8)
    )
    message = pb.ModelInferRequest(model_name="m")
    message.inputs.add(name=spec.name, datatype=str(spec.datatype), shape=images.shape)
    for name in OUTPUTS:
        message.outputs.add(name=name)
    message.raw_input_contents.append(images.tobytes())
    data = message.SerializeToString()
    shared = SharedMemory()
    request = oip_codec.infer_request(oip_codec.receive(data), shared)
    answer = loop.run_until_complete(plane.infer(request, Call()))
    stages: list[Callable[[], object]] = [
        lambda: oip_codec.infer_request(oip_codec.receive(data), shared),
        lambda: pb.ModelInferRequest.FromString(data),
        lambda: loop.run_until_complete(plane.infer(request, Call())),
        lambda: model.session.run(OUTPUTS, {spec.name: images}),
        lambda: oip_codec.infer_response(answer, request.outputs).SerializeToString(),
    ]
    return [_median_us(stage, seconds) for stage in stages]


def main() -> int:
    """Print each stage's median time per call, for each batch size."""
    parser = ArgumentParser(prog=PROGRAM, description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=Path("artifacts/model.onnx"))
    parser.add_argument(
        "--batches", type=integers(1), default=[1, 1000], help="comma-separated (default 1,1000)"
    )
    parser.add_argument("--threads", type=integer(1), default=1, help="onnxruntime threads (1)")
    parser.add_argument("--seconds", type=positive_number, default=2.0, help="per stage (2)")
    args = parser.parse_args()
    if not args.model.is_file():
        raise ScratchnetError(f"{args.model} not found: run `python -m export` (or make demo)")
    tune_allocator()  # as the server does at start
    plane = DataPlane(ModelRepository())
    source = SingleFile(args.model, "m")
    ModelControl(plane.repository, source, LoadOptions(args.threads, 1024)).start(strict=True)
    model = plane.model("m")
    loop = asyncio.new_event_loop()
    print(f"{args.model}, onnxruntime threads {args.threads}, slices of {model.slice_items or '-'}")
    print(f"{'batch':>6} " + " ".join(f"{name:>10}" for name in COLUMNS))
    for batch in args.batches:
        figures = _stages(plane, loop, batch, args.seconds)
        print(f"{batch:>6} " + " ".join(f"{figure:>10.1f}" for figure in figures))
    print("µs per call, medians (the columns: bench/stages.py's COLUMNS)")
    plane.close()
    return 0


if __name__ == "__main__":
    run_cli(PROGRAM, main)
