"""`python -m clients.perf`: load a server with inference calls and report how fast it answers.

Like Triton's perf_analyzer: every request is built and serialised once before the run and sent as
bytes, N calls in flight, for a warm-up and then a measuring window; prints requests/s, images/s,
latency percentiles, errors by status code and the client's own CPU time per request. Speaks
scratchnet.v1 (Predict) and the Open Inference Protocol (ModelInfer with raw_input_contents), so it
measures any KServe v2 server. Also a library: bench/serving.py drives peer servers with it.

The parts, in the order a run uses them: `model` (what the server says about its model), `plan`
(the requests), `load` (the calls and what they observed), `report` (the text), `cli`.
"""

from clients.perf.cli import main
from clients.perf.load import (
    MISMATCH,
    Measurement,
    Rate,
    Stability,
    measure,
    measure_until_stable,
    wait_answering,
)
from clients.perf.model import ModelSpec, describe
from clients.perf.plan import APIS, Plan, build_plan, in_shared_memory

__all__ = [
    "APIS",
    "MISMATCH",
    "Measurement",
    "ModelSpec",
    "Plan",
    "Rate",
    "Stability",
    "build_plan",
    "describe",
    "in_shared_memory",
    "main",
    "measure",
    "measure_until_stable",
    "wait_answering",
]
