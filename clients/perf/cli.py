"""`python -m clients.perf`'s command line: flags, the runs they ask for, and the exit code."""

from __future__ import annotations

import json
import math
from argparse import ArgumentTypeError
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import NDArray

from clients.cli import add_server_flags, security_options
from clients.credentials import Credentials
from clients.perf.load import (
    DISTRIBUTIONS,
    MAX_WINDOWS,
    RATE_CONCURRENCY,
    Rate,
    Stability,
    measure,
    measure_until_stable,
)
from clients.perf.model import describe
from clients.perf.plan import APIS, DEFAULT_OUTPUTS, build_plan, in_shared_memory
from clients.perf.report import sweep_table, text
from clients.shared_memory import Region, registered
from clients.targets import parse_targets
from scratchnet.cli import ArgumentParser, integer, non_negative_number, positive_number, run_cli
from scratchnet.datasets import load_dataset
from scratchnet.errors import ClientError, ScratchnetError

__all__ = ["MAX_CONCURRENCY", "PROGRAM", "main"]

PROGRAM = "python -m clients.perf"
MAX_CONCURRENCY = 4096
"""Most calls in flight (the server's default --max-concurrent-rpcs): each is a task and its
buffers, so a typo of 100000000 would fill memory instead of measuring."""

_DTYPE_FLAGS = {"uint8": "UINT8", "float32": "FP32"}
"""--dtype's choices, by their Open Inference Protocol names."""


def main() -> None:
    """The command line; see --help."""
    run_cli(PROGRAM, _main)


def _main() -> int:
    parser = ArgumentParser(
        prog=PROGRAM,
        description="Load a scratchnet or Open Inference Protocol server with inference calls "
        "and report throughput, latency, errors and the client's own CPU time. Exit code 0; 1 "
        "if a call failed (any call of the run, or the server or model not reachable); 2 for "
        "the caller's mistake found before any call (a flag, a file).",
    )
    add_server_flags(parser, "deadline of each call")
    parser.add_argument(
        "--api",
        choices=tuple(APIS),
        default="v1",
        help="v1: scratchnet.v1 Predict; v2: Open Inference Protocol ModelInfer (default: v1)",
    )
    # --model-name and --model-version as clients.score and clients.predict say; -m and -x as
    # Triton's perf_analyzer says.
    parser.add_argument(
        "--model",
        "--model-name",
        "-m",
        dest="model",
        metavar="NAME",
        help="the model to call (default: the server's default model)",
    )
    parser.add_argument(
        "--version",
        "--model-version",
        "-x",
        dest="version",
        default="",
        help="its version (default: the newest the server has ready)",
    )
    parser.add_argument(
        "--batch", type=integer(1), default=1, metavar="B", help="images per request (default 1)"
    )
    levels = parser.add_mutually_exclusive_group()
    levels.add_argument(
        "--concurrency",
        type=integer(1, MAX_CONCURRENCY),
        default=1,
        metavar="N",
        help=f"calls in flight, at most {MAX_CONCURRENCY} (default 1)",
    )
    levels.add_argument(
        "--concurrency-range",
        type=_concurrency_range,
        metavar="START[:END[:STEP]]",
        help="measure at START, START+STEP, ... up to END calls in flight in turn, as "
        "perf_analyzer's --concurrency-range, and end with a table of them (STEP default 1)",
    )
    levels.add_argument(
        "--request-rate",
        type=_rate,
        metavar="R",
        help="start R calls a second on a schedule, whether or not earlier calls have answered "
        f"(perf_analyzer's request-rate mode; at most {RATE_CONCURRENCY} in flight); latency "
        "counts from each call's scheduled time",
    )
    levels.add_argument(
        "--request-rate-range",
        type=_rate_range,
        metavar="START[:END[:STEP]]",
        help="measure at request rates START, START+STEP, ... up to END in turn, and end with a "
        "table of them (STEP default 1)",
    )
    parser.add_argument(
        "--request-distribution",
        choices=DISTRIBUTIONS,
        help="how a request rate spaces its calls: evenly, or as a Poisson process's arrivals "
        "(default: constant)",
    )
    parser.add_argument(
        "--duration",
        type=positive_number,
        default=10.0,
        metavar="S",
        help="measuring window in seconds (default 10)",
    )
    parser.add_argument(
        "--warmup",
        type=non_negative_number,
        default=1.0,
        metavar="S",
        help="seconds of calls before the window, not counted (default 1)",
    )
    parser.add_argument(
        "--dtype", choices=tuple(_DTYPE_FLAGS), help="pixel type sent (default: the model's own)"
    )
    parser.add_argument(
        "--outputs",
        type=_names,
        metavar="NAMES",
        help="outputs asked for, comma-separated (default: label,scores when the model has "
        "them, else all of its outputs)",
    )
    parser.add_argument(
        "--data",
        metavar="PATH",
        help="send the test images of this data set (IDX folder or npz; 'mnist': the bundled "
        "MNIST) instead of random pixels",
    )
    parser.add_argument(
        "--shared-memory",
        choices=("none", "system"),
        default="none",
        help="system: send the images through shared memory (/dev/shm) instead of the message "
        "(Triton's extension; --api v2, a server on this host; default: none)",
    )
    parser.add_argument(
        "--stability",
        type=positive_number,
        metavar="PCT",
        help="measure windows of --duration until the last three agree within PCT %% "
        "(throughput and mean latency, as perf_analyzer's --stability-percentage) and report "
        "those three; default: one window",
    )
    parser.add_argument(
        "--max-windows",
        type=integer(3),
        metavar="N",
        help="with --stability: give up after N windows, reporting the last three (default "
        f"{MAX_WINDOWS})",
    )
    parser.add_argument(
        "--no-check-replies",
        action="store_true",
        help="accept any OK reply (by default a reply that differs from the first to the same "
        "request is an error, MISMATCH: a server answering wrongly under load)",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object instead (a list of them with --concurrency-range or "
        "--request-rate-range)",
    )
    args = parser.parse_args()
    if args.max_windows is not None and args.stability is None:
        parser.error("--max-windows applies to --stability only")
    rates = args.request_rate_range or ([args.request_rate] if args.request_rate else [])
    if args.request_distribution is not None and not rates:
        parser.error("--request-distribution applies to --request-rate(-range) only")
    schedules = [Rate(rate, args.request_distribution or "constant") for rate in rates]
    for schedule in schedules:
        _check_due(parser, schedule, args.warmup, args.duration, args.stability is not None)
    loads: list[tuple[int, Rate | None]] = [(RATE_CONCURRENCY, rate) for rate in schedules] or [
        (level, None) for level in args.concurrency_range or [args.concurrency]
    ]
    sweep = bool(args.concurrency_range or args.request_rate_range)
    targets = parse_targets(args.target)  # a malformed target fails before any call
    if args.shared_memory != "none":
        # in_shared_memory and registered check these too, but only after calls were made.
        if args.api != "v2":
            parser.error("--shared-memory belongs to the Open Inference Protocol: use --api v2")
        if targets.replicas is None:
            parser.error(
                "--shared-memory needs the servers listed (HOST:PORT,…), to register its "
                f"regions with each, not {args.target!r}"
            )
    credentials = Credentials.of(**security_options(parser, args))
    spec = describe(args.target, args.api, args.model, args.version, args.timeout, credentials)
    datatype = _DTYPE_FLAGS[args.dtype] if args.dtype else None
    outputs = args.outputs
    if outputs is None:
        classifier = all(name in spec.outputs for name in DEFAULT_OUTPUTS)
        outputs = DEFAULT_OUTPUTS if classifier else spec.outputs
    plan = build_plan(
        spec,
        args.api,
        args.batch,
        datatype=datatype,
        outputs=outputs,
        pixels=_dataset_pixels(args.data) if args.data else None,
    )
    regions: list[Region] = []
    if args.shared_memory == "system":
        plan, regions = in_shared_memory(plan, spec)
    options: dict[str, Any] = {
        "concurrency": args.concurrency,
        "duration": args.duration,
        "warmup": args.warmup,
        "timeout": args.timeout,
        "credentials": credentials,
        "check_replies": not args.no_check_replies,
    }
    reports: list[dict[str, Any]] = []
    with registered(args.target, regions, args.timeout, credentials):
        for level, rate in loads:
            windows, stable = 1, None
            options["concurrency"], options["rate"] = level, rate
            if args.stability is None:
                result = measure(args.target, plan, **options)
            else:
                stability = Stability(args.stability, args.max_windows or MAX_WINDOWS)
                result, windows, stable = measure_until_stable(
                    args.target, plan, stability, **options
                )
            # A schedule too fast to send any call at says so in its report (all of them unsent).
            if rate is None and result.requests + result.error_count == 0:
                raise ClientError(
                    f"no call to {args.target} finished within the {args.duration:g} s "
                    f"({level} in flight)",
                    failure=True,
                )
            report = {
                "target": args.target,
                "api": args.api,
                "model": {"name": spec.name, "version": spec.version},
                "input": {
                    "name": spec.input_name,
                    "datatype": plan.datatype,
                    "dims": spec.image_dims,
                },
                "outputs": list(plan.outputs),
                "shared_memory": args.shared_memory,
                "warmup_seconds": args.warmup,
                "windows": windows,
                "stability_percent": args.stability,
                "stable": stable,
                **result.summary(),
            }
            reports.append(report)
            if not args.json:
                # Each level as it ends: a sweep takes a while.
                print(("\n" if len(reports) > 1 else "") + text(report), flush=True)
    if args.json:
        # One level: its report; a sweep: the list of them, as perf_analyzer's CSV has a row each.
        print(json.dumps(reports if sweep else reports[0], indent=2))
    elif sweep:
        print("\n" + sweep_table(reports))
    return 1 if any(report["errors"] for report in reports) else 0


def _check_due(
    parser: ArgumentParser, rate: Rate, warmup: float, duration: float, windows: bool
) -> None:
    """A usage error unless `rate` starts a call in the measuring window (and, for later
    --stability windows, which have no warm-up, in one from the start)."""
    spans = [(warmup, warmup + duration)] + ([(0.0, duration)] if windows else [])
    if any(rate.count(start, stop) == 0 for start, stop in spans):
        parser.error(
            f"at {rate.per_second:g} calls a second no call falls in a {duration:g} s window: "
            "ask for a higher rate or a longer --duration"
        )


def _concurrency_range(text: str) -> list[int]:
    """START[:END[:STEP]] (perf_analyzer's --concurrency-range): the levels START to END."""
    levels = _range(text, "integers", int, MAX_CONCURRENCY, "calls in flight")
    return [int(level) for level in levels]


def _rate_range(text: str) -> list[float]:
    """START[:END[:STEP]] (perf_analyzer's --request-rate-range): the rates START to END."""
    return _range(text, "numbers", float, _MAX_RATE, "calls a second")


def _range(
    text: str, kind: str, number: Callable[[str], float], limit: float, unit: str
) -> list[float]:
    """START, START+STEP, ... up to END, each a positive `number` at most `limit`."""
    expected = (
        f"expected START[:END[:STEP]], {kind} with 0 < START <= END and STEP > 0, got {text!r}"
    )
    try:
        parts = [number(part) for part in text.split(":")]
    except ValueError:
        raise ArgumentTypeError(expected) from None
    if len(parts) > 3 or not all(math.isfinite(part) for part in parts):
        raise ArgumentTypeError(expected)
    start = parts[0]
    end = parts[1] if len(parts) > 1 else start
    step = parts[2] if len(parts) > 2 else 1
    if not 0 < start <= end or step <= 0:
        raise ArgumentTypeError(expected)
    if end > limit:
        raise ArgumentTypeError(f"END is {end:g}: at most {limit:g} {unit}")
    count = int((end - start) / step + 1e-9) + 1
    if count > _MAX_LEVELS:
        raise ArgumentTypeError(
            f"{text!r} makes more than {_MAX_LEVELS} levels: take a larger STEP"
        )
    return [start + index * step for index in range(count)]


def _rate(text: str) -> float:
    """A request rate: calls a second, positive and at most _MAX_RATE."""
    value = positive_number(text)
    if value > _MAX_RATE:
        raise ArgumentTypeError(f"expected at most {_MAX_RATE:,} calls a second, got {text!r}")
    return value


def _names(text: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(name.strip() for name in text.split(",") if name.strip()))
    if not names:
        raise ArgumentTypeError(f"expected output names separated by commas, got {text!r}")
    return names


def _dataset_pixels(path: str) -> NDArray[np.uint8]:
    images = load_dataset(None if path == "mnist" else path).test_images
    if images.dtype != np.uint8:
        raise ScratchnetError(f"data set {path}: perf sends uint8 pixels, found {images.dtype}")
    return np.asarray(images, dtype=np.uint8)


_MAX_LEVELS = 64
"""Most levels one sweep measures (a typo such as 1:10000 would take hours)."""
_MAX_RATE = 1_000_000
"""The highest request rate perf schedules; far beyond what one Python client sends, where the
calls that start late say so."""
