"""A server whose model runs wait at a gate, for tests of the inference threads and their queue
(--workers, --max-queue) and of deadlines: while the gate file exists, every run that reaches an
inference thread waits there, whatever the speed of the machine. The server is started with
--inline-us 0, so that every run goes to the inference threads.

And a server whose model loads wait for a gate, for tests that look at the server while it loads:
every load waits until the gate file exists.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from numpy.typing import NDArray

from scratchnet.api.v1 import classifier_pb2 as pb
from tests.conftest import RunningServer, start_server

GATE_SECONDS = 60.0
"""The longest a run waits at the gate, so that a test that forgets it cannot hang."""

GATED_RUNS = f"""
import sys, time
from pathlib import Path
from server import scheduling
gate = Path(sys.argv.pop(1))
run = scheduling.Runner._sliced
waiting = gate.with_suffix(".waiting")
def wait_at_gate(self, job, stop):
    waited = time.monotonic()
    if gate.exists():
        with open(waiting, "a") as log:
            log.write("1")  # one character per run that reached the gate
    while gate.exists() and time.monotonic() - waited < {GATE_SECONDS}:
        time.sleep(0.005)
    return run(self, job, stop)
scheduling.Runner._sliced = wait_at_gate
from server.__main__ import main
main()
"""


GATED_LOADS = """
import sys, time
from pathlib import Path
from server import model_control
gate = Path(sys.argv.pop(1))
load = model_control.load_model
def wait_for_gate(*args, **options):
    while not gate.exists():
        time.sleep(0.01)
    return load(*args, **options)
model_control.load_model = wait_for_gate
from server.__main__ import main
main()
"""


def start_loads_gated_server(
    model: Path, gate: Path, *args: str, tmp_dir: Path, wait_serving: bool = False, **options: Any
) -> RunningServer:
    """`python -m server --model MODEL ARGS` whose model loads wait until `gate` exists
    (`options`, such as http=True, go to start_server)."""
    return start_server(
        model, *args, tmp_dir=tmp_dir, wait_serving=wait_serving,
        python_args=("-c", GATED_LOADS, str(gate)), **options,
    )  # fmt: skip


def uint8_request(images: NDArray[Any]) -> pb.PredictRequest:
    """A v1 PredictRequest carrying uint8 `images` [N, H, W] raw."""
    tensor = pb.Tensor(dtype=pb.DATA_TYPE_UINT8, shape=images.shape, data=images.tobytes())
    return pb.PredictRequest(images=tensor)


def start_gated_server(
    model: Path, gate: Path, *args: str, tmp_dir: Path, **options: Any
) -> RunningServer:
    """`python -m server --model MODEL --inline-us 0 ARGS` whose runs wait while `gate` exists
    (`options`, such as http=True, go to start_server)."""
    return start_server(
        model, "--inline-us", "0", *args, tmp_dir=tmp_dir,
        python_args=("-c", GATED_RUNS, str(gate)), **options,
    )  # fmt: skip


def runs_at_gate(gate: Path) -> int:
    """How many runs have reached the gate while it was closed."""
    waiting = gate.with_suffix(".waiting")
    return len(waiting.read_text()) if waiting.exists() else 0


@contextmanager
def closed(gate: Path) -> Iterator[None]:
    """Runs wait at the gate for the duration of the block."""
    gate.touch()
    try:
        yield
    finally:
        gate.unlink(missing_ok=True)


def until(condition: Any, seconds: float = 30.0) -> None:
    """Wait until `condition()` is true; AssertionError after `seconds`."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        time.sleep(0.01)
