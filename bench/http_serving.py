"""HTTP serving benchmark: scratchnet's REST binding of the Open Inference Protocol next to
KServe's REST server and to in-process onnxruntime (the ceiling), on the same model, in one run.

    .venv/bin/python bench/http_serving.py [--repeats 3] [--seconds 3]   # after make bench-peers

Scenarios, each the median of --repeats runs of --seconds after a warm-up; in each repeat every
contender runs alone in its turn (a server is started, measured in all scenarios and stopped):
  H1  batch 1000 float32 images as binary tensor data, outputs label and scores as binary: images/s
  H2  the same batch as JSON tensors, JSON outputs: images/s
  H3  batch 1 as JSON, 1 call in flight: latency p50 / p99
  H4  batch 1 as JSON, 16 calls in flight (16 keep-alive connections): requests/s, p99
Contenders: scratchnet's HTTP port (default flags; its gRPC port too, through clients.perf, where
the scenario has a gRPC twin); scratchnet's app on uvicorn's pure-Python h11 parser and asyncio
loop instead of httptools (bench/peers/http_stack.py: what the parser is worth);
KServe's REST server (bench/peers/kserve_server.py in build/peers-venv, `make bench-peers`).
The load generator keeps its requests as bytes and its connections open; the first reply to each
distinct request is checked against onnxruntime in process, every later one must equal it.
Writes bench/results/http.json, which `bench/report.py bench/results/http.json` renders.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import math
import os
import shlex
import statistics
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
from numpy.typing import NDArray
from report import render_http, write_results
from serving import (
    _EXEC,
    MODEL_NAME,
    OUTPUTS,
    PEERS,
    SCORE_TOLERANCE,
    START_SECONDS,
    _machine,
    _session,
    _spec,
)

from clients.perf import MISMATCH, Measurement, ModelSpec, Plan, build_plan, measure
from scratchnet.cli import ArgumentParser, integer, non_negative_number, positive_number, run_cli
from scratchnet.contract import LABEL, SCORES
from scratchnet.datasets import load_dataset
from scratchnet.errors import LaunchError, ScratchnetError
from scratchnet.files import check_writable
from scratchnet.launcher import ServerProcess

PROGRAM = "bench/http_serving.py"
CALL_TIMEOUT = 30.0


@dataclass(frozen=True)
class Scenario:
    """A load shape: images per request, how they travel, calls in flight."""

    id: str
    title: str
    batch: int
    binary: bool
    concurrency: int
    distinct: int


SCENARIOS = (
    Scenario("H1", "batch 1000, binary tensors", 1000, True, 1, 4),
    Scenario("H2", "batch 1000, JSON tensors", 1000, False, 1, 4),
    Scenario("H3", "batch 1, JSON, 1 in flight", 1, False, 1, 8),
    Scenario("H4", "batch 1, JSON, 16 in flight", 1, False, 16, 8),
)
GRPC_TWINS = {"H1": "H1", "H3": "H3", "H4": "H4"}
"""Scenarios also measured over scratchnet's gRPC port (raw tensors, the nearest twin of each)."""


@dataclass(frozen=True)
class Contender:
    """A way of answering: onnxruntime in process, or a server started with `python_args`."""

    id: str
    label: str
    python_args: tuple[str, ...] = ()
    peer: bool = False

    @property
    def in_process(self) -> bool:
        return not self.python_args


@dataclass(frozen=True)
class Requests:
    """One scenario's distinct requests as bytes (with their HTTP head) and their images."""

    raw: tuple[bytes, ...]
    images: tuple[NDArray[np.float32], ...]
    input_name: str


def main() -> int:
    """Measure every contender, write the results and print the table."""
    parser = ArgumentParser(prog=PROGRAM, description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=Path("artifacts/model.onnx"))
    parser.add_argument("--peers-venv", type=Path, default=Path("build/peers-venv"))
    parser.add_argument("--repeats", type=integer(1), default=3, help="default 3")
    parser.add_argument("--seconds", type=positive_number, default=3.0, help="per repeat (3)")
    parser.add_argument(
        "--warmup", type=non_negative_number, default=1.0, help="per repeat, 0 for none (1)"
    )
    parser.add_argument("--output", type=Path, default=Path("bench/results/http.json"))
    parser.add_argument("--logs", type=Path, default=Path("build/http-serving-logs"))
    args = parser.parse_args()
    check_writable(args.output)
    if not args.model.is_file():
        raise ScratchnetError(f"{args.model} not found: `python -m trainer && python -m export`")
    python = args.peers_venv / "bin" / "python"
    contenders = [
        Contender("in-process", "onnxruntime in process, 1 thread (the ceiling)"),
        Contender(
            "scratchnet", "scratchnet (Starlette on uvicorn with httptools)", ("-m", "server")
        ),
        Contender(
            "scratchnet-h11",
            "scratchnet's app on uvicorn's h11 and asyncio",
            (str(PEERS / "http_stack.py"),),
        ),
    ]
    skipped = []
    if python.exists():
        script = PEERS / "kserve_server.py"
        contenders.append(
            Contender(
                "kserve",
                "KServe REST (FastAPI on uvicorn)",
                ("-c", _EXEC, str(python.absolute()), "-I", str(script)),
                peer=True,
            )
        )
    else:
        skipped.append({"id": "kserve", "reason": f"{python} not found: run `make bench-peers`"})
    session = _session(args.model)
    spec = _spec(session)
    if spec.datatypes[0] != "FP32":
        raise ScratchnetError(
            f"{args.model}: input '{spec.input_name}' is {spec.datatypes[0]}: this benchmark "
            "sends float32 images"
        )
    pixels = _pixels(spec)
    plans = {s.id: _requests(s, pixels, spec.input_name) for s in SCENARIOS}
    # The same images over scratchnet's gRPC port, raw tensors, built once as the HTTP requests are.
    twins = {
        s.id: build_plan(spec, "v2", s.batch, outputs=OUTPUTS, count=s.distinct, pixels=pixels)
        for s in SCENARIOS
        if s.id in GRPC_TWINS
    }
    load_before = os.getloadavg()
    rows = _measure_all(contenders, plans, twins, session, args)
    results = {
        "benchmark": "http",
        "command": shlex.join(["python", *sys.argv]),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": _machine(load_before),
        "versions": _versions(python if python.exists() else None),
        "settings": {
            "repeats": args.repeats,
            "seconds": args.seconds,
            "warmup_seconds": args.warmup,
            "model": str(args.model),
            "client": "asyncio keep-alive connections, one call in flight on each, requests "
            "serialised once; outputs label and scores",
        },
        "scenarios": [vars(s) for s in SCENARIOS],
        "contenders": [{"id": c.id, "label": c.label} for c in contenders],
        "skipped": skipped,
        "results": rows,
    }
    write_results(args.output, results)
    print(f"\nwrote {args.output}\n\n{render_http(results)}")
    return 1 if any(r["errors"] or not r["check_ok"] for r in rows) else 0


def _pixels(spec: ModelSpec) -> NDArray[np.uint8]:
    """The bundled test images in the shape of one of the model's inputs."""
    pixels = np.asarray(load_dataset(None).test_images, dtype=np.uint8)
    if math.prod(pixels.shape[1:]) != math.prod(spec.image_dims):
        raise ScratchnetError(
            f"the model's input '{spec.input_name}' takes {list(spec.image_dims)} images, the "
            f"bundled ones are {list(pixels.shape[1:])}"
        )
    return pixels.reshape(len(pixels), *spec.image_dims)


def _requests(scenario: Scenario, pixels: NDArray[np.uint8], input_name: str) -> Requests:
    """The scenario's distinct requests: test images as float32 in [0, 1]."""
    raw, images = [], []
    for index in range(scenario.distinct):
        chunk = pixels[index * scenario.batch : (index + 1) * scenario.batch]
        batch = (chunk / 255.0).astype(np.float32)
        tensor: dict[str, Any] = {
            "name": input_name,
            "shape": list(batch.shape),
            "datatype": "FP32",
        }
        outputs = [
            {"name": name, "parameters": {"binary_data": scenario.binary}} for name in OUTPUTS
        ]
        tail = b""
        if scenario.binary:
            tail = batch.tobytes()
            tensor["parameters"] = {"binary_data_size": len(tail)}
        else:
            tensor["data"] = batch.ravel().tolist()
        # An id, which every server echoes: the replies to one request are then equal bytes.
        head = json.dumps({"id": f"r{index}", "inputs": [tensor], "outputs": outputs}).encode()
        # JSON followed by binary data is not JSON: KServe's FastAPI answers 400 if told it is.
        kind = "application/octet-stream" if scenario.binary else "application/json"
        headers = f"Content-Type: {kind}\r\nContent-Length: {len(head) + len(tail)}\r\n"
        if scenario.binary:
            headers += f"Inference-Header-Content-Length: {len(head)}\r\n"
        path = f"/v2/models/{MODEL_NAME}/infer"
        start = f"POST {path} HTTP/1.1\r\nHost: bench\r\n{headers}\r\n".encode()
        raw.append(start + head + tail)
        images.append(batch)
    return Requests(tuple(raw), tuple(images), input_name)


async def _read_reply(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        if ": " in line:
            name, value = line.split(": ", 1)
            headers[name.lower()] = value
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return int(lines[0].split()[1]), headers, body


def _http_measure(
    url: str, requests: Requests, concurrency: int, duration: float, warmup: float
) -> tuple[Measurement, dict[int, tuple[dict[str, str], bytes]]]:
    """`concurrency` connections, one call in flight on each, for warmup + duration seconds."""
    host, port = urlsplit(url).hostname or "", urlsplit(url).port or 80
    result = Measurement(len(requests.images[0]), concurrency, seconds=0.0)
    firsts: dict[int, tuple[dict[str, str], bytes]] = {}

    async def run() -> None:
        start = time.perf_counter()
        window, end = start + warmup, start + warmup + duration
        cpu: list[float] = []
        last_done = window

        async def connection(first: int) -> None:
            nonlocal last_done
            reader, writer = await asyncio.open_connection(host, port)
            index = first
            try:
                while (began := time.perf_counter()) < end:
                    if began >= window and not cpu:
                        cpu.append(time.process_time())
                    key = index % len(requests.raw)
                    index += concurrency
                    writer.write(requests.raw[key])
                    status, headers, body = await asyncio.wait_for(
                        _read_reply(reader), CALL_TIMEOUT
                    )
                    code = None if status == 200 else str(status)
                    if code is None:
                        seen = firsts.setdefault(key, (headers, body))
                        code = None if seen[1] == body else MISMATCH
                    done = time.perf_counter()
                    if began < window:
                        continue
                    last_done = max(last_done, done)
                    if code is None:
                        result.latencies.append(done - began)
                    else:
                        result.errors[code] = result.errors.get(code, 0) + 1
            finally:
                writer.close()

        await asyncio.gather(*(connection(first) for first in range(concurrency)))
        result.seconds = last_done - window
        result.cpu_seconds = time.process_time() - (cpu or [time.process_time()])[0]

    asyncio.run(run())
    return result, firsts


def _decode(headers: dict[str, str], body: bytes) -> dict[str, NDArray[Any]]:
    """The outputs of one reply, JSON data or binary after the JSON."""
    length = headers.get("inference-header-content-length")
    document = json.loads(body if length is None else body[: int(length)])
    tail = b"" if length is None else body[int(length) :]
    dtypes = {"FP32": np.float32, "INT64": np.int64}
    found, offset = {}, 0
    for output in document["outputs"]:
        dtype = dtypes[output["datatype"]]
        size = (output.get("parameters") or {}).get("binary_data_size")
        if size is None:
            value = np.asarray(output["data"], dtype=dtype)
        else:
            value = np.frombuffer(tail[offset : offset + size], dtype=dtype)
            offset += size
        found[output["name"]] = value.reshape(output["shape"])
    return found


def _check(
    requests: Requests, firsts: dict[int, tuple[dict[str, str], bytes]], session: Any
) -> tuple[bool, float | None]:
    """Whether every first reply has onnxruntime's labels and scores (within tolerance)."""
    worst = 0.0
    for key, (headers, body) in firsts.items():
        label, scores = session.run(list(OUTPUTS), {requests.input_name: requests.images[key]})
        got = _decode(headers, body)
        if not np.array_equal(got[LABEL].reshape(-1), label):
            return False, None
        worst = max(worst, float(np.max(np.abs(got[SCORES] - scores))))
    return bool(firsts) and worst <= SCORE_TOLERANCE, worst


def _in_process(session: Any, requests: Requests, seconds: float, warmup: float) -> Measurement:
    feeds = [{requests.input_name: images} for images in requests.images]
    result = Measurement(len(requests.images[0]), 1, seconds=0.0)
    start = time.perf_counter()
    window, end = start + warmup, start + warmup + seconds
    index = 0
    while (began := time.perf_counter()) < end:
        session.run(list(OUTPUTS), feeds[index % len(feeds)])
        index += 1
        if began >= window:
            result.latencies.append(time.perf_counter() - began)
            result.seconds = time.perf_counter() - window
    return result


@contextlib.contextmanager
def _serving(contender: Contender, model: Path, logs: Path) -> Iterator[ServerProcess | None]:
    if contender.in_process:
        yield None
        return
    print(f"starting {contender.id}", flush=True)
    with ServerProcess.start(
        model,
        stdout=logs / f"{contender.id}.log",
        serving=False,
        timeout=START_SECONDS,
        python_args=contender.python_args,
        http=True,
    ) as server:
        deadline = time.monotonic() + START_SECONDS
        while not _answers(server.http_url):
            if server.process.poll() is not None or time.monotonic() > deadline:
                raise LaunchError(f"{contender.id} did not answer (see {logs})")
            time.sleep(0.2)
        yield server


def _answers(url: str) -> bool:
    """Whether the server at `url` says its model is ready."""
    import urllib.request

    try:
        with urllib.request.urlopen(f"{url}/v2/models/{MODEL_NAME}/ready", timeout=5) as reply:
            return bool(reply.status == 200)
    except OSError:
        return False


def _measure_all(
    contenders: list[Contender],
    plans: dict[str, Requests],
    twins: dict[str, Plan],
    session: Any,
    args: Any,
) -> list[dict[str, Any]]:
    runs: dict[tuple[str, str], list[Measurement]] = {}
    checks: dict[tuple[str, str], list[tuple[bool, float | None]]] = {}
    args.logs.mkdir(parents=True, exist_ok=True)
    for repeat in range(args.repeats):
        turn = repeat % len(contenders)
        for contender in contenders[turn:] + contenders[:turn]:
            with _serving(contender, args.model, args.logs) as server:
                for scenario in SCENARIOS:
                    requests = plans[scenario.id]
                    key = (scenario.id, contender.id)
                    if server is None:
                        result = _in_process(session, requests, args.seconds, args.warmup)
                    else:
                        result, firsts = _http_measure(
                            server.http_url,
                            requests,
                            scenario.concurrency,
                            args.seconds,
                            args.warmup,
                        )
                        checks.setdefault(key, []).append(_check(requests, firsts, session))
                    runs.setdefault(key, []).append(result)
                    print(
                        f"{repeat + 1}/{args.repeats} {scenario.id} {contender.id}: "
                        f"{_brief(result)}",
                        flush=True,
                    )
                    if server is not None and contender.id == "scratchnet":
                        twin = _grpc_twin(server, twins.get(scenario.id), scenario, args)
                        if twin is not None:
                            runs.setdefault((scenario.id, "scratchnet-grpc"), []).append(twin)
                            print(
                                f"{repeat + 1}/{args.repeats} {scenario.id} scratchnet-grpc: "
                                f"{_brief(twin)}",
                                flush=True,
                            )
    ids = [c.id for c in contenders]
    ids.insert(ids.index("scratchnet") + 1, "scratchnet-grpc")
    return [
        _row(scenario, contender, runs, checks)
        for scenario in SCENARIOS
        for contender in ids
        if (scenario.id, contender) in runs
    ]


def _grpc_twin(
    server: ServerProcess, plan: Plan | None, scenario: Scenario, args: Any
) -> Measurement | None:
    """The scenario over scratchnet's gRPC port: ModelInfer with raw tensors (clients.perf)."""
    if plan is None:
        return None
    return measure(
        server.target,
        plan,
        concurrency=scenario.concurrency,
        duration=args.seconds,
        warmup=args.warmup,
        timeout=CALL_TIMEOUT,
    )


def _brief(result: Measurement) -> str:
    figures = result.summary()
    latency = figures["latency_ms"]
    return (
        f"{figures['requests_per_second']:,.1f} req/s, {figures['images_per_second']:,.0f} img/s,"
        f" p50 {latency.get('p50', np.nan):.3f} ms, p99 {latency.get('p99', np.nan):.3f} ms,"
        f" {figures['errors']} errors"
    )


def _row(
    scenario: Scenario,
    contender: str,
    runs: dict[tuple[str, str], list[Measurement]],
    checks: dict[tuple[str, str], list[tuple[bool, float | None]]],
) -> dict[str, Any]:
    summaries = [run.summary() for run in runs[(scenario.id, contender)]]
    ceilings = [run.summary() for run in runs[(scenario.id, "in-process")]]

    def median(name: str) -> float:
        values = [_figure(s, name) for s in summaries]
        return float(statistics.median(values))

    ratios = {
        name: statistics.median(
            _figure(s, name) / _figure(c, name) for s, c in zip(summaries, ceilings, strict=True)
        )
        for name in ("images_per_second", "requests_per_second", "p50_ms")
    }
    found = checks.get((scenario.id, contender), [])
    return {
        "scenario": scenario.id,
        "contender": contender,
        "median": {
            name: median(name)
            for name in (
                "requests_per_second",
                "images_per_second",
                "p50_ms",
                "p99_ms",
                "client_cpu_ms_per_request",
            )
        },
        "vs_in_process": ratios,
        "errors": sum(s["errors"] for s in summaries),
        "check_ok": all(ok for ok, _ in found),
        "max_score_difference": max((d for _, d in found if d is not None), default=None),
        "repeats": summaries,
    }


def _figure(summary: dict[str, Any], name: str) -> float:
    if name.endswith("_ms") and name != "client_cpu_ms_per_request":
        return float(summary["latency_ms"].get(name.removesuffix("_ms"), np.nan))
    return float(summary[name] or 0.0)


def _versions(peers_python: Path | None) -> dict[str, str]:
    import importlib.metadata
    import subprocess

    names = ("onnxruntime", "starlette", "uvicorn", "httptools", "numpy")
    versions = {name: importlib.metadata.version(name) for name in names}
    if peers_python is not None:
        code = (
            "import importlib.metadata as m, json; print(json.dumps({p: m.version(p) for p in "
            "('kserve', 'fastapi', 'starlette', 'uvicorn', 'orjson', 'onnxruntime')}))"
        )
        found = subprocess.run(
            [str(peers_python), "-I", "-c", code],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        versions |= {f"peers: {k}": v for k, v in json.loads(found.stdout).items()}
    return versions


if __name__ == "__main__":
    run_cli(PROGRAM, main)
