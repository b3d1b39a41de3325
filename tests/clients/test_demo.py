"""`scripts/demo.py` (what `make demo` runs) end to end: train, export, serve, score, stop."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from scratchnet.cli import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_USAGE
from tests.conftest import REPO, processes_mentioning


def test_demo_trains_serves_scores_and_stops_the_server(tmp_path: Path) -> None:
    out = tmp_path / "artifacts"
    result = subprocess.run(
        [sys.executable, REPO / "scripts" / "demo.py", "--artifacts", out],
        capture_output=True,
        text=True,
        timeout=240,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "accuracy    0.9104 (9104 of 10000 test images correct" in result.stdout
    assert re.search(r"throughput  [\d,]+ images/s over gRPC", result.stdout)
    assert "server stopped by SIGTERM, exit code 0" in result.stdout
    report = json.loads((out / "score.json").read_text())
    assert report["accuracy"] == 0.9104
    for name in ("model.npz", "model.onnx", "server.log", "confusion.png"):
        assert (out / name).is_file(), name
    serving = re.search(r"server (\d+) is SERVING", result.stdout)
    assert serving is not None
    assert not runs_a_server(int(serving.group(1)))


def test_a_failing_step_is_one_line_and_starts_no_server(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, REPO / "scripts" / "demo.py", "--artifacts", tmp_path, "--data", "/nope"],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert result.returncode == EXIT_USAGE, "the trainer's exit 2: --data is the caller's mistake"
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "scripts/demo.py: error: `python -m trainer` failed with exit code 2 (its message is above)"
    )
    assert "[3/5]" not in result.stdout


@pytest.mark.parametrize(
    ("module", "message"),
    [
        ("trainer", "`python -m trainer` failed with exit code 1 (its message is above)"),
        ("server", "the server exited with code 1: OSError: cannot serve today"),
    ],
)
def test_a_step_that_fails_exits_1(tmp_path: Path, module: str, message: str) -> None:
    # A stand-in for the step's package, found before the repository's: it fails as a step fails
    # through no fault of the demo's flags (an error, a crash).
    package = tmp_path / "fake" / module
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "__main__.py").write_text("import sys\nsys.exit('OSError: cannot serve today')\n")
    result = subprocess.run(
        [sys.executable, REPO / "scripts" / "demo.py", "--artifacts", tmp_path / "artifacts"],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
        check=False,
        cwd=tmp_path,  # not the repository, whose packages `python -m` would find first
        env={**os.environ, "PYTHONPATH": f"{tmp_path / 'fake'}{os.pathsep}{REPO}"},
    )
    assert result.returncode == EXIT_FAILED, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == f"scripts/demo.py: error: {message}"


def test_an_interrupted_demo_still_stops_the_server(tmp_path: Path) -> None:
    demo = subprocess.Popen(
        [sys.executable, REPO / "scripts" / "demo.py", "--artifacts", tmp_path],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    assert demo.stdout is not None
    serving: re.Match[str] | None = None
    with demo.stdout:
        for line in demo.stdout:
            serving = re.match(r"server (\d+) is SERVING at (\S+) ", line)
            if serving:
                # The scoring step is starting: interrupt it, like Ctrl-C.
                demo.send_signal(signal.SIGINT)
                break
        rest = demo.stdout.read()
    assert serving is not None, "the demo never reported a SERVING server"
    assert demo.wait(timeout=60) == EXIT_INTERRUPTED
    assert "server stopped by SIGTERM, exit code 0" in rest
    assert not runs_a_server(int(serving.group(1)))
    assert processes_mentioning(serving.group(2)) == [], "a step outlived the demo"
    assert demo.stderr is not None
    with demo.stderr:
        assert demo.stderr.read().splitlines()[-1] == "scripts/demo.py: error: interrupted"


def runs_a_server(pid: int) -> bool:
    """Whether process `pid` exists and is a `python -m server`."""
    try:
        return b"-m\x00server\x00" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
