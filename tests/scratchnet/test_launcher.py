"""scratchnet.launcher: start a real `python -m server` on a free port, wait for it, stop it; and
what it reports when a server exits, stays silent or ignores the signal."""

from __future__ import annotations

import signal
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from scratchnet.launcher import LaunchError, ServerProcess, server_command
from tests.conftest import processes_mentioning

SERVING = health_pb2.HealthCheckResponse.SERVING


def health(target: str) -> int:
    """The overall health status the server at `target` reports."""
    with grpc.insecure_channel(target) as channel:
        request = health_pb2.HealthCheckRequest(service="")
        return int(health_pb2_grpc.HealthStub(channel).Check(request, timeout=10).status)


def fake_server(script: str) -> tuple[str, ...]:
    """python_args running `script` instead of the server, tagged to be found among processes."""
    return ("-c", script, f"fake-server-{uuid.uuid4()}")


def appears(tag: str, seconds: float) -> bool:
    """Whether a process with `tag` among its arguments runs within `seconds` (one just started
    shows its arguments in /proc a moment after Popen returns)."""
    deadline = time.monotonic() + seconds
    while not processes_mentioning(tag):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_the_command_serves_the_model_on_a_free_local_port() -> None:
    command = server_command(Path("m.onnx"), "--threads", "1")
    assert command[1:] == [
        "-m",
        "server",
        "--model",
        "m.onnx",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--threads",
        "1",
    ]


def test_start_returns_a_serving_server_and_stop_drains_it(
    model_onnx: Path, tmp_path: Path
) -> None:
    server = ServerProcess.start(model_onnx, stdout=tmp_path / "out", stderr=tmp_path / "err")
    try:
        assert health(server.target) == SERVING
        assert server.host == "127.0.0.1" and server.port > 0
        assert server.pid == server.process.pid
        assert (tmp_path / "out").read_text() == f"listening on {server.target}\n"
    finally:
        assert server.stop() == 0
    assert "shutting down" in (tmp_path / "err").read_text()


def test_as_a_context_manager_the_server_stops_at_the_end(model_onnx: Path, tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    with ServerProcess.start(model_onnx, "--log-level", "info", stdout=log) as server:
        assert server.process.poll() is None
    assert server.process.returncode == 0
    # One file holds both streams when no separate stderr file is named.
    text = log.read_text()
    assert "listening on" in text and "shutting down" in text


def test_a_server_that_exits_before_listening_is_one_line_with_its_last_words(
    model_onnx: Path, tmp_path: Path
) -> None:
    with pytest.raises(LaunchError) as raised:
        ServerProcess.start(model_onnx, "--max-batch", "0", stdout=tmp_path / "log")
    assert str(raised.value) == (
        "the server exited with code 2: python -m server: error: argument --max-batch: expected "
        "an integer >= 1, got 0 (see python -m server --help)"
    )


def test_a_server_that_exits_while_loading_is_reported_as_well(tmp_path: Path) -> None:
    missing = tmp_path / "missing.onnx"
    with pytest.raises(LaunchError) as raised:
        ServerProcess.start(missing, stdout=tmp_path / "out", stderr=tmp_path / "err")
    assert str(raised.value) == (
        f"the server exited with code 2: python -m server: error: model {missing} not found, "
        "expected an ONNX file (export one with `python -m export`)"
    )
    assert (tmp_path / "out").read_text().startswith("listening on ")


def test_a_log_under_a_file_is_one_line_and_starts_nothing(tmp_path: Path) -> None:
    python_args = fake_server("import time; time.sleep(60)")
    blocker = tmp_path / "logs"
    blocker.write_text("a file where the logs' folder would be\n")
    for stdout, stderr in ((blocker / "out", None), (tmp_path / "out", blocker / "err")):
        with pytest.raises(LaunchError) as raised:
            ServerProcess.start(
                tmp_path / "m.onnx", stdout=stdout, stderr=stderr, python_args=python_args
            )
        log = stdout if stderr is None else stderr
        expected = f"cannot write the server's log {log}: {blocker} is not a folder"
        assert str(raised.value) == expected
    assert not appears(python_args[-1], 0.5)


def test_a_silent_server_times_out_and_is_stopped(tmp_path: Path) -> None:
    python_args = fake_server("import time; time.sleep(60)")
    with pytest.raises(LaunchError) as raised:
        ServerProcess.start("m.onnx", stdout=tmp_path / "log", timeout=0.5, python_args=python_args)
    assert str(raised.value) == "the server printed no `listening on` line in 0.5 s"
    assert processes_mentioning(python_args[-1]) == []


def test_a_server_never_serving_times_out_and_is_stopped(tmp_path: Path) -> None:
    # Listening on a port where nothing answers health checks.
    python_args = fake_server(
        "import time; print('listening on 127.0.0.1:1', flush=True); time.sleep(60)"
    )
    with pytest.raises(LaunchError) as raised:
        ServerProcess.start("m.onnx", stdout=tmp_path / "log", timeout=0.5, python_args=python_args)
    assert str(raised.value) == "the server at 127.0.0.1:1 was not SERVING after 0.5 s"
    assert processes_mentioning(python_args[-1]) == []


def test_the_address_comes_from_the_listening_line_and_env_reaches_the_server(
    tmp_path: Path,
) -> None:
    script = "import os, time; print('noise'); print(os.environ['SAY'], flush=True); time.sleep(60)"
    server = ServerProcess.start(
        "m.onnx",
        stdout=tmp_path / "log",
        env={"SAY": "listening on [::1]:4321"},
        serving=False,
        python_args=fake_server(script),
    )
    try:
        assert (server.host, server.port, server.target) == ("[::1]", 4321, "[::1]:4321")
    finally:
        assert server.stop() == -signal.SIGTERM


def test_other_listeners_are_learnt_by_name_and_waited_for_when_asked(tmp_path: Path) -> None:
    # The metrics line before the gRPC one (as the server prints it), another one after it.
    script = (
        "import time; print('metrics listening on 127.0.0.1:9002'); "
        "print('listening on 127.0.0.1:50051', flush=True); time.sleep(0.3); "
        "print('http listening on [::1]:8000', flush=True); time.sleep(60)"
    )
    server = ServerProcess.start(
        "m.onnx",
        stdout=tmp_path / "log",
        serving=False,
        python_args=fake_server(script),
        wait_for=("http",),
    )
    try:
        assert server.target == "127.0.0.1:50051"
        assert server.listeners == {"metrics": "127.0.0.1:9002", "http": "[::1]:8000"}
    finally:
        assert server.stop() == -signal.SIGTERM
    python_args = fake_server("import time; print('listening on 127.0.0.1:1', flush=True); "
                              "time.sleep(60)")  # fmt: skip
    with pytest.raises(LaunchError) as raised:
        ServerProcess.start(
            "m.onnx", stdout=tmp_path / "log2", timeout=0.5, python_args=python_args,
            wait_for=("metrics",),
        )  # fmt: skip
    assert str(raised.value) == "the server printed no `metrics listening on` line in 0.5 s"
    assert processes_mentioning(python_args[-1]) == []


def test_a_server_ignoring_the_signal_is_killed(tmp_path: Path) -> None:
    script = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('listening on 127.0.0.1:1', flush=True); time.sleep(60)"
    )
    server = ServerProcess.start(
        "m.onnx", stdout=tmp_path / "log", serving=False, python_args=fake_server(script)
    )
    assert server.stop(timeout=0.5) == -signal.SIGKILL


def test_the_guard_wraps_starting_and_the_stop_after_a_failure(tmp_path: Path) -> None:
    python_args = fake_server("import time; time.sleep(60)")
    # Whether the fake server runs as each guarded block ends.
    running: list[bool] = []

    @contextmanager
    def guard() -> Iterator[None]:
        yield
        running.append(
            appears(python_args[-1], 10)
            if not running
            else bool(processes_mentioning(python_args[-1]))
        )

    with pytest.raises(LaunchError):
        ServerProcess.start(
            "m.onnx", stdout=tmp_path / "log", timeout=0.2, guard=guard, python_args=python_args
        )
    assert running == [True, False]
