"""Serving benchmark: scratchnet's server next to peer servers and to in-process onnxruntime (the
ceiling), in one run, all loaded by the same client (clients.perf) over the Open Inference Protocol.

    .venv/bin/python bench/serving.py [--peers] [--repeats 3] [--seconds 3]

Scenarios, each the median of --repeats runs of --seconds after a warm-up; in each repeat every
contender runs alone in its turn (a server is started, measured in all scenarios and stopped):
  S1  batch 1000 float32 images, 1 call in flight: images/s (and the uint8 model, ours only)
  S2  batch 1, 1 call in flight: latency p50 / p99
  S3  batch 1, 32 calls in flight: requests/s and p99
Servers: ours with default flags and with --threads 1; a bare grpc.aio + onnxruntime ModelInfer
(bench/peers/bare_server.py), and the same on grpc's synchronous server; with --peers, KServe and
PyTriton from build/peers-venv (`make bench-peers`). Requests are ModelInfer with
raw_input_contents asking for label and scores; the first reply to each distinct request is
checked against in-process onnxruntime every repeat, and every later reply must equal it. Writes
bench/results/serving.json (bench/report.py renders it).
"""

from __future__ import annotations

import contextlib
import datetime
import importlib.metadata
import json
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from report import render, write_results

from clients.perf import (
    Measurement,
    ModelSpec,
    Plan,
    build_plan,
    in_shared_memory,
    measure,
    wait_answering,
)
from clients.shared_memory import Region, registered
from scratchnet.cli import ArgumentParser, integer, non_negative_number, positive_number, run_cli
from scratchnet.contract import LABEL, SCORES
from scratchnet.errors import ClientError, LaunchError, ScratchnetError
from scratchnet.files import check_writable
from scratchnet.launcher import ServerProcess

PROGRAM = "bench/serving.py"
ROOT = Path(__file__).resolve().parent.parent
PEERS = ROOT / "bench" / "peers"
MODEL_NAME = "scratchnet"
OUTPUTS = (LABEL, SCORES)
"""The classifier outputs every contender returns (the model contract's names)."""
START_SECONDS = 120.0  # Triton takes several seconds to load the Python backend
CALL_TIMEOUT = 10.0
# Scores from different onnxruntime sessions and batch compositions agree to rounding.
SCORE_TOLERANCE = 1e-5
# The launcher runs `sys.executable *python_args --model M --host H --port 0 ...`: this hands the
# rest of that command line to the peers' interpreter, isolated (-I) so that our PYTHONPATH, whose
# packages have generic names (server, export, ...), stays out of the peers' imports.
_EXEC = "import os, sys; os.execv(sys.argv[1], sys.argv[1:])"


@dataclass(frozen=True)
class Scenario:
    """A load shape: images per request and calls in flight."""

    id: str
    title: str
    batch: int
    concurrency: int
    distinct: int
    """Different requests sent in turn (fewer at large batches, to bound memory)."""


SCENARIOS = (
    Scenario("S1", "batch 1000, 1 call in flight", 1000, 1, 4),
    Scenario("S2", "batch 1, 1 call in flight", 1, 1, 8),
    Scenario("S3", "batch 1, 32 calls in flight", 1, 32, 8),
)


@dataclass
class Contender:
    """One way of answering: a server (started by `start`) or onnxruntime in process."""

    id: str
    row: str
    """The table row it is shown in (the uint8 model's figures go in the float row's column)."""
    label: str
    model: Path
    scenarios: tuple[str, ...]
    command: list[str] | None = None
    python_args: tuple[str, ...] = ("-m", "server")
    args: tuple[str, ...] = ()
    ceiling: str = "in-process"
    """The in-process contender this one is compared with (the same model)."""
    peer: str | None = None
    """The peer's PyPI package, whose version is recorded."""
    api: str = "v2"
    """v2: ModelInfer; v1: scratchnet.v1 Predict (ours only)."""
    shared_memory: bool = False
    """Images through Triton's system shared-memory extension (ours only)."""
    skipped: str = ""
    """Why a peer is left out (it did not start), if it is."""


def main() -> int:
    """Measure, write the results file and print the table."""
    parser = ArgumentParser(prog=PROGRAM, description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=Path("artifacts/model.onnx"))
    parser.add_argument("--uint8-model", type=Path, default=Path("artifacts/model_uint8.onnx"))
    parser.add_argument("--peers", action="store_true", help="also KServe and PyTriton")
    parser.add_argument("--peers-venv", type=Path, default=Path("build/peers-venv"))
    parser.add_argument("--repeats", type=integer(1), default=3, help="default 3")
    parser.add_argument("--seconds", type=positive_number, default=3.0, help="per repeat (3)")
    parser.add_argument(
        "--warmup", type=non_negative_number, default=1.0, help="per repeat, 0 for none (1)"
    )
    parser.add_argument(
        "--only",
        metavar="ID,…",
        help="comma-separated contender ids (for development; the in-process ceiling always runs)",
    )
    parser.add_argument("--output", type=Path, default=Path("bench/results/serving.json"))
    parser.add_argument("--logs", type=Path, default=Path("build/serving-logs"))
    args = parser.parse_args()
    check_writable(args.output)
    contenders, skipped = _contenders(args)
    if args.only is not None:
        contenders = _only(args.only, contenders, skipped)
    for path in (args.model, args.uint8_model):
        if not path.is_file():
            raise ScratchnetError(
                f"{path} not found: `python -m trainer && python -m export && python -m export "
                f"--input-dtype uint8 -o {args.uint8_model}` (or `make bench`)"
            )
    sessions = {path: _session(path) for path in (args.model, args.uint8_model)}
    plans = {
        (scenario.id, path, api): _plan(sessions[path], scenario, api)
        for scenario in SCENARIOS
        for path in sessions
        for api in ("v1", "v2")
    }
    load_before = os.getloadavg()
    memory: dict[str, dict[str, float]] = {}
    rows = _measure_all(contenders, plans, sessions, args, memory)
    skipped += [{"id": c.id, "reason": c.skipped} for c in contenders if c.skipped]
    contenders = [c for c in contenders if not c.skipped]
    results = {
        "benchmark": "serving",
        "command": shlex.join(["python", *sys.argv]),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": _machine(load_before),
        "versions": _versions(contenders, args),
        "settings": {
            "repeats": args.repeats,
            "seconds": args.seconds,
            "warmup_seconds": args.warmup,
            "model": str(args.model),
            "uint8_model": str(args.uint8_model),
            "client": "clients.perf (grpc.aio, one channel, pre-serialised requests): ModelInfer, "
            "raw_input_contents, outputs label and scores",
            "in_process": "onnxruntime, 1 intra-op thread, one call after another",
        },
        "scenarios": [vars(scenario) for scenario in SCENARIOS],
        "contenders": [
            {"id": c.id, "row": c.row, "label": c.label, "command": c.command} for c in contenders
        ],
        "skipped": skipped,
        "results": rows,
        "memory": memory,
    }
    write_results(args.output, results)
    print(f"\nwrote {args.output}\n\n{render(results)}")
    failed = [row for row in rows if row["errors"] or not row["check"]["ok"]]
    return 1 if failed else 0


def _only(only: str, contenders: list[Contender], skipped: list[dict[str, str]]) -> list[Contender]:
    """The in-process contenders and the servers `only` names; an id that names no contender
    is refused before anything runs (a typo would otherwise measure the ceiling alone)."""
    known = [c.id for c in contenders if c.command is not None] + [s["id"] for s in skipped]
    wanted = [name.strip() for name in only.split(",") if name.strip()]
    unknown = [name for name in wanted if name not in known]
    if unknown or not wanted:
        given = f"unknown contender id {', '.join(map(repr, unknown))}" if unknown else "no id"
        raise ScratchnetError(f"--only: {given}: expected some of {', '.join(known)}")
    return [c for c in contenders if c.id in wanted or c.command is None]


def _contenders(args: Any) -> tuple[list[Contender], list[dict[str, str]]]:
    contenders = [
        Contender(
            id="in-process",
            row="in-process",
            label="onnxruntime in process, 1 thread (the ceiling)",
            model=args.model,
            scenarios=_ALL,
        ),
        Contender(
            id="in-process-uint8",
            row="in-process",
            label="",
            model=args.uint8_model,
            scenarios=("S1",),
            ceiling="in-process-uint8",
        ),
    ]
    for flags, suffix, label in (
        ((), "", "default flags"),
        (("--threads", "1"), "-threads1", "--threads 1"),
    ):
        for model, kind, scenarios in (
            (args.model, "", _ALL),
            (args.uint8_model, "-uint8", ("S1",)),
        ):
            contenders.append(
                Contender(
                    id=f"scratchnet{suffix}{kind}",
                    row=f"scratchnet{suffix}",
                    label=f"scratchnet, {label}" if not kind else "",
                    model=model,
                    scenarios=scenarios,
                    command=["python", "-m", "server", "--model", str(model), *flags],
                    args=flags,
                    ceiling=f"in-process{kind}",
                )
            )
    contenders += [
        Contender(
            id="scratchnet-v1",
            row="scratchnet-v1",
            label="scratchnet, default flags, scratchnet.v1 Predict",
            model=args.model,
            scenarios=_ALL,
            command=["python", "-m", "server", "--model", str(args.model)],
            api="v1",
        ),
        Contender(
            id="scratchnet-shm",
            row="scratchnet-shm",
            label="scratchnet, default flags, images in shared memory (S1)",
            model=args.model,
            scenarios=("S1",),
            command=["python", "-m", "server", "--model", str(args.model)],
            shared_memory=True,
        ),
    ]
    bare = PEERS / "bare_server.py"
    for suffix, sync, label in (
        ("", False, "bare grpc.aio + onnxruntime, ModelInfer only"),
        ("-sync", True, "bare synchronous grpc (4 threads) + onnxruntime, ModelInfer only"),
    ):
        bare_flags = ("--sync",) if sync else ()
        command = ["python", str(bare.relative_to(ROOT)), "--model", str(args.model), *bare_flags]
        contenders.append(
            Contender(
                id=f"bare{suffix}",
                row=f"bare{suffix}",
                label=label,
                model=args.model,
                scenarios=_ALL,
                command=command,
                python_args=(str(bare),),
                args=bare_flags,
            )
        )
    skipped: list[dict[str, str]] = []
    python = args.peers_venv / "bin" / "python"
    for peer, package, label in (
        ("kserve", "kserve", "KServe"),
        ("pytriton", "nvidia-pytriton", "PyTriton"),
    ):
        if not args.peers:
            skipped.append({"id": peer, "reason": "not asked for: pass --peers"})
        elif not python.exists():
            reason = f"{python} not found: run `make bench-peers` first"
            skipped.append({"id": peer, "reason": reason})
        else:
            script = PEERS / f"{peer}_server.py"
            contenders.append(
                Contender(
                    id=peer,
                    row=peer,
                    label=label,
                    model=args.model,
                    scenarios=_ALL,
                    command=[
                        str(python),
                        str(script.relative_to(ROOT)),
                        "--model",
                        str(args.model),
                    ],
                    python_args=("-c", _EXEC, str(python.absolute()), "-I", str(script)),
                    peer=package,
                )
            )
    return contenders, skipped


_ALL = tuple(scenario.id for scenario in SCENARIOS)


def _session(path: Path) -> Any:
    """An onnxruntime session on `path`, 1 thread; a file onnxruntime cannot load is a
    ScratchnetError (one line and exit 2 under run_cli), not onnxruntime's traceback."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime raises its own unrelated classes for bad files
        lines = str(error).strip().splitlines()
        # Without onnxruntime's "[ONNXRuntimeError] : 7 : " prefix: "INVALID_PROTOBUF : Load ..."
        reason = re.sub(r"^\[ONNXRuntimeError\] : \d+ : ", "", lines[0]) if lines else ""
        raise ScratchnetError(
            f"{path}: not an ONNX model onnxruntime can load ({reason or type(error).__name__})"
        ) from None


def _spec(session: Any) -> ModelSpec:
    image = session.get_inputs()[0]
    datatype = {"tensor(float)": "FP32", "tensor(uint8)": "UINT8"}.get(image.type)
    shape = image.shape[1:]
    if datatype is None or not shape or not all(isinstance(size, int) for size in shape):
        raise ScratchnetError(
            f"the model's input '{image.name}' is {image.type} {image.shape}: expected float32 or "
            "uint8 images, fixed sizes after the batch (as the article model's [-1, 28, 28])"
        )
    dims = tuple(int(size) for size in shape)
    # Version "" is "the one served" for every server here.
    return ModelSpec(MODEL_NAME, "", image.name, dims, (datatype,), OUTPUTS)


def _plan(session: Any, scenario: Scenario, api: str) -> Plan:
    spec = _spec(session)
    return build_plan(spec, api, scenario.batch, outputs=OUTPUTS, count=scenario.distinct)


def note_memory(memory: dict[str, dict[str, float]], key: str, idle_mb: float, pid: int) -> None:
    """Keep, under `key`, the lowest idle RSS and the highest peak of a server over the repeats
    (its peak read now, from process `pid`)."""
    seen = memory.setdefault(key, {"idle_mb": idle_mb, "peak_mb": 0.0})
    seen["idle_mb"] = min(seen["idle_mb"], idle_mb)
    seen["peak_mb"] = max(seen["peak_mb"], _rss_mb(pid)[1])


def _rss_mb(pid: int) -> tuple[float, float]:
    """A process's resident memory now and at its peak (VmRSS, VmHWM), in MB."""
    status = Path(f"/proc/{pid}/status").read_text()
    found = dict(re.findall(r"^(VmRSS|VmHWM):\s*(\d+) kB", status, re.M))
    return int(found["VmRSS"]) / 1024, int(found["VmHWM"]) / 1024


@contextlib.contextmanager
def _serving(contender: Contender, plan: Plan, logs: Path) -> Iterator[tuple[str, int]]:
    """Start the contender's server and yield its HOST:PORT and process id once it answers
    `plan`'s first request; stop it on leaving. Nothing to start (and "", 0) in process."""
    if contender.command is None:
        yield "", 0
        return
    log = logs / f"{contender.id}.log"
    print(f"starting {contender.id}: {shlex.join(contender.command)}", flush=True)
    with ServerProcess.start(
        contender.model,
        *contender.args,
        stdout=log,
        serving=False,
        timeout=START_SECONDS,
        python_args=contender.python_args,
    ) as server:

        def alive() -> None:
            if server.process.poll() is not None:
                code = server.process.returncode
                raise LaunchError(f"{contender.id} exited with code {code} (see {log})")

        # Ready once it answers an inference: the one readiness signal every contender has.
        wait_answering(server.target, plan, START_SECONDS, alive)
        yield server.target, server.pid


def _measure_all(
    contenders: list[Contender],
    plans: dict[tuple[str, Path, str], Plan],
    sessions: dict[Path, Any],
    args: Any,
    memory: dict[str, dict[str, float]],
) -> list[dict[str, Any]]:
    """Each repeat runs one contender at a time, alone on the machine (an idle server still
    takes some CPU), through every scenario; a peer that does not start is marked skipped."""
    runs: dict[tuple[str, str], list[Measurement]] = {}
    checks: dict[tuple[str, str], list[float | None]] = {}
    for repeat in range(args.repeats):
        # A different contender goes first each repeat, so drift in the machine's load is shared.
        turn = repeat % len(contenders)
        for contender in contenders[turn:] + contenders[:turn]:
            if contender.skipped:
                continue
            session = sessions[contender.model]
            try:
                first = plans[("S2", contender.model, contender.api)]
                with _serving(contender, first, args.logs) as (target, pid):
                    if pid:
                        idle = _rss_mb(pid)[0]
                    for scenario in SCENARIOS:
                        if scenario.id not in contender.scenarios:
                            continue
                        plan = plans[(scenario.id, contender.model, contender.api)]
                        key = (scenario.id, contender.id)
                        if contender.command is None:
                            result = _in_process(session, plan, args.seconds, args.warmup)
                        else:
                            regions: list[Region] = []
                            if contender.shared_memory:
                                plan, regions = in_shared_memory(plan, _spec(session))
                            with registered(target, regions, CALL_TIMEOUT):
                                result = measure(
                                    target,
                                    plan,
                                    concurrency=scenario.concurrency,
                                    duration=args.seconds,
                                    warmup=args.warmup,
                                    timeout=CALL_TIMEOUT,
                                )
                            checks.setdefault(key, []).extend(_check(plan, result, session))
                        runs.setdefault(key, []).append(result)
                        step = f"{repeat + 1}/{args.repeats} {scenario.id} {contender.id}"
                        print(f"{step}: {_brief(result)}", flush=True)
                    if pid:
                        note_memory(memory, contender.id, idle, pid)
            except (LaunchError, ClientError) as error:
                if contender.peer is None:
                    raise
                contender.skipped = str(error)
                print(f"skipping {contender.id}: {error}", flush=True)
    return [
        _row(scenario, c, runs, checks)
        for scenario in SCENARIOS
        for c in contenders
        if scenario.id in c.scenarios and not c.skipped
    ]


def _in_process(session: Any, plan: Plan, seconds: float, warmup: float) -> Measurement:
    """The ceiling: the requests' images through onnxruntime, no network, one call at a time."""
    name = session.get_inputs()[0].name
    feeds = [{name: images} for images in plan.images]
    outputs = list(plan.outputs)
    result = Measurement(plan.batch, 1, seconds=0.0)
    start = time.perf_counter()
    window, end = start + warmup, start + warmup + seconds
    cpu = 0.0
    index = 0
    while (began := time.perf_counter()) < end:
        if began >= window and not result.latencies:
            cpu = time.process_time()
        session.run(outputs, feeds[index % len(feeds)])
        index += 1
        if began >= window:
            result.latencies.append(time.perf_counter() - began)
            result.seconds = time.perf_counter() - window
    result.cpu_seconds = time.process_time() - cpu
    return result


def _check(plan: Plan, result: Measurement, session: Any) -> list[float | None]:
    """Largest score difference from onnxruntime in process, per request answered; None where
    the labels differ or an output is missing."""
    name = session.get_inputs()[0].name
    found: list[float | None] = []
    for index, reply in sorted(result.first_replies.items()):
        label, scores = session.run(list(OUTPUTS), {name: plan.images[index]})
        got = plan.decode(reply)
        complete = LABEL in got and SCORES in got
        if not complete or not np.array_equal(got[LABEL].reshape(-1), label):
            found.append(None)
        else:
            found.append(float(np.max(np.abs(got[SCORES].reshape(scores.shape) - scores))))
    return found


def _brief(result: Measurement) -> str:
    figures = result.summary()
    latency = figures["latency_ms"]
    return (
        f"{figures['requests_per_second']:,.1f} req/s, {figures['images_per_second']:,.0f} img/s, "
        f"p50 {latency.get('p50', float('nan')):.3f} ms, p99 {latency.get('p99', float('nan')):.3f}"
        f" ms, {figures['errors']} errors"
    )


def _row(
    scenario: Scenario,
    contender: Contender,
    runs: dict[tuple[str, str], list[Measurement]],
    checks: dict[tuple[str, str], list[float | None]],
) -> dict[str, Any]:
    summaries = [run.summary() for run in runs[(scenario.id, contender.id)]]
    ceilings = [run.summary() for run in runs[(scenario.id, contender.ceiling)]]
    figures = {name: [_figure(s, name) for s in summaries] for name in _FIGURES}
    # Ratios per repeat (the contenders of a repeat ran side by side), then their median.
    ratios = {
        name: statistics.median(
            _figure(s, name) / _figure(c, name) for s, c in zip(summaries, ceilings, strict=True)
        )
        for name in _FIGURES[:4]
    }
    differences = checks.get((scenario.id, contender.id), [])
    measured = [d for d in differences if d is not None]
    return {
        "scenario": scenario.id,
        "contender": contender.id,
        "row": contender.row,
        "datatype": "UINT8" if contender.ceiling.endswith("uint8") else "FP32",
        "median": {name: statistics.median(values) for name, values in figures.items()},
        "vs_in_process": ratios,
        "errors": sum(s["errors"] for s in summaries),
        "errors_by_code": _add_up(s["errors_by_code"] for s in summaries),
        "check": {
            "replies_checked": len(differences),
            "ok": contender.command is None or (bool(differences) and None not in differences),
            "max_score_difference": max(measured, default=None),
        },
        "repeats": summaries,
    }


_FIGURES = (
    "requests_per_second",
    "images_per_second",
    "p50_ms",
    "p99_ms",
    "client_cpu_ms_per_request",
)


def _figure(summary: dict[str, Any], name: str) -> float:
    if name.endswith("_ms"):
        return float(summary["latency_ms"].get(name.removesuffix("_ms"), np.nan))
    return float(summary[name] or 0.0)


def _add_up(counts: Iterable[dict[str, int]]) -> dict[str, int]:
    total: dict[str, int] = {}
    for count in counts:
        for code, n in count.items():
            total[code] = total.get(code, 0) + n
    return total


def _machine(load_before: tuple[float, float, float]) -> dict[str, Any]:
    cpuinfo = Path("/proc/cpuinfo")
    models = re.findall(r"^model name\s*:\s*(.+)$", cpuinfo.read_text(), re.M)
    meminfo = Path("/proc/meminfo").read_text()
    memory = re.search(r"^MemTotal:\s*(\d+) kB", meminfo, re.M)
    return {
        "cpus": os.cpu_count(),
        "cpu_model": models[0] if models else platform.processor(),
        "memory_gib": round(int(memory.group(1)) / 2**20, 1) if memory else None,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
    }


def _versions(contenders: list[Contender], args: Any) -> dict[str, str]:
    versions = {name: importlib.metadata.version(name) for name in _OUR_PACKAGES}
    peers = [c.peer for c in contenders if c.peer is not None]
    if peers:
        python = args.peers_venv / "bin" / "python"
        code = (
            "import importlib.metadata as m, json, sys; "
            "print(json.dumps({p: m.version(p) for p in sys.argv[1:]}))"
        )
        found = subprocess.run(
            [str(python), "-I", "-c", code, *peers, "onnxruntime", "numpy", "grpcio"],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        versions |= {f"peers: {name}": v for name, v in json.loads(found.stdout).items()}
    for contender in contenders:
        log = args.logs / f"{contender.id}.log"
        if contender.id == "pytriton" and log.exists():
            triton = re.search(r"server_version\s*\|\s*(\S+)", log.read_text(errors="replace"))
            versions["peers: tritonserver"] = triton.group(1) if triton else "unknown"
    return versions


_OUR_PACKAGES = ("onnxruntime", "grpcio", "numpy", "protobuf")


if __name__ == "__main__":
    run_cli(PROGRAM, main)
