"""Where a small model's runs should happen: on the event loop, or handed to an inference thread.
Our server at several `--inline-us` values, side by side in one run, on the article model and on
an MLP whose batch-1 run takes about 0.2 ms (docs/performance.md).

    .venv/bin/python bench/inline.py [--values 0,200,1000] [--hidden 1024] [--repeats 3]

A run expected (from the model's speed measured at load) to take less than `--inline-us` runs on
the event loop; a longer one goes to an inference thread. Each server is started alone in its
turn, taking turns in every repeat, and measured with batch-1 ModelInfer calls from clients.perf:
S2 (1 call in flight: p50 latency) and S3 (32 in flight: requests/s). Medians of --repeats.
The MLP is bench/batching.py's, written to build/bench/mlp-W.onnx; the servers' logs go to
build/inline-logs. Writes nothing else.
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path

from batching import BATCH_SCENARIOS, Model, _plan, mlp
from serving import OUTPUTS, ROOT, _session

from clients.perf import Measurement, Plan, measure
from scratchnet.cli import ArgumentParser, integer, integers, positive_number, run_cli
from scratchnet.contract import LABEL, SCORES
from scratchnet.errors import LaunchError
from scratchnet.launcher import ServerProcess

PROGRAM = "bench/inline.py"


def _serve_and_measure(
    model: Model, inline_us: int, plans: dict[str, Plan], seconds: float, logs: Path
) -> dict[str, Measurement]:
    """S2 and S3 against one server started with `--inline-us inline_us`."""
    log = logs / f"inline-{model.id}-{inline_us}.log"
    with ServerProcess.start(model.path, "--inline-us", str(inline_us), stdout=log) as server:
        figures = {}
        for scenario in BATCH_SCENARIOS:
            result = measure(
                server.target,
                plans[scenario.id],
                concurrency=scenario.concurrency,
                duration=seconds,
                warmup=1.0,
            )
            if result.error_count:
                raise LaunchError(f"calls failed: {result.errors} (see {log})")
            figures[scenario.id] = result
        return figures


def main() -> int:
    """Measure every model at every --inline-us value, taking turns, and print the medians."""
    parser = ArgumentParser(prog=PROGRAM, description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=ROOT / "artifacts" / "model.onnx")
    parser.add_argument(
        "--values", type=integers(0), default=[0, 200, 1000], help="--inline-us values (0,200,1000)"
    )
    parser.add_argument("--hidden", type=integer(1), default=1024, help="the MLP's width (1024)")
    parser.add_argument("--repeats", type=integer(1), default=3)
    parser.add_argument("--seconds", type=positive_number, default=3.0, help="per scenario (3)")
    parser.add_argument("--logs", type=Path, default=ROOT / "build" / "inline-logs")
    args = parser.parse_args()
    values: list[int] = args.values
    if not args.model.is_file():
        raise LaunchError(f"{args.model} not found: run `make demo` first")
    article = _session(args.model)
    pixels = math.prod(int(size) for size in article.get_inputs()[0].shape[1:])
    outputs = {output.name: output for output in article.get_outputs()}
    if SCORES not in outputs or LABEL not in outputs:
        raise LaunchError(f"{args.model} has no '{LABEL}' and '{SCORES}' outputs")
    classes = int(outputs[SCORES].shape[1])
    path = mlp(ROOT / "build" / "bench" / f"mlp-{args.hidden}.onnx", pixels, args.hidden, classes)
    models = (
        Model("article", "article model", args.model, OUTPUTS, SCORES),
        Model(
            f"mlp-{args.hidden}",
            f"MLP {pixels}→{args.hidden}→{args.hidden}→{classes}",
            path,
            ("logits",),
            "logits",
            args.hidden,
        ),
    )
    sessions = {"article": article, f"mlp-{args.hidden}": _session(path)}
    plans = {
        model.id: {s.id: _plan(sessions[model.id], model, s) for s in BATCH_SCENARIOS}
        for model in models
    }
    runs: dict[tuple[str, int], list[dict[str, Measurement]]] = {}
    for repeat in range(args.repeats):
        for model in models:
            for value in values:
                print(f"repeat {repeat + 1}: {model.id}, --inline-us {value}", flush=True)
                measured = _serve_and_measure(
                    model, value, plans[model.id], args.seconds, args.logs
                )
                runs.setdefault((model.id, value), []).append(measured)
    print("\n| model | --inline-us | S2 p50 ms | S3 requests/s |\n|---|---:|---:|---:|")
    for model in models:
        for value in values:
            repeats = runs[(model.id, value)]
            p50 = statistics.median(r["S2"].summary()["latency_ms"]["p50"] for r in repeats)
            rate = statistics.median(r["S3"].summary()["requests_per_second"] for r in repeats)
            print(f"| {model.title} | {value} | {p50:.3f} | {rate:,.0f} |")
    return 0


if __name__ == "__main__":
    run_cli(PROGRAM, main)
