"""scratchnet.api/ must be what scripts/generate_proto.py makes from proto/ (`make proto`)."""

from __future__ import annotations

import subprocess

from tests.conftest import PYTHON, REPO


def test_generated_code_is_up_to_date() -> None:
    result = subprocess.run(
        [PYTHON, "scripts/generate_proto.py", "--check"],
        cwd=REPO, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "scratchnet/api/ is up to date"
