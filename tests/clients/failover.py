"""A replica killed under a client's run: the one way the failover tests pull the plug."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from tests.conftest import RunningServer


def kill_mid_run(
    command: Sequence[str], victim: RunningServer, answered: Callable[[], bool], cwd: Path
) -> tuple[str, str, float]:
    """Start `command`, SIGKILL `victim` once `answered()` says it has served the run (so the
    run is under way on both replicas), and wait for the run to succeed: its stdout, its stderr
    and when the victim was killed (time.monotonic)."""
    run = subprocess.Popen(
        command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        while not answered():
            assert run.poll() is None, run.communicate()
            time.sleep(0.005)
        victim.process.send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        assert run.poll() is None, "the run ended before the replica was killed"
        stdout, stderr = run.communicate(timeout=120)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    assert run.returncode == 0, stderr
    assert victim.process.wait(10) == -signal.SIGKILL
    return stdout, stderr, killed_at
