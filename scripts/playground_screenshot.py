"""Take the playground's screenshot for the README: serve artifacts/model.onnx with HTTP, draw a 7
in headless Chromium (tests/playground/browser_session.mjs) and save the page as a PNG.

    .venv/bin/python scripts/playground_screenshot.py docs/playground.png   # or: make screenshot
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from scratchnet.cli import ArgumentParser, run_cli
from scratchnet.contract import DEFAULT_MODEL
from scratchnet.errors import ScratchnetError
from scratchnet.files import atomic_write, check_writable
from scratchnet.launcher import ServerProcess

PROGRAM = "scripts/playground_screenshot.py"
ROOT = Path(__file__).resolve().parent.parent
SESSION = ROOT / "tests" / "playground" / "browser_session.mjs"


def main() -> int:
    """Serve, draw, save; the page's answer is printed."""
    parser = ArgumentParser(prog=PROGRAM, description=__doc__.splitlines()[0])
    parser.add_argument("output", type=Path, help="where the PNG goes")
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    args = parser.parse_args()
    check_writable(args.output)  # before a server and a browser start
    with tempfile.TemporaryDirectory() as folder:
        logs = Path(folder)
        empty = logs / "no-images"
        empty.write_bytes(bytes(16))  # an IDX header and no images: nothing to score
        shot = logs / "screenshot.png"  # moved into place whole, once it is right
        with ServerProcess.start(args.model, stdout=logs / "server.log", http=True) as server:
            result = subprocess.run(
                ["node", str(SESSION), "--url", f"{server.http_url}/", "--images", str(empty),
                 "--count", "0", "--screenshot", str(shot)],
                capture_output=True, text=True, timeout=300, check=False, stdin=subprocess.DEVNULL,
            )  # fmt: skip
        if result.returncode != 0:
            # Node's first line says what failed; its stack trace follows on the others.
            first = next((line for line in result.stderr.splitlines() if line.strip()), "")
            raise ScratchnetError(f"the browser session failed: {first.strip() or 'no message'}")
        report = json.loads(result.stdout)
        if not report["screenshots_identical"]:
            raise ScratchnetError("two screenshots of the same page differ: not deterministic")
        with atomic_write(args.output) as handle:
            handle.write(shot.read_bytes())
    print(f"wrote {args.output} (the page reads the drawn 7 as {report['seven']['label']})")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    run_cli(PROGRAM, main)
