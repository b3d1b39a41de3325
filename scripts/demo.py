"""`make demo`: the whole pipeline, one step after the other, each the command a user would type.

    python scripts/demo.py [--artifacts DIR] [--data PATH]

1. train the network on MNIST            python -m trainer -o DIR/model.npz
2. export it to ONNX                     python -m export DIR/model.npz -o DIR/model.onnx
3. serve it over gRPC on a free port     python -m server --model DIR/model.onnx --port 0
4. score the test set over gRPC          python -m clients.score --target HOST:PORT --json
5. stop the server with SIGTERM (also when a step fails or on Ctrl-C)

The server's log goes to DIR/server.log and the score report to DIR/score.json. A step that failed
(a server that did not start, a failed call, a crash) exits 1, one that refused what it was given
(its own exit 2: --data not found) exits 2: docs/clients.md's exit table.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

from scratchnet.cli import EXIT_USAGE, ArgumentParser, run_cli
from scratchnet.errors import ScratchnetError
from scratchnet.files import atomic_write
from scratchnet.launcher import ServerProcess, server_command

PROGRAM = "scripts/demo.py"


def main() -> int:
    """Run the demo; see the module docstring."""
    parser = ArgumentParser(prog=PROGRAM, description="Train, export, serve and score, end to end.")
    parser.add_argument("--artifacts", type=Path, default=Path("artifacts"), help="output folder")
    parser.add_argument("--data", help="IDX directory or npz file (default: the bundled MNIST)")
    args = parser.parse_args()
    out: Path = args.artifacts
    data = ["--data", args.data] if args.data else []
    # SIGTERM (a CI timeout, `kill`) unwinds like Ctrl-C, so the server is stopped either way.
    _INTERRUPTS.install()
    print(f"scratchnet demo: train -> export -> serve -> score over gRPC; outputs in {out}/")

    _step(1, "train the single-layer network on MNIST (the article's recipe)")
    _run("trainer", *data, "-o", out / "model.npz")
    _step(2, "export the trained weights to ONNX")
    _run("export", out / "model.npz", "-o", out / "model.onnx")
    _step(3, "start the gRPC server on a free port")
    log = out / "server.log"
    _show(server_command(out / "model.onnx"))
    server = ServerProcess.start(out / "model.onnx", stdout=log, guard=_INTERRUPTS.held)
    target = server.target
    try:
        print(f"server {server.pid} is SERVING at {target} (its log: {log})")
        _step(4, "score the MNIST test set over gRPC")
        # The confusion matrix plot needs the optional `plots` extra (`make demo` installs it).
        has_matplotlib = importlib.util.find_spec("matplotlib") is not None
        plot = ["--plot", str(out / "confusion.png")] if has_matplotlib else []
        report = json.loads(
            _run("clients.score", "--target", target, *data, "--json", *plot, capture=True)
        )
        with atomic_write(out / "score.json") as handle:
            handle.write(json.dumps(report, indent=2).encode() + b"\n")
    finally:
        _step(5, "stop the server")
        # A second Ctrl-C meanwhile waits until the server is stopped, rather than abandon it.
        with _INTERRUPTS.held():
            code = server.stop()
        print(f"server stopped by SIGTERM, exit code {code}")
    _summary(report, out, bool(plot), bundled=args.data is None)
    return 0


def _step(number: int, title: str) -> None:
    print(f"\n[{number}/5] {title}", flush=True)


def _command(module: str, *args: str | os.PathLike[str]) -> list[str]:
    return [sys.executable, "-m", module, *map(str, args)]


def _show(command: list[str]) -> None:
    print("$ " + shlex.join(["python", *command[1:]]), flush=True)


def _run(module: str, *args: str | os.PathLike[str], capture: bool = False) -> str:
    """Run `python -m module args…`, showing the command; its stdout if `capture`."""
    command = _command(module, *args)
    _show(command)
    started = time.monotonic()
    process: subprocess.Popen[str] | None = None
    try:
        with _INTERRUPTS.held():
            process = subprocess.Popen(
                command, stdout=subprocess.PIPE if capture else None, text=True
            )
        stdout, _ = process.communicate()
    except BaseException:
        if process is not None:
            _end(process)
        raise
    if process.returncode != 0:
        code = process.returncode
        error = ScratchnetError(
            f"`python -m {module}` failed with exit code {code} (its message is above)"
        )
        # The step's verdict is the demo's: 2 if it was given something wrong (--data), any
        # other exit (1, a crash, a signal) a failure.
        error.failure = code != EXIT_USAGE
        raise error
    print(f"done in {time.monotonic() - started:.1f} s", flush=True)
    return stdout or ""


def _end(process: subprocess.Popen[str]) -> None:
    """Stop a step interrupted midway (SIGTERM ends it without a word) and wait for it."""
    process.terminate()
    process.wait()
    if process.stdout is not None:
        process.stdout.close()


def _summary(report: dict[str, Any], out: Path, plotted: bool, bundled: bool) -> None:
    latency = report["latency_ms"]
    reference = "; the article's figure is 0.9104" if bundled else ""
    print(
        f"\naccuracy    {report['accuracy']:.4f} ({report['correct']} of {report['images']} "
        f"{report['data']['split']} images correct{reference})\n"
        f"throughput  {report['images_per_second']:,.0f} images/s over gRPC, batches of up to "
        f"{report['batch_size']} (latency per batch p50 {latency['p50']:.1f} ms, "
        f"p99 {latency['p99']:.1f} ms)\n"
        f"outputs     {out}/model.npz, model.onnx, server.log, score.json"
        + (", confusion.png" if plotted else "")
    )


class _Interrupts:
    """SIGINT and SIGTERM as KeyboardInterrupt, held back while a child process starts.

    Raised from inside subprocess.Popen, an interrupt would leave the child just started running
    on its own, unseen: a score still talking to a stopped server, or a server nobody stops.
    Held back, it is raised once Popen has returned, when the caller can stop the child.
    """

    def __init__(self) -> None:
        self._holding = False
        self._pending = False

    def install(self) -> None:
        """Handle SIGINT and SIGTERM from now on."""
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self._handle)

    @contextmanager
    def held(self) -> Iterator[None]:
        """Postpone interrupts until the block ends, then raise one if any arrived."""
        self._holding = True
        try:
            yield
        finally:
            self._holding = False
            if self._pending:
                self._pending = False
                raise KeyboardInterrupt

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self._holding:
            self._pending = True
        else:
            raise KeyboardInterrupt


_INTERRUPTS = _Interrupts()


if __name__ == "__main__":
    run_cli(PROGRAM, main)
