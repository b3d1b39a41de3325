"""`python -m clients.perf` against the real server on both APIs, its reply checks against a server
that answers inconsistently, and bad input as one line with exit code 2."""

from __future__ import annotations

import itertools
import json
import sys
from collections.abc import Callable, Iterator
from concurrent import futures
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest

from clients import perf
from clients.perf import (
    APIS,
    MISMATCH,
    ModelSpec,
    Rate,
    Stability,
    build_plan,
    describe,
    measure,
    measure_until_stable,
)
from clients.perf import report as report_module
from clients.perf.report import text as report_text
from scratchnet.api.inference import open_inference_grpc_pb2 as oip
from scratchnet.api.inference.open_inference_grpc_pb2_grpc import GRPCInferenceServiceStub
from scratchnet.artifact import Artifact
from scratchnet.errors import ScratchnetError
from scratchnet.forward import predict
from tests.conftest import RunningServer, assert_one_line_error, run_module, start_server


@pytest.mark.parametrize("api", ["v1", "v2"])
def test_json_figures_are_sane(server: RunningServer, api: str) -> None:
    result = run_module(
        "clients.perf",
        *("--target", server.target, "--api", api, "--batch", "4", "--concurrency", "3"),
        *("--duration", "0.8", "--warmup", "0.2", "--json"),
    )
    report = json.loads(result.stdout)
    assert report["model"] == {"name": "scratchnet", "version": "1"}
    assert report["input"] == {"name": "images", "datatype": "FP32", "dims": [28, 28]}
    assert report["batch"] == 4 and report["concurrency"] == 3
    assert report["requests"] > 0 and report["errors"] == 0 and report["errors_by_code"] == {}
    assert report["images_per_second"] == pytest.approx(4 * report["requests_per_second"])
    assert report["requests_per_second"] == pytest.approx(report["requests"] / report["seconds"])
    latency = report["latency_ms"]
    assert 0 < latency["p50"] <= latency["p90"] <= latency["p95"] <= latency["p99"]
    assert latency["p99"] <= latency["max"] and 0 < latency["mean"] <= latency["max"]
    assert report["client_cpu_ms_per_request"] > 0
    # The server's own figures over the window, from its statistics: calls at the window's
    # edges may fall on either side of a reading, and on a busy machine a reading goes out a
    # little after the window opens, while calls go on.
    server_ms = report["server_ms"]
    edges = max(report["concurrency"], 0.03 * report["requests"])
    assert abs(server_ms["requests"] - report["requests"]) <= edges
    stages = ("queue", "compute_input", "compute_infer", "compute_output")
    assert 0 < sum(server_ms[stage] for stage in stages) <= server_ms["total"] < latency["mean"]
    assert result.stderr == ""


def test_a_concurrency_sweep_reports_each_level_and_a_table(server: RunningServer) -> None:
    common = ("--target", server.target, "--api", "v2", "--duration", "0.4", "--warmup", "0")
    result = run_module("clients.perf", *common, "--concurrency-range", "1:5:2", "--json")
    reports = json.loads(result.stdout)
    assert [report["concurrency"] for report in reports] == [1, 3, 5]
    assert all(report["requests"] > 0 and report["errors"] == 0 for report in reports)
    text = run_module("clients.perf", *common, "--concurrency-range", "2:3").stdout
    assert text.count("call(s) in flight") == 2
    table = text.split("\n\n")[-1].splitlines()
    assert table[0].split()[:3] == ["concurrency", "requests/s", "images/s"]
    assert [row.split()[0] for row in table[1:]] == ["2", "3"]
    assert all(float(row.split()[1].replace(",", "")) > 0 for row in table[1:])


def test_a_request_rate_sweep_starts_calls_on_schedule(server: RunningServer) -> None:
    common = ("--target", server.target, "--api", "v2", "--duration", "1", "--warmup", "0")
    result = run_module("clients.perf", *common, "--request-rate-range", "20:40:20", "--json")
    reports = json.loads(result.stdout)
    assert [(r["request_rate"], r["concurrency"]) for r in reports] == [(20, None), (40, None)]
    # An open loop sends what it was asked whatever the server does: 20 and 40 calls in 1 s.
    assert [r["requests"] + r["errors"] for r in reports] == [20, 40]
    assert [(r["scheduled"], r["unsent"]) for r in reports] == [(20, 0), (40, 0)]
    assert all(r["errors"] == 0 and r["request_distribution"] == "constant" for r in reports)
    # The window lasts at least what was asked, so that the throughput is not above the rate.
    assert all(r["seconds"] >= 1 and r["requests_per_second"] <= r["request_rate"] for r in reports)
    text = run_module(
        "clients.perf", *common, "--request-rate-range", "30:40:10", "--request-distribution",
        "poisson",
    ).stdout  # fmt: skip
    first = text.split("\n\n")[0].splitlines()
    assert first[1] == "30 calls/s asked (poisson) for " + first[1].split(" for ")[1]
    assert first[3].startswith("schedule    ") and "calls due in the window, all sent, " in first[3]
    table = text.split("\n\n")[-1].splitlines()
    assert table[0].split()[-3:] == ["errors", "late", "unsent"]
    assert [row.split()[0] for row in table[1:]] == ["30", "40"]
    assert [row.split()[-1] for row in table[1:]] == ["0", "0"]


def test_a_rate_the_server_cannot_keep_counts_latency_from_the_schedule(
    server: RunningServer,
) -> None:
    # One call in flight at a time and 1,000 asked a second of calls of 1,000 images, which take
    # milliseconds each: each call starts later than the one before, and its latency, counted
    # from when it was due, grows by its own time less the 1 ms between two calls' times (no
    # coordinated omission); from their real start it would not. The window's end stops them.
    plan = build_plan(describe(server.target, "v2"), "v2", 1000, count=1)
    result = measure(server.target, plan, concurrency=1, duration=0.2, warmup=0, rate=Rate(1000))
    summary = result.summary()
    assert result.error_count == 0 and summary["scheduled"] == 200
    assert result.requests + summary["unsent"] == 200 and result.late >= result.requests - 1
    assert result.requests >= 3 and np.all(np.diff(result.latencies) > 0)


def test_a_rate_beyond_the_client_ends_with_its_window(server: RunningServer) -> None:
    # 150,000 calls due in 3 s, more than a Python client sends: those still due when the window
    # closes are not sent (they were, every one, however long it took: minutes). The calls in
    # flight, their most for a while, stay under the server's stream limit: held at it (4,096),
    # calls ending and starting raced the server's count and it refused some, UNAVAILABLE.
    result = run_module(
        "clients.perf", "--target", server.target, "--request-rate", "50000", "--duration",
        "3", "--warmup", "0", "--json",
    )  # fmt: skip
    report = json.loads(result.stdout)
    assert report["scheduled"] == 150_000 and 0 < report["unsent"] < 150_000
    assert report["requests"] + report["errors"] + report["unsent"] == 150_000
    assert report["late"] <= report["requests"] + report["errors"]
    assert report["errors"] == 0, report["error_messages"]


def test_rates_space_calls_evenly_or_as_poisson_arrivals() -> None:
    constant = list(itertools.islice(Rate(400).offsets(), 401))
    assert constant[0] == 0 and constant[400] == 1 and np.diff(constant) == pytest.approx(1 / 400)
    offsets = np.fromiter(itertools.islice(Rate(400, "poisson").offsets(), 20_000), dtype=float)
    gaps = np.diff(offsets)
    assert np.all(gaps > 0) and np.mean(gaps) == pytest.approx(1 / 400, rel=0.03)
    assert np.std(gaps) == pytest.approx(1 / 400, rel=0.05)  # exponential: std = mean
    assert offsets.tolist()[:5] == list(itertools.islice(Rate(400, "poisson").offsets(), 5))
    with pytest.raises(ValueError, match="positive"):
        Rate(0)


@pytest.mark.parametrize("rate", [Rate(400), Rate(7.3), Rate(1 / 3), Rate(400, "poisson")])
def test_a_schedule_counts_the_calls_it_starts_in_a_span(rate: Rate) -> None:
    offsets = np.fromiter(itertools.islice(rate.offsets(), 5000), dtype=float)
    spans = [(0, 1), (0.5, 2.5), (offsets[10], offsets[20]), (offsets[3], offsets[3]), (2, 1)]
    for start, stop in spans:
        expected = int(np.count_nonzero((offsets >= start) & (offsets < stop)))
        assert rate.count(start, stop) == expected, (start, stop)


def test_text_report_and_dataset_images(server: RunningServer) -> None:
    result = run_module(
        "clients.perf",
        *("--target", server.target, "--api", "v2", "--data", "mnist", "--dtype", "uint8"),
        *("--outputs", "label,probabilities", "--duration", "0.5", "--warmup", "0"),
    )
    lines = result.stdout.splitlines()
    assert "input 'images' UINT8 [1,28,28], outputs label,probabilities" in lines[0]
    assert lines[2].startswith("throughput") and "requests/s" in lines[2]
    assert lines[3].startswith("latency     p50") and "p95" in lines[3] and "mean" in lines[3]
    assert lines[4].startswith("server      ") and "ms per request in the server" in lines[4]
    assert lines[5] == "errors      none"


def test_replies_decode_to_the_models_answers(server: RunningServer, artifact: Artifact) -> None:
    spec = describe(server.target, "v2")
    plan = build_plan(spec, "v2", 5, datatype="UINT8", count=2)
    result = measure(server.target, plan, duration=0.3, warmup=0)
    assert result.error_count == 0 and sorted(result.first_replies) == [0, 1]
    for index, reply in result.first_replies.items():
        outputs = plan.decode(reply)
        assert (
            outputs["label"].tolist()
            == predict(artifact.weights, artifact.biases, plan.images[index]).tolist()
        )
        assert outputs["scores"].shape == (5, 10)


@contextmanager
def model_infer_only(answer: Callable[[bytes, grpc.ServicerContext], bytes]) -> Iterator[str]:
    """A server on 127.0.0.1 whose only method, ModelInfer, is `answer`; its address."""
    handler = grpc.method_handlers_generic_handler(
        "inference.GRPCInferenceService",
        {"ModelInfer": grpc.unary_unary_rpc_method_handler(answer)},
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2), handlers=[handler])
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop(grace=None)


@pytest.fixture
def fickle_server() -> Iterator[str]:
    """A server whose ModelInfer answers each call with different bytes."""
    calls = iter(range(10**9))

    def answer(request: bytes, context: grpc.ServicerContext) -> bytes:
        return f"reply {next(calls)}".encode()

    with model_infer_only(answer) as target:
        yield target


def test_inconsistent_replies_are_errors(fickle_server: str) -> None:
    spec = ModelSpec("m", "", "x", (2, 2), ("UINT8",), ("label",))
    plan = build_plan(spec, "v2", 1, outputs=["label"], count=1)
    assert plan.method == APIS["v2"]
    result = measure(fickle_server, plan, duration=0.3, warmup=0)
    summary: dict[str, Any] = result.summary()
    # Only the first reply was accepted (if it fell in the window); every other one differs.
    assert result.errors[MISMATCH] >= 1 and summary["requests"] <= 1
    assert summary["errors"] == result.errors[MISMATCH]
    assert "--no-check-replies" in result.messages[MISMATCH]
    unchecked = measure(fickle_server, plan, duration=0.3, warmup=0, check_replies=False)
    assert unchecked.error_count == 0 and unchecked.requests > 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--target", "not-a-target"], "expected HOST:PORT"),
        (["--target", "{server}", "--concurrency", "0"], "between 1 and 4096, got 0"),
        (["--target", "{server}", "--concurrency-range", "0:4"], "and STEP > 0, got '0:4'"),
        (["--target", "{server}", "--concurrency-range", "4:2"], "and STEP > 0, got '4:2'"),
        (["--target", "{server}", "--concurrency-range", "1:4:0"], "STEP > 0, got '1:4:0'"),
        (["--target", "{server}", "--concurrency-range", "1-4"], "expected START[:END[:STEP]]"),
        (["--target", "{server}", "--concurrency-range", "1:999"], "more than 64 levels"),
        (["--target", "{server}", "--concurrency", "100000000"], "between 1 and 4096"),
        (["--target", "{server}", "--concurrency-range", "4000:5000:100"], "at most 4096 calls"),
        (["--target", "{server}", "--max-windows", "3"], "--max-windows applies to --stability"),
        (["--target", "{server}", "--concurrency-range", "1.5:3"], "integers with 0 < START"),
        (["--target", "{server}", "--request-rate", "0"], "expected a positive number, got '0'"),
        (["--target", "{server}", "--request-rate", "2e6"], "at most 1,000,000 calls a second"),
        (["--target", "{server}", "--request-rate-range", "50:10"], "STEP > 0, got '50:10'"),
        (["--target", "{server}", "--request-rate-range", "1:nan"], "got '1:nan'"),
        (["--target", "{server}", "--request-rate-range", "1:1000"], "more than 64 levels"),
        (
            ["--target", "127.0.0.1:{closed}", "--request-rate", "0.1", "--warmup", "1"],
            "at 0.1 calls a second no call falls in a 0.2 s window",
        ),
        (
            ["--target", "127.0.0.1:{closed}", "--api", "v1", "--shared-memory", "system"],
            "--shared-memory belongs to the Open Inference Protocol: use --api v2",
        ),
        (
            ["--target", "{server}", "--request-distribution", "poisson"],
            "--request-distribution applies to --request-rate(-range) only",
        ),
        (
            ["--target", "{server}", "--request-rate", "10", "--concurrency", "2"],
            "not allowed with argument --request-rate",
        ),
        (
            ["--target", "{server}", "--concurrency-range", "1:2", "--concurrency", "2"],
            "not allowed with argument --concurrency-range",
        ),
        (["--target", "{server}", "--api", "v3"], "invalid choice: 'v3'"),
        (["--target", "{server}", "--warmup", "-1"], "expected a number >= 0, got '-1'"),
        (["--target", "{server}", "--timeout", "1e10"], "expected at most 86400 seconds (a day)"),
        (["--target", "{server}", "--outputs", "logits"], "has no output 'logits'"),
        (["--target", "{server}", "--batch", "5000"], "more than the server takes"),
        (["--target", "{server}", "--api", "v2", "--batch", "5000"], "more than the server takes"),
        ([], "required: --target"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(
    server: RunningServer,
    closed_port: int,
    args: list[str],
    message: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = [
        arg.replace("{server}", server.target).replace("{closed}", str(closed_port)) for arg in args
    ]
    # In process, to keep the file fast; the test below runs the real command.
    monkeypatch.setattr(sys, "argv", ["perf", *args, "--duration", "0.2"])
    with pytest.raises(SystemExit) as exit_:
        perf.main()
    out, err = capsys.readouterr()
    assert exit_.value.code == 2 and out == ""
    assert err.count("\n") == 1 and message in err, err
    assert err.startswith("python -m clients.perf: error: ")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--target", "127.0.0.1:{closed}"], "UNAVAILABLE from 127.0.0.1:"),
        (["--target", "{server}", "--api", "v2", "--model", "x"], "NOT_FOUND"),
        (["--target", "{server}", "--model", "x"], "NOT_FOUND"),
        # The other Python CLIs' spelling, and perf_analyzer's: the same flags.
        (["--target", "{server}", "--model-name", "x"], "Request for unknown model: 'x'"),
        (["--target", "{server}", "-m", "scratchnet", "-x", "7"], "'scratchnet' version 7 is"),
        (["--target", "{server}", "--model-version", "7"], "'scratchnet' version 7 is"),
    ],
)
def test_a_failed_call_is_one_line_and_exit_code_1(
    server: RunningServer, closed_port: int, args: list[str], message: str
) -> None:
    args = [
        arg.replace("{server}", server.target).replace("{closed}", str(closed_port)) for arg in args
    ]
    result = run_module("clients.perf", *args, "--duration", "0.2", check=False)
    assert_one_line_error(result, "python -m clients.perf", message, code=1)


@pytest.mark.parametrize(("api", "message"), [("v1", "pass --api v2"), ("v2", "pass --model NAME")])
def test_a_server_without_scratchnet_v1_needs_v2_and_a_model_name(
    fickle_server: str,
    api: str,
    message: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(sys, "argv", ["perf", "--target", fickle_server, "--api", api])
    with pytest.raises(SystemExit) as exit_:
        perf.main()
    err = capsys.readouterr().err
    # UNIMPLEMENTED: the server refused the call, so it failed (exit 1), whatever the remedy.
    assert exit_.value.code == 1 and err.count("\n") == 1 and message in err, err


def test_random_pixels_are_the_same_every_run() -> None:
    spec = ModelSpec("m", "1", "images", (3, 4), ("FP32", "UINT8"), ("label", "scores"))
    first, second = (build_plan(spec, "v1", 2, count=3) for _ in range(2))
    assert first.requests == second.requests and len(set(first.requests)) == 3
    assert first.datatype == "FP32" and first.images[0].dtype == np.float32
    assert float(first.images[0].max()) <= 1.0


def test_images_through_shared_memory(server: RunningServer) -> None:
    before = set(Path("/dev/shm").iterdir())
    result = run_module(
        "clients.perf", "--target", server.target, "--api", "v2", "--batch", "16",
        "--duration", "1", "--warmup", "0.2", "--shared-memory", "system", "--json",
    )  # fmt: skip
    report = json.loads(result.stdout)
    assert report["shared_memory"] == "system"
    assert report["requests"] > 0 and report["errors"] == 0
    left = {path for path in set(Path("/dev/shm").iterdir()) - before if "scratchnet-" in path.name}
    assert left == set()  # the regions are removed afterwards
    refused = run_module(
        "clients.perf", "--target", server.target, "--api", "v1", "--shared-memory", "system",
        check=False,
    )  # fmt: skip
    assert refused.returncode == 2 and "use --api v2" in refused.stderr
    # A target whose servers are not listed cannot have the regions registered with each: refused
    # before any region is made (they were made, and left in /dev/shm).
    port = server.target.rsplit(":", 1)[1]
    refused = run_module(
        "clients.perf", "--target", f"dns:///localhost:{port}", "--api", "v2",
        "--shared-memory", "system", check=False,
    )  # fmt: skip
    assert_one_line_error(refused, "python -m clients.perf", "needs the servers listed")
    left = {path for path in set(Path("/dev/shm").iterdir()) - before if "scratchnet-" in path.name}
    assert left == set()


def test_calls_the_server_refuses_are_counted_and_the_first_reason_shown(
    server: RunningServer,
) -> None:
    # A plan the server refuses call by call: more images than its max batch, which a server
    # that does not say its limit (no model configuration) would not have let perf check first.
    served = describe(server.target, "v2")
    spec = replace(served, max_batch=0)
    plan = build_plan(spec, "v2", served.max_batch + 1, count=1)
    result = measure(server.target, plan, duration=0.3, warmup=0)
    assert result.requests == 0 and result.errors["INVALID_ARGUMENT"] == result.error_count > 0
    assert "batch" in result.messages["INVALID_ARGUMENT"]
    report = {
        "target": server.target, "api": "v2", "model": {"name": spec.name, "version": "1"},
        "input": {"name": "images", "datatype": "FP32", "dims": [28, 28]},
        "outputs": ["label"], "shared_memory": "none", "warmup_seconds": 0.0, "windows": 1,
        "stability_percent": None, "stable": None,
        **result.summary(),
    }  # fmt: skip
    lines = report_text(report).splitlines()
    assert f"errors      INVALID_ARGUMENT {result.error_count:,}" in lines
    assert f"  first INVALID_ARGUMENT: {result.messages['INVALID_ARGUMENT']}" in lines


def test_a_batch_too_large_to_build_is_refused_before_anything_is_sent() -> None:
    spec = ModelSpec("m", "", "x", (28, 28), ("FP32",), ("label",))  # no max batch said
    with pytest.raises(ScratchnetError, match="more than perf sends"):
        build_plan(spec, "v2", 10**9, outputs=["label"])


@pytest.fixture
def unavailable_server() -> Iterator[tuple[str, list[int]]]:
    """A server whose ModelInfer answers every call UNAVAILABLE at once, and its call count."""
    calls: list[int] = []

    def answer(request: bytes, context: grpc.ServicerContext) -> bytes:
        calls.append(1)
        context.abort(grpc.StatusCode.UNAVAILABLE, "going away")

    with model_infer_only(answer) as target:
        yield target, calls


def test_an_unavailable_server_is_not_called_in_a_busy_loop(
    unavailable_server: tuple[str, list[int]],
) -> None:
    target, calls = unavailable_server
    spec = ModelSpec("m", "", "x", (2, 2), ("UINT8",), ("label",))
    plan = build_plan(spec, "v2", 1, outputs=["label"], count=1)
    result = measure(target, plan, concurrency=2, duration=0.5, warmup=0)
    # Two callers, each pausing 0.1 s after an UNAVAILABLE answer: about 10 calls, not thousands.
    assert 2 <= len(calls) <= 20 and result.errors["UNAVAILABLE"] == result.error_count
    assert result.messages == {"UNAVAILABLE": "going away"}


def test_v1_measures_the_model_and_version_named(model_onnx: Path, tmp_path: Path) -> None:
    for name in ("first", "second"):
        (tmp_path / "repository" / name / "1").mkdir(parents=True)
        (tmp_path / "repository" / name / "1" / "model.onnx").write_bytes(model_onnx.read_bytes())
    with start_server(
        tmp_path / "repository", tmp_dir=tmp_path, model_flag="--model-repository"
    ) as server:
        spec = describe(server.target, "v1", "second", "1")
        assert (spec.name, spec.version) == ("second", "1")
        plan = build_plan(spec, "v1", 1, count=1)
        result = measure(server.target, plan, duration=0.3, warmup=0)
        assert result.error_count == 0 and result.requests > 0
        with grpc.insecure_channel(server.target) as channel:
            reply = GRPCInferenceServiceStub(channel).ModelStatistics(
                oip.ModelStatisticsRequest(), timeout=10
            )
        calls = {stats.name: stats.inference_stats.success.count for stats in reply.model_stats}
        assert calls == {"first": 0, "second": result.requests}
        assert server.stop() == 0


def test_shared_memory_regions_are_registered_with_every_replica(
    server: RunningServer, model_onnx: Path, tmp_path: Path
) -> None:
    with start_server(model_onnx, tmp_dir=tmp_path) as other:
        result = run_module(
            "clients.perf", "--target", f"{server.target},{other.target}", "--api", "v2",
            "--concurrency", "4", "--duration", "0.5", "--warmup", "0",
            "--shared-memory", "system", "--json",
        )  # fmt: skip
        assert other.stop() == 0
    report = json.loads(result.stdout)
    assert report["requests"] > 0 and report["errors"] == 0, report["error_messages"]
    assert report["server_ms"] is None  # two replicas' statistics do not subtract


def test_stability_passes_measure_windows_until_the_last_three_agree(
    server: RunningServer,
) -> None:
    plan = build_plan(describe(server.target, "v2"), "v2", 1, count=2)
    options: dict[str, Any] = {"duration": 0.2, "warmup": 0.0}
    # Any three windows agree within 1000 %; none within a billionth of a percent.
    result, windows, stable = measure_until_stable(
        server.target, plan, Stability(1000, max_windows=5), **options
    )
    assert (windows, stable) == (3, True)
    assert 0.55 <= result.seconds <= 1.5 and result.requests > 0 and result.error_count == 0
    assert result.server is not None and result.server["requests"] == pytest.approx(
        result.requests, abs=3
    )
    _, windows, stable = measure_until_stable(
        server.target, plan, Stability(1e-9, max_windows=4), **options
    )
    assert (windows, stable) == (4, False)
    report = {"stable": False, "windows": 4, "stability_percent": 1e-9}
    assert "NOT stable" in report_module._windows(report)


@pytest.mark.parametrize("dims", [(1, 4, 5), (20,)])
def test_images_of_h_by_w_fill_an_input_with_a_channel_or_a_flat_one(dims: tuple[int, ...]) -> None:
    pixels = np.arange(2 * 4 * 5, dtype=np.uint8).reshape(2, 4, 5)
    spec = ModelSpec("m", "", "x", dims, ("UINT8",), ("label",))
    plan = build_plan(spec, "v2", 2, outputs=["label"], count=1, pixels=pixels)
    assert plan.images[0].shape == (2, *dims)
    assert plan.images[0].tobytes() == pixels.tobytes()  # the same pixels, row-major
    transposed = ModelSpec("m", "", "x", (5, 4), ("UINT8",), ("label",))
    with pytest.raises(ScratchnetError, match=r"the images are \[4, 5\], model 'm' takes \[5, 4\]"):
        build_plan(transposed, "v2", 2, outputs=["label"], count=1, pixels=pixels)
