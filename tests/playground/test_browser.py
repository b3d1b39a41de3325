"""The playground in a real browser: Debian's headless Chromium driven by playwright-core
(browser_session.mjs, run once in a subprocess; the tests assert on parts of its report).

A "1" and a "0" drawn with mouse events are read right both through the server and in the page,
and the two agree; the MNIST test set scored in the page with onnxruntime-web gives the article's
accuracy with the labels of numpy's forward pass; the page loads nothing from anywhere but the
server; its screenshot is the same twice over. The article's classifier rebuilt with an input
[N,1,H,W] and one [N,H·W] reads a drawn "1" through the server as onnxruntime does.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from scratchnet.artifact import Artifact
from scratchnet.contract import IMAGE_SHAPE, INPUT_SCALE_KEY, LABEL, PROBABILITIES, scale_uint8
from scratchnet.datasets import Dataset
from scratchnet.forward import scores
from server import playground
from tests.conftest import REPO, RunningServer, start_server
from tests.server.onnx_models import build_classifier

SESSION = Path(__file__).with_name("browser_session.mjs")
CHROMIUM = Path("/usr/bin/chromium")
PLAYWRIGHT = REPO / "server" / "playground" / "node_modules" / "playwright-core"
BROWSER_SECONDS = 240
SHAPES = ("nchw", "flat")
"""Models of the other input shapes 'through the server' must send: [N,1,H,W] and [N,H·W]."""


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


def browse(server: RunningServer, *args: str) -> dict[str, Any]:
    """browser_session.mjs's report on the page of `server` with `args`; skipped (failed in CI)
    when the browser's tools are missing."""
    absent = missing()
    if absent is not None:
        if os.environ.get("CI"):
            pytest.fail(f"the browser test needs {absent}")
        pytest.skip(f"the browser test needs {absent}")
    result = subprocess.run(
        ["node", str(SESSION), "--url", f"{server.http_url}/", *args],
        capture_output=True, text=True, timeout=BROWSER_SECONDS, stdin=subprocess.DEVNULL, cwd=REPO,
    )  # fmt: skip
    assert result.returncode == 0, f"browser session failed:\n{result.stderr}"
    found: dict[str, Any] = json.loads(result.stdout)
    return found


@pytest.fixture(scope="module")
def report(
    http_server: RunningServer, mnist: Dataset, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """The browser session's report against the shared HTTP server (the article's model)."""
    folder = tmp_path_factory.mktemp("browser")
    images = folder / "t10k-images-idx3-ubyte"
    images.write_bytes(
        gzip.decompress((REPO / "data/mnist/t10k-images-idx3-ubyte.gz").read_bytes())
    )
    found = browse(
        http_server, "--images", str(images), "--count", str(len(mnist.test_images)),
        "--screenshot", str(folder / "playground.png"),
    )  # fmt: skip
    found["screenshot"] = folder / "playground.png"
    return found


@pytest.fixture(scope="module")
def shaped_repository(
    artifact: Artifact, model_onnx: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """A model repository of the article's classifier under each name of SHAPES, with that
    input shape and the exported model's metadata (class labels, input scale, image shape)."""
    root = tmp_path_factory.mktemp("shaped")
    metadata = {prop.key: prop.value for prop in onnx.load(model_onnx).metadata_props}
    for name in SHAPES:
        (root / name / "1").mkdir(parents=True)
        build_classifier(
            root / name / "1" / "model.onnx", artifact.weights, artifact.biases,
            channel_axis=name == "nchw", flat=name == "flat", metadata=metadata,
        )  # fmt: skip
    return root


@pytest.fixture(scope="module")
def shaped_server(
    shaped_repository: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    """One HTTP server for the module serving shaped_repository."""
    running = start_server(
        shaped_repository, tmp_dir=tmp_path_factory.mktemp("shaped-server"),
        model_flag="--model-repository", http=True,
    )  # fmt: skip
    yield running
    assert running.stop() == 0


@pytest.fixture(scope="module")
def shaped_report(shaped_server: RunningServer) -> dict[str, Any]:
    """One browser session over the page of every model of shaped_server."""
    return browse(shaped_server, "--models", ",".join(SHAPES))


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


@pytest.mark.parametrize("name", SHAPES)
def test_a_drawn_digit_reads_right_through_the_server_whatever_the_input_shape(
    shaped_report: dict[str, Any], shaped_repository: Path, name: str
) -> None:
    session = ort.InferenceSession(
        str(shaped_repository / name / "1" / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    (image,) = session.get_inputs()
    dims = [dim if isinstance(dim, int) else -1 for dim in image.shape]
    found = shaped_report["models"][name]
    server, page = found["server"], found["page"]
    # A refused request shows the server's message, e.g. "expected shape [-1,1,H,W], got [1,H,W]".
    assert server["warning"] is False, server["text"]
    assert page["warning"] is False, page["text"]
    assert found["model_line"].startswith(f"model '{name}' ")  # not the first model served
    assert f"[{','.join(map(str, dims))}]" in found["model_line"]
    metadata = session.get_modelmeta().custom_metadata_map
    height, width = json.loads(metadata[IMAGE_SHAPE])
    assert f"centred by mass in {width}\N{MULTIPLICATION SIGN}{height}" in found["framing"]
    assert (server["mode"], page["mode"]) == ("server", "page")
    assert server["pixels"] == page["pixels"]
    pixels = np.asarray(server["pixels"], dtype=np.uint8).reshape([1, *dims[1:]])
    scale = float(metadata[INPUT_SCALE_KEY])
    label, probabilities = session.run(
        [LABEL, PROBABILITIES], {image.name: scale_uint8(pixels, scale)}
    )
    assert server["label"] == page["label"] == int(label[0])
    np.testing.assert_allclose(server["probabilities"], probabilities[0], atol=1e-6)
    np.testing.assert_allclose(page["probabilities"], probabilities[0], atol=1e-6)
    assert shaped_report["console"] == []
