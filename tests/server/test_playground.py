"""server.playground without a browser: which files it serves, and what it tells the page about
the article's model and about a foreign one."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from scratchnet.artifact import Artifact
from scratchnet.errors import FailedPrecondition, InvalidArgument
from server import playground
from tests.conftest import RunningServer, start_server
from tests.server.conftest import plane_with
from tests.server.onnx_models import build_classifier, random_classifier


def test_only_the_page_the_shared_module_and_onnxruntime_web_are_served() -> None:
    found = playground.asset("preprocess.mjs")
    assert found is not None and found.path == playground.PREPROCESS
    assert found.media_type.startswith("text/javascript")
    assert playground.asset("playground.css") is not None
    for name in ("../__init__.py", "ort/../../__init__.py", "/etc/passwd", "static/index.html",
                 "ort/ort.min.js", "package.json", ""):  # fmt: skip
        assert playground.asset(name) is None, name


def test_onnxruntime_web_is_reported_missing_when_its_files_are(
    model_onnx: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(playground, "ORT", tmp_path)
    plane = plane_with(model_onnx)
    assert playground.models(plane) == {
        "models": [{"name": "scratchnet", "version": "1"}],
        "onnxruntime_web": False,
    }
    for name in playground.ORT_FILES:
        (tmp_path / name).write_bytes(b"x")
    assert playground.models(plane)["onnxruntime_web"] is True
    assert playground.asset(f"ort/{playground.ORT_FILES[2]}") is not None


def test_the_article_model_comes_with_its_weight_templates(
    model_onnx: Path, artifact: Artifact
) -> None:
    described = playground.describe(plane_with(model_onnx).model("scratchnet"))
    assert (described["height"], described["width"]) == (28, 28)
    assert described["class_labels"] == [str(digit) for digit in range(10)]
    assert described["input"] == {"name": "images", "datatype": "FP32", "dims": [-1, 28, 28]}
    assert described["outputs"]["label"] == {"output": "label", "holds": "label"}
    assert described["model_url"] == "/playground/api/models/scratchnet/versions/1/model.onnx"
    templates = np.asarray(described["templates"])
    assert templates.shape == (10, 28, 28)
    assert np.array_equal(templates, artifact.weights.astype(np.float32))
    assert np.array_equal(described["biases"], artifact.biases.astype(np.float32))


def foreign(tmp_path: Path) -> Path:
    """A classifier this project did not export: Gemm over flat pixels, its own names, labels
    derived from logits."""
    weights, biases = random_classifier(4, 6, 5)
    return build_classifier(
        tmp_path / "foreign.onnx", weights, biases, input_name="x",
        outputs=(("scores", "logits"),), input_dtype="uint8",
    )  # fmt: skip


def test_a_foreign_model_has_no_templates_and_says_where_its_outputs_are(tmp_path: Path) -> None:
    described = playground.describe(plane_with(foreign(tmp_path)).model("scratchnet"))
    assert described["templates"] is None and described["biases"] is None
    assert (described["height"], described["width"]) == (6, 5)
    assert described["input"]["datatype"] == "UINT8"
    assert described["outputs"] == {
        "label": {"output": "logits", "holds": "scores"},
        "scores": {"output": "logits", "holds": "scores"},
        "probabilities": {"output": "logits", "holds": "scores"},
    }


def test_a_model_that_is_not_an_image_classifier_is_refused(model_onnx: Path) -> None:
    model = plane_with(model_onnx).model("scratchnet")
    with pytest.raises(InvalidArgument, match="is not an image classifier"):
        playground.describe(type(model)(**{**vars(model), "classifier": None}))


@pytest.fixture(scope="module")
def foreign_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    folder = tmp_path_factory.mktemp("foreign-playground")
    running = start_server(foreign(folder), "--model-name", "tiny", tmp_dir=folder, http=True)
    yield running
    assert running.stop() == 0


def get(url: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=30) as reply:
            return reply.status, reply.headers["content-type"], reply.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers["content-type"], error.read()


def test_the_page_and_its_api_over_http(foreign_server: RunningServer, tmp_path: Path) -> None:
    base = foreign_server.http_url
    status, kind, body = get(f"{base}/")
    assert status == 200 and kind == "text/html; charset=utf-8" and b"playground.mjs" in body
    listed = json.loads(get(f"{base}/playground/api/models")[2])
    assert listed["models"] == [{"name": "tiny", "version": "1"}]
    described = json.loads(get(f"{base}/playground/api/models/tiny")[2])
    assert described["templates"] is None
    status, kind, body = get(f"{base}{described['model_url']}")
    assert status == 200 and kind == "application/octet-stream"
    assert body == Path(foreign_server.process.args[4]).read_bytes()  # --model PATH
    status, kind, body = get(f"{base}/playground/api/models/nope")
    assert (status, json.loads(body)) == (
        404,
        {"error": "Request for unknown model: 'nope' is not found"},
    )
    assert get(f"{base}/playground/../server/app.py")[0] == 404


def test_the_page_and_the_model_file_are_revalidated_and_not_sent_again(
    foreign_server: RunningServer,
) -> None:
    # no-cache: the browser asks every time, so a reloaded model or a new page reaches it at
    # once; a copy it still holds is a 304, not the whole file again.
    base = foreign_server.http_url
    for path in ("/", "/playground/api/models/tiny/versions/1/model.onnx"):
        with urllib.request.urlopen(f"{base}{path}", timeout=30) as reply:
            assert reply.headers["cache-control"] == "no-cache"
            etag, modified = reply.headers["etag"], reply.headers["last-modified"]
        for validator in ({"If-None-Match": etag}, {"If-Modified-Since": modified}):
            request = urllib.request.Request(f"{base}{path}", headers=validator)
            with pytest.raises(urllib.error.HTTPError) as answered:
                urllib.request.urlopen(request, timeout=30)
            assert answered.value.code == 304 and answered.value.read() == b""
            assert answered.value.headers["etag"] == etag
        changed = urllib.request.Request(f"{base}{path}", headers={"If-None-Match": '"other"'})
        with urllib.request.urlopen(changed, timeout=30) as reply:
            assert reply.status == 200 and reply.read()


def test_the_page_never_gets_a_file_other_than_the_model_served(tmp_path: Path) -> None:
    path = foreign(tmp_path)
    model = plane_with(path, "d#x 1").model("d#x 1")
    described = playground.describe(model)
    assert described["model_url"] == "/playground/api/models/d%23x%201/versions/1/model.onnx"
    assert playground.model_file(model) == path
    # Replaced on disk after loading (a new export, an rm): the server still runs what it loaded.
    path.write_bytes(path.read_bytes())
    for call in (playground.model_file, playground.describe):
        with pytest.raises(FailedPrecondition, match=r"its file .* has changed on disk since"):
            call(model)
