"""Images per second of model.onnx in onnxruntime (in process) next to scratchnet.forward's numpy
forward pass, at batch sizes 1, 64, 1000 and 10000, for float32 and uint8 input, in one run.

    .venv/bin/python bench/export_speed.py [ARTIFACT] [--data PATH] [--rounds N]

Each figure is the median over rounds of (images scored / seconds); in a round, each contender
scores batches for about TURN_SECONDS, taking turns; a ratio is the median of the per-round
ratios. Both sides compute all three outputs: scores, labels and probabilities. onnxruntime uses
its default thread pool (one thread per core) with spin-waiting off (see onnxruntime_forward).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray

from export import ExportOptions, build_model, model_bytes
from export.model import artifact_sha256
from export.parity import run_numpy
from scratchnet import forward as numpy_model
from scratchnet.artifact import Artifact, load_artifact
from scratchnet.cli import ArgumentParser, integer, run_cli
from scratchnet.contract import DEFAULT_ARTIFACT, INPUT, OUTPUTS
from scratchnet.datasets import load_dataset
from scratchnet.errors import ScratchnetError

BATCHES = (1, 64, 1000, 10_000)
DTYPES = ("float32", "uint8")
# Long enough per turn that scheduler noise and the previous contender's idle threads fade out.
TURN_SECONDS = 0.2
Runner = Callable[[NDArray[Any]], object]


def measure(
    contenders: dict[str, tuple[Runner, NDArray[Any]]], batch: int, rounds: int
) -> dict[str, list[float]]:
    """images/s of each contender in each round, scoring its images in batches of `batch`."""
    calls: dict[str, int] = {}
    for name, (run, images) in contenders.items():
        run(images[:batch])  # warm-up: first-call allocations are not what we measure
        began = time.perf_counter()
        run(images[:batch])
        calls[name] = max(1, round(TURN_SECONDS / (time.perf_counter() - began)))
    rates: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(rounds):
        # Contenders take turns within a round, so that load from other processes hits all alike.
        for name, (run, images) in contenders.items():
            starts = [(i * batch) % (len(images) - batch + 1) for i in range(calls[name])]
            began = time.perf_counter()
            for start in starts:
                run(images[start : start + batch])
            rates[name].append(len(starts) * batch / (time.perf_counter() - began))
    return rates


def onnxruntime_forward(artifact: Artifact, sha256: str, dtype: str) -> Runner:
    """An in-process onnxruntime session on the model of `artifact` exported with `dtype` input."""
    model = build_model(artifact, sha256, ExportOptions(input_dtype=dtype))
    options = ort.SessionOptions()
    # With spin-waiting on, onnxruntime's idle workers keep both cores busy through numpy's turn:
    # measured here, numpy then ran 4-25x below its speed alone, and the ratios meant nothing.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(model_bytes(model), options, providers=["CPUExecutionProvider"])
    return lambda images: session.run(list(OUTPUTS), {INPUT: images})


def main() -> int:
    """Measure and print the table."""
    parser = ArgumentParser(prog="bench/export_speed.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("artifact", nargs="?", type=Path, default=DEFAULT_ARTIFACT)
    parser.add_argument("--data", help="data set (default: the bundled MNIST)")
    parser.add_argument(
        "--rounds", type=integer(1), default=7, help="rounds per figure (default 7)"
    )
    args = parser.parse_args()
    artifact = load_artifact(args.artifact)  # a missing artifact is one line, before any work
    sha256 = artifact_sha256(args.artifact)
    pixels = load_dataset(args.data).test_images
    if pixels.dtype != np.uint8:
        raise ScratchnetError(f"data set images are {pixels.dtype}: expected uint8 pixels")
    inputs = {"uint8": pixels, "float32": numpy_model.scale_pixels(pixels).astype(np.float32)}
    numpy_run: Runner = partial(run_numpy, artifact.weights, artifact.biases)
    sessions = {dtype: onnxruntime_forward(artifact, sha256, dtype) for dtype in DTYPES}
    contenders = {
        f"{runtime} {dtype}": (run, inputs[dtype])
        for runtime, runs in (
            ("onnxruntime", sessions),
            ("numpy", dict.fromkeys(DTYPES, numpy_run)),
        )
        for dtype, run in runs.items()
    }
    print(
        f"{len(pixels)} test images {list(pixels.shape[1:])}; images/s, median of {args.rounds} "
        f"round{'' if args.rounds == 1 else 's'}; onnxruntime {ort.__version__}, numpy "
        f"{np.__version__}\n"
    )
    columns = [*contenders, *(f"onnxruntime/numpy {dtype}" for dtype in DTYPES)]
    print("| batch | " + " | ".join(columns) + " |")
    print("|" + "---:|" * (len(columns) + 1))
    for batch in BATCHES:
        rates = measure(contenders, batch, args.rounds)
        ratios = [
            statistics.median(
                fast / slow
                for fast, slow in zip(rates[f"onnxruntime {d}"], rates[f"numpy {d}"], strict=True)
            )
            for d in DTYPES
        ]
        cells = [f"{statistics.median(rates[name]):,.0f}" for name in contenders]
        cells += [f"{ratio:.2f}x" for ratio in ratios]
        print(f"| {batch} | " + " | ".join(cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    run_cli("bench/export_speed.py", main)
