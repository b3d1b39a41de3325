"""What observability costs per request: the access log and the Prometheus metrics, in process and
through the server.

    .venv/bin/python bench/observability.py [--model artifacts/model.onnx] [--repeats 3]
    .venv/bin/python bench/observability.py --in-process   # the first table only, in seconds

In process: the time the data plane's observers take for one request (RequestMetrics.observe;
AccessLog.observe as text, as JSON and with INFO off, then as text and JSON once the logging module
collects what the server's does: server.logs.collect_only_what_is_printed), best of 5 rounds of
20,000; and, for
comparison, the same six records (a counter, five histograms) with prometheus_client's own
Counter and Histogram, their labelled children looked up once beforehand.
Through the server, batch 1 ModelInfer (label and scores) from clients.perf: S2 (one call in
flight: p50 and p99 latency) and S3 (32 in flight: requests/s), for four configurations started in
turn in each repeat: neither (--log-level warning), the access log only (the defaults), metrics
only (--log-level warning --metrics-port 0) and both; medians of --repeats.
"""

from __future__ import annotations

import io
import logging
import os
import statistics
import tempfile
import timeit
from collections.abc import Callable
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Histogram
from serving import OUTPUTS, _session, _spec

from clients.perf import Plan, build_plan, measure, wait_answering
from scratchnet.cli import ArgumentParser, integer, positive_number, run_cli
from scratchnet.errors import ScratchnetError
from scratchnet.launcher import ServerProcess
from server.dataplane import Outcome
from server.logs import AccessLog, JsonFormatter, collect_only_what_is_printed
from server.metrics import ITEM_BUCKETS, SECONDS_BUCKETS, RequestMetrics
from server.statistics import Timing

PROGRAM = "bench/observability.py"
CONFIGURATIONS = {
    "neither": ("--log-level", "warning"),
    "access log (default)": (),
    "metrics": ("--log-level", "warning", "--metrics-port", "0"),
    "both": ("--metrics-port", "0"),
}


def in_process() -> dict[str, float]:
    """Microseconds per request of each observer, best of 5 rounds."""
    timing = Timing(queue=10_000, compute_input=20_000, compute_infer=100_000, compute_output=5_000)
    outcome = Outcome("v2", "scratchnet", "1", 1, "OK", "", timing, 1)
    logger = logging.getLogger("bench.access")
    logger.propagate = False
    handler = logging.StreamHandler(io.StringIO())
    logger.addHandler(handler)
    access = AccessLog(logger)

    def per_call(function: Callable[[], None], number: int = 20_000) -> float:
        return min(timeit.repeat(function, number=number, repeat=5)) / number * 1e6

    metrics = RequestMetrics()
    figures = {"RequestMetrics.observe": per_call(lambda: metrics.observe(outcome))}
    figures["prometheus_client Counter + 5 Histograms"] = per_call(_prometheus_client_records())
    logger.setLevel(logging.INFO)
    text = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    handler.setFormatter(text)
    figures["AccessLog.observe, text"] = per_call(lambda: access.observe(outcome))
    handler.setFormatter(JsonFormatter())
    figures["AccessLog.observe, JSON"] = per_call(lambda: access.observe(outcome))
    logger.setLevel(logging.WARNING)
    figures["AccessLog.observe, INFO off"] = per_call(lambda: access.observe(outcome))
    # Last: process-wide, as in the server, which collects no caller, thread or process.
    logger.setLevel(logging.INFO)
    collect_only_what_is_printed()
    for name, formatter in (("text", text), ("JSON", JsonFormatter())):
        handler.setFormatter(formatter)
        figures[f"AccessLog.observe, {name}, as the server collects records"] = per_call(
            lambda: access.observe(outcome)
        )
    return figures


def _prometheus_client_records() -> Callable[[], None]:
    """What RequestMetrics.observe records, done with prometheus_client's metric classes."""
    registry = CollectorRegistry()
    labels = ("model", "version", "api")
    counter = Counter("requests", "", [*labels, "status"], registry=registry)
    seconds = [
        Histogram(name, "", labels, registry=registry, buckets=SECONDS_BUCKETS)
        for name in ("queue_seconds", "compute_seconds", "duration_seconds")
    ]
    items = [
        Histogram(name, "", labels, registry=registry, buckets=ITEM_BUCKETS)
        for name in ("items", "batch_items")
    ]
    count = counter.labels("scratchnet", "1", "v2", "OK")
    timed = [histogram.labels("scratchnet", "1", "v2") for histogram in seconds]
    sized = [histogram.labels("scratchnet", "1", "v2") for histogram in items]

    def record() -> None:
        count.inc()
        for histogram, value in zip(timed, (0.00001, 0.000125, 0.0002), strict=True):
            histogram.observe(value)
        for histogram in sized:
            histogram.observe(1)

    return record


def through_server(
    model: Path, plan: Plan, repeats: int, seconds: float
) -> dict[str, dict[str, float]]:
    """Medians of S2 p50/p99 (ms) and S3 requests/s per configuration, `plan` the requests."""
    runs: dict[str, dict[str, list[float]]] = {
        name: {"S2 p50 ms": [], "S2 p99 ms": [], "S3 requests/s": []} for name in CONFIGURATIONS
    }
    with tempfile.TemporaryDirectory() as logs:
        for repeat in range(repeats):
            for name, flags in CONFIGURATIONS.items():
                log = Path(logs) / f"{repeat}-{name.split()[0]}.log"
                with ServerProcess.start(model, *flags, stdout=log) as server:
                    wait_answering(server.target, plan, 60.0)
                    s2 = measure(server.target, plan, duration=seconds, warmup=0.5).summary()
                    s3 = measure(
                        server.target, plan, concurrency=32, duration=seconds, warmup=0.5
                    ).summary()
                if s2["errors"] or s3["errors"]:
                    raise ScratchnetError(f"{name}: calls failed (see {log})")
                runs[name]["S2 p50 ms"].append(s2["latency_ms"]["p50"])
                runs[name]["S2 p99 ms"].append(s2["latency_ms"]["p99"])
                runs[name]["S3 requests/s"].append(s3["requests_per_second"])
                print(f"repeat {repeat + 1}, {name}: done", flush=True)
    return {
        name: {figure: statistics.median(values) for figure, values in figures.items()}
        for name, figures in runs.items()
    }


def _main() -> int:
    parser = ArgumentParser(prog=PROGRAM, description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=Path("artifacts/model.onnx"))
    parser.add_argument("--repeats", type=integer(1), default=3, help="default 3")
    parser.add_argument("--seconds", type=positive_number, default=3.0, help="per run (3)")
    parser.add_argument("--in-process", action="store_true", help="no server: the first table")
    args = parser.parse_args()
    plan = None
    if not args.in_process:
        if not args.model.is_file():
            raise ScratchnetError(
                f"{args.model} not found: `python -m trainer && python -m export`"
            )
        # Before the first table: a file onnxruntime cannot load is one line, exit 2.
        plan = build_plan(_spec(_session(args.model)), "v2", 1, outputs=OUTPUTS)
    print(f"load average before: {os.getloadavg()[0]:.1f}\n")
    print("| recording, in process | µs per request |\n|---|---:|")
    for name, micros in in_process().items():
        print(f"| {name} | {micros:.2f} |")
    if plan is None:
        return 0
    figures = through_server(args.model, plan, args.repeats, args.seconds)
    print("\n| server | S2 p50 ms | S2 p99 ms | S3 requests/s |\n|---|---:|---:|---:|")
    for name, row in figures.items():
        print(
            f"| {name} | {row['S2 p50 ms']:.3f} | {row['S2 p99 ms']:.3f} | "
            f"{row['S3 requests/s']:,.0f} |"
        )
    print(f"\nload average after: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    run_cli(PROGRAM, _main)
