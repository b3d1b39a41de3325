"""Instructions per batch-1 ModelInfer call in the whole server process, counted by valgrind:
figures the machine's load does not move (docs/performance.md).

    .venv/bin/python bench/instructions.py [--model artifacts/model.onnx] [--calls 400]

Each contender (our server with its default flags, ours with --no-access-log, the bare server of
bench/peers/ on grpc.aio and on grpc's synchronous server) runs under valgrind's callgrind, all at
once: a count does not depend on the load. Once a contender answers: 50 warm-up calls, its
counters zeroed (`callgrind_control -z`), `--calls` calls one after another from this process,
its counters dumped (`-d`); the dump's total, every thread of the process included, divided by
the calls. Needs valgrind (Debian's
`valgrind`); a contender takes a minute or two to start under it. Writes nothing but callgrind's
dumps, in a temporary directory.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
from serving import OUTPUTS, PEERS, ROOT, _session, _spec

from clients.perf import Plan, build_plan, wait_answering
from scratchnet.cli import ArgumentParser, integer, run_cli
from scratchnet.errors import LaunchError
from scratchnet.launcher import ServerProcess

PROGRAM = "bench/instructions.py"
WARMUP_CALLS = 50
CONTENDERS = {
    "scratchnet, default flags": ((), ("-m", "server")),
    "scratchnet, --no-access-log": (("--no-access-log",), ("-m", "server")),
    "bare grpc.aio + onnxruntime": ((), (str(PEERS / "bare_server.py"),)),
    "bare synchronous grpc + onnxruntime": (("--sync",), (str(PEERS / "bare_server.py"),)),
}
"""Label: (server flags, python arguments)."""


def _count(label: str, plan: Plan, model: Path, calls: int, folder: Path) -> int:
    """Instructions per call of one contender, started under callgrind and stopped after."""
    flags, python_args = CONTENDERS[label]
    name = re.sub(r"\W+", "-", label).strip("-")
    dumps = folder / name
    wrapper = ("valgrind", "--tool=callgrind", f"--callgrind-out-file={dumps}.%p")
    log = folder / f"{name}.log"
    with ServerProcess.start(
        model,
        *flags,
        stdout=log,
        serving=False,
        timeout=600,
        python_args=python_args,
        wrapper=wrapper,
    ) as server:
        wait_answering(server.target, plan, 600, check=lambda: _still_running(server))
        with grpc.insecure_channel(server.target) as channel:
            call = channel.unary_unary(plan.method, None, None)
            for number in range(WARMUP_CALLS):
                call(plan.requests[number % len(plan.requests)], timeout=60)
            _control("-z", server.pid)
            for number in range(calls):
                call(plan.requests[number % len(plan.requests)], timeout=60)
            _control("-d", server.pid)
        pattern = f"{dumps.name}.{server.pid}.*"
    [dump] = [path for path in folder.glob(pattern) if path.stat().st_size]
    total = re.search(r"^totals: (\d+)", dump.read_text(), re.MULTILINE)
    if total is None:
        raise LaunchError(f"no totals line in {dump}")
    return round(int(total.group(1)) / calls)


def _still_running(server: ServerProcess) -> None:
    """LaunchError once the contender has exited (while waiting for its first answer, the one
    readiness signal every contender has)."""
    if server.process.poll() is not None:
        raise LaunchError(f"the server exited before answering (see {server.stdout_path})")


def _control(flag: str, pid: int) -> None:
    subprocess.run(["callgrind_control", flag, str(pid)], check=True, capture_output=True)


def main() -> int:
    """Count and print each contender's instructions per call."""
    parser = ArgumentParser(prog=PROGRAM, description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=ROOT / "artifacts" / "model.onnx")
    parser.add_argument("--calls", type=integer(1), default=400)
    args = parser.parse_args()
    if not args.model.is_file():
        raise LaunchError(f"{args.model} not found: run `make demo` first")
    plan = build_plan(_spec(_session(args.model)), "v2", 1, outputs=OUTPUTS)
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        raise LaunchError("valgrind is not installed: `apt-get install valgrind`, then run again")
    with (
        tempfile.TemporaryDirectory(prefix="instructions-") as folder,
        ThreadPoolExecutor(len(CONTENDERS)) as pool,
    ):
        counts = {
            label: pool.submit(_count, label, plan, args.model, args.calls, Path(folder))
            for label in CONTENDERS
        }
        print(f"| server | instructions per call ({args.calls} calls) |\n|---|---:|")
        for label, count in counts.items():
            print(f"| {label} | {count.result() / 1000:,.0f}k |", flush=True)
    return 0


if __name__ == "__main__":
    run_cli(PROGRAM, main)
