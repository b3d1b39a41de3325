"""scratchnet.cli: shared argparse types and the one-line error wrapper."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import numpy as np
import pytest

from scratchnet.cli import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    integer,
    integers,
    positive_number,
    run_cli,
)
from scratchnet.errors import (
    ClientError,
    DataError,
    DeadlineExceededError,
    JobFailed,
    ScratchnetError,
)
from tests.conftest import REPO


def test_integer_bounds() -> None:
    assert integer(1)("7") == 7
    assert integer(0, 3)("3") == 3
    with pytest.raises(argparse.ArgumentTypeError, match="between 0 and 3, got 4"):
        integer(0, 3)("4")
    with pytest.raises(argparse.ArgumentTypeError, match=r"expected an integer, got '1\.5'"):
        integer(0)("1.5")


def test_integers_are_each_checked() -> None:
    assert integers(0)("0,200,1000") == [0, 200, 1000]
    with pytest.raises(argparse.ArgumentTypeError, match="expected an integer >= 1, got 0"):
        integers(1)("4,0")
    with pytest.raises(argparse.ArgumentTypeError, match="expected an integer, got ''"):
        integers(0)("1,,2")


@pytest.mark.parametrize("text", ["0", "-1", "nan", "inf", "x"])
def test_positive_number_rejects(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="expected a positive number"):
        positive_number(text)
    assert positive_number("0.25") == 0.25


def test_run_cli_turns_user_errors_into_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    def fail() -> int:
        raise DataError("data x not found: expected a folder")

    with pytest.raises(SystemExit) as exited:
        run_cli("prog", fail)
    assert exited.value.code == EXIT_USAGE
    assert capsys.readouterr().err == "prog: error: data x not found: expected a folder\n"


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (DeadlineExceededError("DEADLINE_EXCEEDED from h:1", grpc.StatusCode.DEADLINE_EXCEEDED), 1),
        (ClientError("NOT_FOUND from h:1: unknown model 'x'", grpc.StatusCode.NOT_FOUND), 1),
        (ClientError("the server at h:1 answered with 2 labels", failure=True), 1),
        (JobFailed("the Ray job failed: an actor died"), 1),
        (ClientError("target 'x': expected HOST:PORT"), 2),
        (DataError("data x not found"), 2),
    ],
    ids=["deadline", "a status", "a wrong reply", "a job", "a bad target", "a bad file"],
)
def test_a_failed_call_exits_1_and_a_mistake_2(
    error: ScratchnetError, code: int, capsys: pytest.CaptureFixture[str]
) -> None:
    def fail() -> int:
        raise error

    with pytest.raises(SystemExit) as exited:
        run_cli("prog", fail)
    assert exited.value.code == code and code in (EXIT_FAILED, EXIT_USAGE)
    assert capsys.readouterr().err == f"prog: error: {error}\n"


def test_a_path_with_control_characters_stays_on_one_plain_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # A name with a newline or a terminal escape would split the message or colour the terminal.
    def fail() -> int:
        raise DataError("data a\nb\x1b[31m not found: expected a folder")

    with pytest.raises(SystemExit):
        run_cli("prog", fail)
    assert capsys.readouterr().err == (
        "prog: error: data a\\nb\\x1b[31m not found: expected a folder\n"
    )


def test_run_cli_reports_an_interrupt(capsys: pytest.CaptureFixture[str]) -> None:
    def interrupted() -> int:
        raise KeyboardInterrupt

    with pytest.raises(SystemExit) as exited:
        run_cli("prog", interrupted)
    assert exited.value.code == EXIT_INTERRUPTED
    assert capsys.readouterr().err == "prog: error: interrupted\n"


SIGINT_AS_IN_A_SHELL = ("env", "--default-signal=INT")
"""A command prefix: SIGINT as a terminal's shell starts a command, not ignored as the tests may
have it (started in the background, as CI starts them: a child inherits an ignored signal, and
Python then leaves it ignored). Not a
preexec_fn: Python code between fork and exec in a process with gRPC's threads can abort the
child there (a CI run lost one to gRPC's poller: "epoll_wait error: Bad file descriptor")."""


def _interrupted_while_importing(*command: str) -> subprocess.CompletedProcess[str]:
    """Run `command`, send it Ctrl-C's SIGINT once numpy's core is loaded (its package imports
    are under way, run_cli not yet begun), and return how it ended."""
    process = subprocess.Popen(
        [*SIGINT_AS_IN_A_SHELL, *command], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, cwd=REPO,
    )  # fmt: skip
    proc = Path(f"/proc/{process.pid}")
    last = command[-1].encode()  # the module, or the console script (run by its interpreter)
    deadline = time.monotonic() + 30
    # Until exec, the child is a copy of this process, numpy included: wait for its own command
    # line first (SIGINT before Python has imported `site` is Python's own fatal error), then
    # for numpy in its memory (`env`, run first, has the command in its line too).
    while time.monotonic() < deadline and not (
        last in (proc / "cmdline").read_bytes().split(b"\0")
        and "_multiarray_umath" in (proc / "maps").read_text()
    ):
        time.sleep(0.002)
    process.send_signal(signal.SIGINT)
    try:
        stdout, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:  # it kept going (the test fails): no server left behind
            process.kill()
            process.wait()
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


@pytest.mark.parametrize("module", ["server", "clients.score", "trainer"])
def test_ctrl_c_while_a_command_imports_is_one_line(module: str) -> None:
    # Before run_cli begins, Python's own handler raised KeyboardInterrupt inside whichever
    # import was running: a traceback of a dozen lines.
    result = _interrupted_while_importing(sys.executable, "-m", module)
    assert (result.returncode, result.stdout) == (EXIT_INTERRUPTED, "")
    assert result.stderr == f"python -m {module}: error: interrupted\n"


def test_ctrl_c_while_a_console_script_imports_is_one_line() -> None:
    script = Path(sys.executable).with_name("scratchnet-serve")  # installed with the package
    result = _interrupted_while_importing(str(script))
    assert (result.returncode, result.stdout) == (EXIT_INTERRUPTED, "")
    assert result.stderr == "scratchnet-serve: error: interrupted\n"


@pytest.mark.parametrize(
    ("script", "usage"),
    [("scratchnet-serve", "scratchnet-serve: error: unrecognized arguments: --bogus"),
     ("scratchnet-train", "scratchnet-train: error: unrecognized arguments: --bogus"),
     ("scratchnet-score", "scratchnet-score: error: unrecognized arguments: --bogus")],
)  # fmt: skip
def test_a_console_script_names_itself(script: str, usage: str) -> None:
    command = [str(Path(sys.executable).with_name(script)), "--bogus"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == EXIT_USAGE and result.stderr.startswith(usage), result.stderr
    assert "python -m" not in result.stderr


def test_run_cli_reports_running_out_of_memory_in_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    def greedy() -> int:
        np.zeros(2**59, dtype=np.float64)  # 4 EiB: refused by the allocator, not the kernel
        return 0

    with pytest.raises(SystemExit) as exited:
        run_cli("prog", greedy)
    assert exited.value.code == EXIT_FAILED
    error = capsys.readouterr().err
    assert error.startswith("prog: error: out of memory (Unable to allocate ") and error.endswith(
        "): ask for less work at once\n"
    )


@pytest.mark.parametrize("run_as", ["-c", "-m"])
def test_a_program_that_imports_a_command_package_keeps_its_sigint_handler(
    tmp_path: Path, run_as: str
) -> None:
    # Someone else's program using our client: a script, or `python -m theirtool` whose package
    # imports it (while Python imports that package, sys.argv[0] is "-m", as for ours).
    source = "import clients, signal\nprint(signal.getsignal(signal.SIGINT).__name__)\n"
    (tmp_path / "theirtool").mkdir()
    (tmp_path / "theirtool" / "__init__.py").write_text("import clients\n")
    (tmp_path / "theirtool" / "__main__.py").write_text(source)
    command = (
        [sys.executable, "-c", source] if run_as == "-c" else [sys.executable, "-m", "theirtool"]
    )
    result = subprocess.run(
        [*SIGINT_AS_IN_A_SHELL, *command], capture_output=True, text=True, timeout=60, cwd=REPO,
        env={**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{REPO}"},
    )  # fmt: skip
    assert (result.returncode, result.stdout) == (0, "default_int_handler\n"), result.stderr


def test_a_reader_that_goes_away_is_a_quiet_success() -> None:
    """`python -m clients.predict … | head -3` under `set -o pipefail` must exit 0."""
    script = (
        "from scratchnet.cli import run_cli\n"
        "def main():\n"
        "    for i in range(200_000):\n"
        "        print(f'line {i}')\n"
        "run_cli('prog', main)\n"
    )
    result = subprocess.run(
        ["bash", "-c", f"set -o pipefail; {sys.executable} -c \"$0\" | head -3", script],
        capture_output=True, text=True, timeout=60, cwd=Path(__file__).parents[2],
    )  # fmt: skip
    assert result.stdout.splitlines() == ["line 0", "line 1", "line 2"]
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
