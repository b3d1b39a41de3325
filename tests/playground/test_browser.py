"""The playground in a real browser: Debian's headless Chromium driven by playwright-core
(browser_session.mjs, run once in a subprocess; the tests assert on parts of its report).

A "1" and a "0" drawn with mouse events are read right both through the server and in the page,
and the two agree; the MNIST test set scored in the page with onnxruntime-web gives the article's
accuracy with the labels of numpy's forward pass; the page loads nothing from anywhere but the
server; its screenshot is the same twice over.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from scratchnet.artifact import Artifact
from scratchnet.datasets import Dataset
from scratchnet.forward import scores
from server import playground
from tests.conftest import REPO, RunningServer

SESSION = Path(__file__).with_name("browser_session.mjs")
CHROMIUM = Path("/usr/bin/chromium")
PLAYWRIGHT = REPO / "server" / "playground" / "node_modules" / "playwright-core"
BROWSER_SECONDS = 240


def missing() -> str | None:
    """What the browser test needs and does not have (`make test` installs all of it)."""
    if shutil.which("node") is None:
        return "Node.js"
    if not CHROMIUM.exists():
        return f"{CHROMIUM} (tests/playground/install-chromium.sh)"
    if not PLAYWRIGHT.is_dir() or not all(
        (playground.ORT / f).is_file() for f in playground.ORT_FILES
    ):
        return "playwright-core and onnxruntime-web (make playground)"
    return None


@pytest.fixture(scope="module")
def report(
    http_server: RunningServer, mnist: Dataset, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """The browser session's report against the shared HTTP server (the article's model)."""
    absent = missing()
    if absent is not None:
        if os.environ.get("CI"):
            pytest.fail(f"the browser test needs {absent}")
        pytest.skip(f"the browser test needs {absent}")
    folder = tmp_path_factory.mktemp("browser")
    images = folder / "t10k-images-idx3-ubyte"
    images.write_bytes(
        gzip.decompress((REPO / "data/mnist/t10k-images-idx3-ubyte.gz").read_bytes())
    )
    result = subprocess.run(
        ["node", str(SESSION), "--url", f"{http_server.http_url}/", "--images", str(images),
         "--count", str(len(mnist.test_images)), "--screenshot", str(folder / "playground.png")],
        capture_output=True, text=True, timeout=BROWSER_SECONDS, stdin=subprocess.DEVNULL, cwd=REPO,
    )  # fmt: skip
    assert result.returncode == 0, f"browser session failed:\n{result.stderr}"
    found: dict[str, Any] = json.loads(result.stdout)
    found["screenshot"] = folder / "playground.png"
    return found


@pytest.mark.parametrize(("digit", "label"), [("one", 1), ("zero", 0)])
def test_a_drawn_digit_reads_right_on_both_paths_and_they_agree(
    report: dict[str, Any], digit: str, label: int
) -> None:
    server, page = report[digit]["server"], report[digit]["page"]
    assert (server["mode"], page["mode"]) == ("server", "page")
    assert server["label"] == page["label"] == label
    assert server["pixels"] == page["pixels"]  # the same drawing, preprocessed once
    np.testing.assert_allclose(server["probabilities"], page["probabilities"], atol=1e-6)
    assert max(server["probabilities"]) == server["probabilities"][label]
    assert server["winnerTemplate"] == str(label)


def test_the_mnist_test_set_scored_in_the_page_matches_numpy(
    report: dict[str, Any], mnist: Dataset, artifact: Artifact
) -> None:
    expected = scores(artifact.weights, artifact.biases, mnist.test_images).argmax(axis=1)
    labels = np.asarray(report["mnist_labels"])
    assert labels.shape == expected.shape
    assert int(np.sum(labels != expected)) == 0
    assert float(np.mean(labels == mnist.test_labels)) == 0.9104


def test_the_page_loads_everything_from_the_server_with_the_right_types(
    report: dict[str, Any], http_server: RunningServer
) -> None:
    assert report["console"] == []
    assert report["hosts"] == [f"{http_server.host}:{http_server.http_port}"]
    types = report["content_types"]
    assert types["/"] == "text/html; charset=utf-8"
    for name in ("playground.mjs", "preprocess.mjs", "ort/ort.wasm.min.mjs"):
        assert types[f"/playground/{name}"] == "text/javascript; charset=utf-8"
    assert types["/playground/ort/ort-wasm-simd-threaded.wasm"] == "application/wasm"
    assert report["ort_note"].startswith("In this page: onnxruntime-web runs model.onnx")


def test_the_screenshot_is_deterministic(report: dict[str, Any]) -> None:
    assert report["seven"]["label"] == 7
    assert report["screenshots_identical"] is True
    assert report["screenshot"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
