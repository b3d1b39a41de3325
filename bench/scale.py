"""Scaling out, measured: images/s of Ray Data actors and of server replicas next to one process,
on a large synthetic set, with each engine's fixed cost; the README's scale table comes from it.

    .venv/bin/python bench/scale.py [--images 1000000] [--repeats 3]

The set is the MNIST test images tiled to --images (1 M by default: a job's fixed cost dwarfs
inference on MNIST's 10,000), made here, never written to disk. Each repeat measures, in turn:
  - onnxruntime in process, 1 thread, batches of 1024: the single-process figure;
  - Ray (`clients.ray_engine.score_on_ray`, the code of `clients.score --engine ray`) with 1 and
    2 actors: ray.init, a tiny job (1,024 images: the job's own fixed cost, mostly starting the
    actors), the whole set, the whole set again with Parquet output (2 actors), ray.shutdown;
  - servers (`python -m server --threads 1`, one model thread each like an actor) scored with
    `clients.score.score` over gRPC: 1 server on one stream (today's path), 1 server with one
    call per batch, 2 replicas round robin; server start (to SERVING) and stop (SIGTERM) timed.
Every run's labels must equal the in-process ones. Medians over repeats; ratios are taken per
repeat against that repeat's in-process figure. Writes bench/results/scale.json; bench/report.py
renders it.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import logging
import os
import platform
import re
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from report import render_scale, write_results

from clients.client import Client
from clients.inputs import Source
from clients.onnx_model import OnnxModel
from clients.ray_engine import import_ray, score_on_ray
from clients.score import score
from scratchnet.cli import ArgumentParser, integer, run_cli
from scratchnet.datasets import load_dataset
from scratchnet.errors import ScratchnetError
from scratchnet.files import check_writable
from scratchnet.launcher import ServerProcess

PROGRAM = "bench/scale.py"
BATCH = 1024
TINY = 1024
"""Images of the tiny job whose time is a Ray job's own fixed cost."""
_PACKAGES = ("ray", "onnxruntime", "grpcio", "pyarrow", "numpy")

Row = dict[str, Any]


def main() -> int:
    """Measure, write the results file and print the table."""
    parser = ArgumentParser(prog=PROGRAM, description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=Path("artifacts/model.onnx"))
    parser.add_argument("--images", type=integer(TINY), default=1_000_000, help="default 1 M")
    parser.add_argument("--repeats", type=integer(1), default=3, help="default 3")
    parser.add_argument("--output", type=Path, default=Path("bench/results/scale.json"))
    parser.add_argument("--logs", type=Path, default=Path("build/scale-logs"))
    args = parser.parse_args()
    check_writable(args.output)
    if not args.model.is_file():
        raise ScratchnetError(f"{args.model} not found: `python -m trainer && python -m export`")
    load_before = os.getloadavg()
    test_images = load_dataset(None).test_images
    images = np.resize(test_images, (args.images, *test_images.shape[1:]))
    model = OnnxModel(args.model.read_bytes(), str(args.model))
    ray = import_ray()
    samples: dict[str, list[Row]] = {}
    for repeat in range(args.repeats):
        print(f"repeat {repeat + 1} of {args.repeats}", flush=True)
        expected, single = _in_process(model, images)
        _add(samples, "in-process", single)
        for key, row in _ray(ray, args.model, images, expected).items():
            _add(
                samples,
                key,
                {**row, "vs_single": row["images_per_second"] / single["images_per_second"]},
            )
        for key, row in _servers(args.model, images, expected, args.logs).items():
            _add(
                samples,
                key,
                {**row, "vs_single": row["images_per_second"] / single["images_per_second"]},
            )
    results = {
        "command": shlex.join(["python", *sys.argv]),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "settings": {"images": args.images, "repeats": args.repeats, "batch": BATCH, "tiny": TINY},
        "machine": _machine(load_before),
        "versions": {name: importlib.metadata.version(name) for name in _PACKAGES},
        "results": [
            {"id": key, **_medians(rows), "samples": rows} for key, rows in samples.items()
        ],
    }
    write_results(args.output, results)
    print(render_scale(results))
    print(f"\nwrote {args.output}")
    return 0


def _in_process(model: OnnxModel, images: NDArray[np.uint8]) -> tuple[NDArray[np.int64], Row]:
    labels = np.empty(len(images), dtype=np.int64)
    started = time.perf_counter()
    for start in range(0, len(images), BATCH):
        labels[start : start + BATCH] = model.predict(images[start : start + BATCH]).labels
    seconds = time.perf_counter() - started
    print(f"  in process: {len(images) / seconds:,.0f} images/s", flush=True)
    return labels, {"seconds": seconds, "images_per_second": len(images) / seconds, "workers": 1}


def _ray(
    ray: Any, model: Path, images: NDArray[np.uint8], expected: NDArray[np.int64]
) -> dict[str, Row]:
    started = time.perf_counter()
    ray.init(
        num_cpus=os.cpu_count(),
        include_dashboard=False,
        logging_level=logging.ERROR,
        log_to_driver=False,
    )
    start_seconds = time.perf_counter() - started
    rows: dict[str, Row] = {}
    try:
        for actors in (1, 2):
            tiny = _job(model, images[:TINY], expected[:TINY], actors)
            whole = _job(model, images, expected, actors)
            rows[f"ray-{actors}"] = {
                "workers": actors,
                "seconds": whole,
                "images_per_second": len(images) / whole,
                "job_fixed_seconds": tiny,
                "start_seconds": start_seconds,
            }
        with tempfile.TemporaryDirectory(prefix="scale-") as folder:
            written = _job(model, images, expected, 2, Path(folder) / "out.parquet")
        rows["ray-2-parquet"] = {
            "workers": 2,
            "seconds": written,
            "images_per_second": len(images) / written,
        }
    finally:
        stopping = time.perf_counter()
        ray.shutdown()
        stop_seconds = time.perf_counter() - stopping
    for row in rows.values():
        row["stop_seconds"] = stop_seconds
        row.setdefault("start_seconds", start_seconds)
    return rows


def _job(
    model: Path,
    images: NDArray[np.uint8],
    expected: NDArray[np.int64],
    actors: int,
    output: Path | None = None,
) -> float:
    source = Source("set", "synthetic", "test", images=images)
    run = score_on_ray(source, model, actors=actors, batch_size=BATCH, output=output)
    _check(run.labels, expected, f"ray, {actors} actors")
    what = f"{actors} actor(s)" + (", Parquet" if output else "")
    print(f"  ray {what}: {len(images):,} images in {run.seconds:.2f} s", flush=True)
    return float(run.seconds)


def _servers(
    model: Path, images: NDArray[np.uint8], expected: NDArray[np.int64], logs: Path
) -> dict[str, Row]:
    rows: dict[str, Row] = {}
    for replicas in (1, 2):
        started = time.perf_counter()
        servers = [
            ServerProcess.start(model, "--threads", "1", stdout=logs / f"server-{index}.log")
            for index in range(replicas)
        ]
        start_seconds = (time.perf_counter() - started) / replicas
        try:
            # One server: its stream (today's path) and one call per batch (the replicas' path).
            modes: dict[str, str] = {}
            if replicas == 1:
                modes["server-1-stream"] = servers[0].target
                modes["server-1-calls"] = f"ipv4:{servers[0].target}"
            else:
                modes["server-2-calls"] = ",".join(server.target for server in servers)
            for key, target in modes.items():
                seconds = _score(target, images, expected, key)
                rows[key] = {
                    "workers": replicas,
                    "seconds": seconds,
                    "images_per_second": len(images) / seconds,
                    "start_seconds": start_seconds,
                }
        finally:
            stopping = time.perf_counter()
            codes = [server.stop() for server in servers]
            stop_seconds = (time.perf_counter() - stopping) / replicas
        if any(codes):
            raise ScratchnetError(f"a server exited with {codes}: see {logs}")
        for key in (k for k in rows if k.startswith(f"server-{replicas}")):
            rows[key]["stop_seconds"] = stop_seconds
    return rows


def _score(target: str, images: NDArray[np.uint8], expected: NDArray[np.int64], key: str) -> float:
    with Client(target, timeout=120) as client:
        client.model_info()  # connected before the clock starts, as the Ray jobs' actors are not
        result = score(client, images)
    assert result.prediction is not None
    _check(result.prediction.labels, expected, key)
    print(f"  {key}: {len(images):,} images in {result.seconds:.2f} s", flush=True)
    return result.seconds


def _check(found: NDArray[np.int64], expected: NDArray[np.int64], what: str) -> None:
    if not np.array_equal(found, expected):
        wrong = int(np.sum(found != expected)) if found.shape == expected.shape else len(expected)
        raise ScratchnetError(f"{what}: {wrong} labels differ from onnxruntime in process")


def _add(samples: dict[str, list[Row]], key: str, row: Row) -> None:
    samples.setdefault(key, []).append(row)


def _medians(rows: list[Row]) -> Row:
    numbers = [name for name, value in rows[0].items() if isinstance(value, int | float)]
    return {name: statistics.median(row[name] for row in rows) for name in numbers}


def _machine(load_before: tuple[float, float, float]) -> dict[str, Any]:
    models = re.findall(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M)
    return {
        "cpus": os.cpu_count(),
        "cpu_model": models[0] if models else platform.processor(),
        "python": platform.python_version(),
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
    }


if __name__ == "__main__":
    run_cli(PROGRAM, main)
