"""Instructions per batch-1 ModelInfer call in the whole server process, counted by valgrind:
figures the machine's load does not move (docs/performance.md).

    .venv/bin/python bench/instructions.py [--model artifacts/model.onnx] [--calls 400]
        [--by-object] [--dumps DIR]

Each contender (our server with its default flags, ours with --no-access-log, the bare server of
bench/peers/ on grpc.aio and on grpc's synchronous server) runs under valgrind's callgrind, all at
once: a count does not depend on the load. Once a contender answers: 50 warm-up calls, its
counters zeroed (`callgrind_control -z`), `--calls` calls one after another from this process,
its counters dumped (`-d`); the dump's total, every thread of the process included, divided by
the calls. With --by-object, also each shared object's own share of it (the interpreter, grpc,
onnxruntime, numpy, ...). Needs valgrind (Debian's `valgrind`); a contender takes a minute or two
to start under it. Writes nothing but callgrind's dumps, in a temporary directory (or in --dumps
DIR, kept).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from collections import Counter
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


def _count(label: str, plan: Plan, model: Path, calls: int, folder: Path) -> tuple[int, Path]:
    """Instructions per call of one contender, started under callgrind and stopped after, and
    the dump they were counted in."""
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
    return round(int(total.group(1)) / calls), dump


_COMPRESSED = re.compile(r"\((\d+)\)(?: (.*))?")
"""A compressed name in a callgrind dump: "(3) /usr/lib/libc.so.6" defines 3, "(3)" uses it."""


def by_object(dump: Path) -> Counter[str]:
    """The instructions of each shared object's own code in a callgrind dump (not those of what
    it calls): where a difference between two servers lies."""
    names: dict[str, str] = {}
    counts: Counter[str] = Counter()
    current, inclusive_next = "?", False
    for line in dump.read_text().splitlines():
        if line.startswith(("ob=", "cob=")):
            key, _, value = line.partition("=")
            match = _COMPRESSED.fullmatch(value)
            if match is not None:
                if match[2] is not None:
                    names[match[1]] = match[2]
                value = names.get(match[1], value)
            if key == "ob":
                current = Path(value).name
        elif line.startswith("calls="):
            inclusive_next = True  # the cost line after a call is the callee's, all of it
        elif line[:1].isdigit() or line[:1] in "+-*":
            fields = line.split()
            if not inclusive_next and len(fields) > 1:
                counts[current] += int(fields[1])
            inclusive_next = False
    return counts


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
    parser.add_argument(
        "--by-object",
        action="store_true",
        help="also print each contender's instructions per call by shared object (its own code)",
    )
    parser.add_argument(
        "--dumps", type=Path, help="keep callgrind's dumps and the servers' logs in this folder"
    )
    args = parser.parse_args()
    if not args.model.is_file():
        raise LaunchError(f"{args.model} not found: run `make demo` first")
    plan = build_plan(_spec(_session(args.model)), "v2", 1, outputs=OUTPUTS)
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        raise LaunchError("valgrind is not installed: `apt-get install valgrind`, then run again")
    with (
        tempfile.TemporaryDirectory(prefix="instructions-") as temporary,
        ThreadPoolExecutor(len(CONTENDERS)) as pool,
    ):
        folder = args.dumps or Path(temporary)
        counts = {
            label: pool.submit(_count, label, plan, args.model, args.calls, folder)
            for label in CONTENDERS
        }
        print(f"| server | instructions per call ({args.calls} calls) |\n|---|---:|")
        for label, count in counts.items():
            print(f"| {label} | {count.result()[0] / 1000:,.0f}k |", flush=True)
        if args.by_object:
            _print_by_object(
                {label: count.result()[1] for label, count in counts.items()}, args.calls
            )
    return 0


def _print_by_object(dumps: dict[str, Path], calls: int, rows: int = 8) -> None:
    """A table of instructions per call by shared object, one column per contender."""
    counted = {label: by_object(dump) for label, dump in dumps.items()}
    objects = sum(counted.values(), Counter()).most_common(rows)
    print(f"\n| shared object (its own code) | {' | '.join(counted)} |")
    print("|---|" + "---:|" * len(counted))
    for name, _ in objects:
        cells = " | ".join(f"{counts[name] / calls / 1000:,.0f}k" for counts in counted.values())
        print(f"| {name} | {cells} |")


if __name__ == "__main__":
    run_cli(PROGRAM, main)
