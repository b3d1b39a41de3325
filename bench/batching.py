"""Dynamic batching benchmark: our server with and without --dynamic-batching, on the article
model and on compute-heavier MLPs, next to onnxruntime in process (the ceiling), in one run.

    .venv/bin/python bench/batching.py [--hidden 1024,4096] [--delay-us 0] [--repeats 3]

On the article model inference is a small part of a batch-1 call, so batching should cost
nothing there (S2 as fast, S3 no slower, the same labels). The MLPs, pixels→W→W→classes
(Gemm+ReLU, Gemm+ReLU, Gemm) with random weights, built here with onnx.helper into
build/bench/mlp-W.onnx for each width W of --hidden, show what it buys as the model's own time
grows. Scenarios, each the median of --repeats runs of --seconds after a warm-up, every contender
alone in its turn (a server is started, measured in both and stopped):
  S2  batch 1, 1 call in flight: latency p50 / p99
  S3  batch 1, 32 calls in flight: requests/s and p99
Requests are ModelInfer with raw_input_contents (clients.perf); every repeat, the first reply to
each distinct request is checked against onnxruntime in process (the same argmax labels, the
largest output difference recorded) and every later reply must equal it. Writes
bench/results/batching.json (bench/report.py renders it).
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import os
import shlex
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from numpy.typing import NDArray
from onnx import TensorProto, helper, numpy_helper
from report import render_batching, write_results
from serving import (
    _FIGURES,
    CALL_TIMEOUT,
    MODEL_NAME,
    OUTPUTS,
    SCENARIOS,
    Contender,
    Scenario,
    _add_up,
    _brief,
    _figure,
    _in_process,
    _machine,
    _rss_mb,
    _serving,
    _session,
    _versions,
    note_memory,
)

from clients.perf import Measurement, ModelSpec, Plan, build_plan, measure
from scratchnet.cli import ArgumentParser, integer, non_negative_number, positive_number, run_cli
from scratchnet.contract import LABEL, SCORES
from scratchnet.errors import ScratchnetError
from scratchnet.files import atomic_write, check_writable

PROGRAM = "bench/batching.py"
DELAY_US = 0
"""The default --max-batch-delay-us: at 1 call in flight any delay is added to every call (the
batch waits for company that never comes), while at 32 in flight batches fill anyway, from the
calls that arrive while one runs."""
HIDDEN = (1024, 4096)
"""The MLPs' default widths: 1024 as asked for, whose batch-1 run is a fraction of what a call
costs the server and client here anyway, and 4096, where the model's own time dominates."""
OPSET = 17
IR_VERSION = 10
"""What onnxruntime 1.17 and later load; onnx writes its newest IR version otherwise."""
BATCH_SCENARIOS = tuple(s for s in SCENARIOS if s.id in ("S2", "S3"))


@dataclass(frozen=True)
class Model:
    """A model served in the benchmark, and what is asked of it and checked."""

    id: str
    title: str
    path: Path
    outputs: tuple[str, ...]
    """Outputs requested (and compared with onnxruntime in process)."""
    values: str
    """The output whose largest difference from in process is recorded (its argmax: the label
    when the model has no `label` output)."""
    hidden: int = 0
    """An MLP's width; 0 for the article model."""


def mlp(path: Path, pixels: int, hidden: int = 1024, classes: int = 10, seed: int = 0) -> Path:
    """Write an MLP pixels→hidden→hidden→classes (Gemm+ReLU twice, then Gemm) with random weights
    from `seed` to `path`, atomically: input `images` FP32 [N, pixels], output `logits`."""
    rng = np.random.default_rng(seed)

    def weights(fan_in: int, fan_out: int, scale: float) -> NDArray[np.float32]:
        return (rng.standard_normal((fan_in, fan_out)) * scale).astype(np.float32)

    # He scaling keeps the activations' size from layer to layer; the first layer's extra 1/255
    # keeps them finite and small for pixels anywhere in 0..255, not only in 0..1.
    layers = [
        weights(pixels, hidden, np.sqrt(2 / pixels) / 255),
        weights(hidden, hidden, np.sqrt(2 / hidden)),
        weights(hidden, classes, np.sqrt(1 / hidden)),
    ]
    initializers, nodes = [], []
    source = "images"
    for index, matrix in enumerate(layers, 1):
        bias = (rng.standard_normal((matrix.shape[1],)) * 1e-3).astype(np.float32)
        initializers += [
            numpy_helper.from_array(matrix, f"w{index}"),
            numpy_helper.from_array(bias, f"b{index}"),
        ]
        last = index == len(layers)
        product = "logits" if last else f"gemm{index}"
        nodes.append(helper.make_node("Gemm", [source, f"w{index}", f"b{index}"], [product]))
        if not last:
            source = f"relu{index}"
            nodes.append(helper.make_node("Relu", [product], [source]))
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", pixels])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", classes])],
        initializers,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION
    )
    onnx.checker.check_model(model)
    with atomic_write(path) as handle:
        handle.write(model.SerializeToString())
    return path


def main() -> int:
    """Build the MLP, measure, write the results file and print the table."""
    parser = ArgumentParser(prog=PROGRAM, description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=Path("artifacts/model.onnx"))
    parser.add_argument(
        "--mlp-dir", type=Path, default=Path("build/bench"), help="where MLP-WIDTH.onnx go"
    )
    parser.add_argument(
        "--hidden",
        type=_widths,
        default=HIDDEN,
        help=f"MLP widths, one MLP each ({','.join(map(str, HIDDEN))})",
    )
    parser.add_argument(
        "--delay-us", type=integer(0), default=DELAY_US, help=f"--max-batch-delay-us ({DELAY_US})"
    )
    parser.add_argument(
        "--preferred-batch-sizes", type=_batch_sizes, help="passed on with batching, e.g. 16,32"
    )
    parser.add_argument("--threads", type=integer(0), help="the servers' --threads (default)")
    parser.add_argument("--repeats", type=integer(1), default=3, help="default 3")
    parser.add_argument("--seconds", type=positive_number, default=3.0, help="per repeat (3)")
    parser.add_argument(
        "--warmup", type=non_negative_number, default=1.0, help="per repeat, 0 for none (1)"
    )
    parser.add_argument("--output", type=Path, default=Path("bench/results/batching.json"))
    parser.add_argument("--logs", type=Path, default=Path("build/batching-logs"))
    args = parser.parse_args()
    check_writable(args.output)
    if not args.model.is_file():
        raise ScratchnetError(
            f"{args.model} not found: `python -m trainer && python -m export` (or `make bench`)"
        )
    article = _session(args.model)  # a file onnxruntime cannot load: one line, exit 2
    height, width = _sizes(article.get_inputs()[0].shape[1:], 2, args.model, "its input")
    scores = {output.name: output for output in article.get_outputs()}
    if SCORES not in scores or LABEL not in scores:
        raise ScratchnetError(f"{args.model} has no '{LABEL}' and '{SCORES}' outputs")
    (classes,) = _sizes(scores[SCORES].shape[1:], 1, args.model, f"output '{SCORES}'")
    models = (
        Model("article", "article model", args.model, OUTPUTS, SCORES),
        *(
            Model(
                f"mlp-{hidden}",
                f"MLP {height * width}→{hidden}→{hidden}→{classes}",
                mlp(args.mlp_dir / f"mlp-{hidden}.onnx", height * width, hidden, classes),
                ("logits",),
                "logits",
                hidden,
            )
            for hidden in args.hidden
        ),
    )
    sessions = {model.id: _session(model.path) for model in models}
    plans = {
        (scenario.id, model.id): _plan(sessions[model.id], model, scenario)
        for scenario in BATCH_SCENARIOS
        for model in models
    }
    contenders = _contenders(models, args)
    load_before = os.getloadavg()
    memory: dict[str, dict[str, float]] = {}
    runs, checks = _measure_all(contenders, models, plans, sessions, args, memory)
    rows = [
        _row(scenario, contender, runs, checks)
        for model in models
        for scenario in BATCH_SCENARIOS
        for contender in contenders
        if contender.row == model.id
    ]
    results = {
        "benchmark": "batching",
        "command": shlex.join(["python", *sys.argv]),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": _machine(load_before),
        "versions": _versions(contenders, args) | {"onnx": importlib.metadata.version("onnx")},
        "settings": {
            "repeats": args.repeats,
            "seconds": args.seconds,
            "warmup_seconds": args.warmup,
            "delay_us": args.delay_us,
            "preferred_batch_sizes": args.preferred_batch_sizes or "",
            "threads": args.threads,
            "batching_flags": shlex.join(_batching_flags(args)),
            "client": "clients.perf (grpc.aio, one channel, pre-serialised requests): ModelInfer, "
            "raw_input_contents, FP32 pixels in 0..1",
            "in_process": "onnxruntime, 1 intra-op thread, one call after another",
        },
        "models": [
            {
                "id": model.id,
                "title": model.title,
                "path": str(model.path),
                "outputs": list(model.outputs),
                **(
                    {"hidden": model.hidden, "seed": 0, "ir_version": IR_VERSION, "opset": OPSET}
                    if model.hidden
                    else {}
                ),
            }
            for model in models
        ],
        "scenarios": [vars(scenario) for scenario in BATCH_SCENARIOS],
        "contenders": [
            {"id": c.id, "model": c.row, "label": c.label, "command": c.command} for c in contenders
        ],
        "results": rows,
        "checks_ok": all(not row["errors"] and row["check"]["ok"] for row in rows),
        "memory": memory,
    }
    write_results(args.output, results)
    print(f"\nwrote {args.output}\n\n{render_batching(results)}")
    return 0 if results["checks_ok"] else 1


def _sizes(dims: list[Any], count: int, path: Path, what: str) -> tuple[int, ...]:
    """The `count` fixed sizes of a tensor's non-batch dimensions, from onnxruntime's shape."""
    if len(dims) != count or not all(isinstance(size, int) and size > 0 for size in dims):
        raise ScratchnetError(
            f"{path}: {what} has dimensions {dims} after the batch, expected {count} fixed sizes"
        )
    return tuple(dims)


def _widths(text: str) -> tuple[int, ...]:
    """An argparse `type`: MLP widths >= 1 separated by commas."""
    try:
        widths = tuple(int(part) for part in text.split(","))
    except ValueError:
        widths = (0,)
    if min(widths) < 1 or len(set(widths)) < len(widths):
        raise argparse.ArgumentTypeError(f"expected different widths >= 1, got {text!r}")
    return widths


def _batch_sizes(text: str) -> str:
    """An argparse `type`: sizes >= 1 separated by commas, as the server's flag takes them."""
    try:
        sizes = [int(part) for part in text.split(",")]
    except ValueError:
        sizes = [0]
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"expected sizes >= 1 separated by commas, got {text!r}")
    return ",".join(map(str, sizes))


def _plan(session: Any, model: Model, scenario: Scenario) -> Plan:
    image = session.get_inputs()[0]
    dims = tuple(int(size) for size in image.shape[1:])
    spec = ModelSpec(MODEL_NAME, "", image.name, dims, ("FP32",), model.outputs)
    return build_plan(spec, "v2", scenario.batch, outputs=model.outputs, count=scenario.distinct)


def _batching_flags(args: Any) -> tuple[str, ...]:
    flags: tuple[str, ...] = ("--dynamic-batching", "--max-batch-delay-us", str(args.delay_us))
    if args.preferred_batch_sizes:
        flags += ("--preferred-batch-sizes", args.preferred_batch_sizes)
    return flags


def _contenders(models: tuple[Model, ...], args: Any) -> list[Contender]:
    """Per model: onnxruntime in process, the server with its default flags, the same with
    dynamic batching (both with --threads when given)."""
    common = ("--threads", str(args.threads)) if args.threads is not None else ()
    batching = _batching_flags(args)
    scenarios = tuple(scenario.id for scenario in BATCH_SCENARIOS)
    contenders = []
    for model in models:
        ceiling = f"in-process-{model.id}"
        contenders.append(
            Contender(
                id=ceiling,
                row=model.id,
                label="onnxruntime in process, 1 thread (the ceiling)",
                model=model.path,
                scenarios=scenarios,
                ceiling=ceiling,
            )
        )
        for suffix, flags, label in (
            ("", common, "without batching"),
            ("-batching", (*common, *batching), "with batching"),
        ):
            contenders.append(
                Contender(
                    id=f"{model.id}{suffix}",
                    row=model.id,
                    label=label,
                    model=model.path,
                    scenarios=scenarios,
                    command=["python", "-m", "server", "--model", str(model.path), *flags],
                    args=flags,
                    ceiling=ceiling,
                )
            )
    return contenders


Runs = dict[tuple[str, str], list[Measurement]]
Checks = dict[tuple[str, str], list[tuple[bool, float] | None]]


def _measure_all(
    contenders: list[Contender],
    models: tuple[Model, ...],
    plans: dict[tuple[str, str], Plan],
    sessions: dict[str, Any],
    args: Any,
    memory: dict[str, dict[str, float]],
) -> tuple[Runs, Checks]:
    """Each repeat runs one contender at a time (an idle server still takes some CPU) through
    both scenarios; the first contender changes every repeat, so drifts in load are shared."""
    by_path = {model.path: model for model in models}
    runs: Runs = {}
    checks: Checks = {}
    for repeat in range(args.repeats):
        turn = repeat % len(contenders)
        for contender in contenders[turn:] + contenders[:turn]:
            model = by_path[contender.model]
            session = sessions[model.id]
            first = plans[("S2", model.id)]
            with _serving(contender, first, args.logs) as (target, pid):
                if pid:
                    idle = _rss_mb(pid)[0]
                for scenario in BATCH_SCENARIOS:
                    plan = plans[(scenario.id, model.id)]
                    key = (scenario.id, contender.id)
                    if contender.command is None:
                        result = _in_process(session, plan, args.seconds, args.warmup)
                    else:
                        result = measure(
                            target,
                            plan,
                            concurrency=scenario.concurrency,
                            duration=args.seconds,
                            warmup=args.warmup,
                            timeout=CALL_TIMEOUT,
                        )
                        checks.setdefault(key, []).extend(_check(plan, result, session, model))
                    runs.setdefault(key, []).append(result)
                    step = f"{repeat + 1}/{args.repeats} {scenario.id} {contender.id}"
                    print(f"{step}: {_brief(result)}", flush=True)
                if pid:
                    note_memory(memory, contender.id, idle, pid)
    return runs, checks


def _check(
    plan: Plan, result: Measurement, session: Any, model: Model
) -> list[tuple[bool, float] | None]:
    """Per request answered: whether its labels equal onnxruntime's in process, and the largest
    difference of `model.values` from it; None where an output is missing."""
    name = session.get_inputs()[0].name
    found: list[tuple[bool, float] | None] = []
    for index, reply in sorted(result.first_replies.items()):
        expected = session.run(list(model.outputs), {name: plan.images[index]})
        want = dict(zip(model.outputs, expected, strict=True))
        got = plan.decode(reply)
        if any(output not in got for output in model.outputs):
            found.append(None)
            continue
        values = got[model.values].reshape(want[model.values].shape)
        same = np.array_equal(_labels(got, model), _labels(want, model))
        found.append((same, float(np.max(np.abs(values - want[model.values])))))
    return found


def _labels(outputs: dict[str, NDArray[Any]], model: Model) -> NDArray[Any]:
    if LABEL in outputs:
        return outputs[LABEL].reshape(-1)
    values = outputs[model.values]
    return np.asarray(np.argmax(values.reshape(-1, values.shape[-1]), axis=1))


def _row(scenario: Scenario, contender: Contender, runs: Runs, checks: Checks) -> dict[str, Any]:
    summaries = [run.summary() for run in runs[(scenario.id, contender.id)]]
    figures = {name: [_figure(s, name) for s in summaries] for name in _FIGURES}
    row: dict[str, Any] = {
        "scenario": scenario.id,
        "model": contender.row,
        "contender": contender.id,
        "batching": contender.id.endswith("-batching"),
        "median": {name: statistics.median(values) for name, values in figures.items()},
    }
    served = contender.command is not None
    if served:
        ceiling = [run.summary() for run in runs[(scenario.id, contender.ceiling)]]
        row["vs_in_process"] = _ratios(summaries, ceiling)
    if row["batching"]:
        without = contender.id.removesuffix("-batching")
        row["vs_without"] = _ratios(summaries, [r.summary() for r in runs[(scenario.id, without)]])
    found = checks.get((scenario.id, contender.id), [])
    measured = [f for f in found if f is not None]
    row |= {
        "errors": sum(s["errors"] for s in summaries),
        "errors_by_code": _add_up(s["errors_by_code"] for s in summaries),
        "check": {
            "replies_checked": len(found),
            "ok": not served or (bool(found) and all(f is not None and f[0] for f in found)),
            "labels_equal": all(same for same, _ in measured),
            "max_output_difference": max((d for _, d in measured), default=None),
        },
        "repeats": summaries,
    }
    return row


def _ratios(summaries: list[dict[str, Any]], others: list[dict[str, Any]]) -> dict[str, float]:
    """Per repeat (the two ran in the same repeat, side by side), then their median: throughput
    and latency as ratios, latency also as a difference in ms."""
    pairs = list(zip(summaries, others, strict=True))
    ratios = {
        name: statistics.median(_figure(s, name) / _figure(o, name) for s, o in pairs)
        for name in ("requests_per_second", "p50_ms", "p99_ms")
    }
    for name in ("p50_ms", "p99_ms"):
        ratios[f"{name}_difference"] = statistics.median(
            _figure(s, name) - _figure(o, name) for s, o in pairs
        )
    return ratios


if __name__ == "__main__":
    run_cli(PROGRAM, main)
