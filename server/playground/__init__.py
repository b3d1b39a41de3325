"""The playground's side of the server: the files of the page at / and what the page needs to
know about a model, without any HTTP (http_app routes requests here).

Files: `static/` (the page), `scratchnet/web/preprocess.mjs` (the MNIST-style preprocessing
that the Node.js client shares) and `static/ort/`, onnxruntime-web's files, copied there by
`make playground` from npm and never committed; the page says so when they are missing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import onnx
from onnx import numpy_helper

import scratchnet
from scratchnet.contract import BIASES, WEIGHTS
from scratchnet.errors import FailedPrecondition, InvalidArgument
from server.dataplane import DataPlane
from server.model import Model

__all__ = ["INDEX", "ORT_FILES", "Asset", "asset", "describe", "model_file", "models"]

STATIC = Path(__file__).resolve().parent / "static"
ORT = STATIC / "ort"
PREPROCESS = Path(scratchnet.__file__).resolve().parent / "web" / "preprocess.mjs"
ORT_FILES = ("ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")
"""onnxruntime-web's WebAssembly build: the module the page imports and what it loads."""
_MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".wasm": "application/wasm",
    ".png": "image/png",
    ".svg": "image/svg+xml",
}


@dataclass(frozen=True)
class Asset:
    """A file the playground serves and its media type."""

    path: Path
    media_type: str


INDEX = Asset(STATIC / "index.html", _MEDIA_TYPES[".html"])


def asset(name: str) -> Asset | None:
    """The file at /playground/`name`, or None: only the page's own files, the shared
    preprocessing module and onnxruntime-web's files are served, whatever `name` says."""
    if name == "preprocess.mjs":
        path = PREPROCESS
    elif name.startswith("ort/") and name[4:] in ORT_FILES:
        path = ORT / name[4:]
    elif "/" not in name and name in _page_files():
        path = STATIC / name
    else:
        return None
    if not path.is_file():
        return None
    return Asset(path, _MEDIA_TYPES.get(path.suffix, "application/octet-stream"))


def _page_files() -> set[str]:
    return {entry.name for entry in os.scandir(STATIC) if entry.is_file()}


def models(plane: DataPlane) -> dict[str, Any]:
    """The image classifiers the page can draw for, and whether it can also run them itself."""
    return {
        "models": [
            {"name": model.name, "version": model.version}
            for model in plane.repository.models()
            if model.classifier is not None
        ],
        "onnxruntime_web": all((ORT / name).is_file() for name in ORT_FILES),
    }


def model_file(model: Model) -> Path:
    """The ONNX file of `model`, for the page to run: FailedPrecondition once the file on disk
    is no longer the one the server loaded, so that the page never runs another model."""
    if not model.file_unchanged:
        raise FailedPrecondition(
            f"model '{model.name}' version {model.version}: its file {model.path} has changed "
            "on disk since the server loaded it, so the page cannot run the model the server "
            "serves; reload the model (SIGHUP, or a load with --model-control-mode explicit)"
        )
    return model.path


def describe(model: Model) -> dict[str, Any]:
    """What the page needs to draw for `model`, feed it and read its answer, in either place:
    sizes, labels, the input, which ONNX output holds what, and the weight templates when the
    model is the article's kind (an initializer `weights` [C,H,W])."""
    classifier = model.classifier
    if classifier is None:
        raise InvalidArgument(
            f"model '{model.name}' is not an image classifier: the playground draws images for "
            "image classifiers only"
        )
    weights, biases = _templates(model)
    # Quoted: a model's folder name may hold '#', '?', '%' or spaces.
    base = f"/playground/api/models/{quote(model.name, safe='')}/versions/{quote(model.version)}"
    return {
        "name": model.name,
        "version": model.version,
        "height": classifier.height,
        "width": classifier.width,
        "class_labels": list(classifier.class_labels),
        "input": {
            "name": classifier.input.name,
            "datatype": classifier.input.datatype.name,
            "dims": list(classifier.input.dims),
        },
        "input_scale": classifier.input_scale,
        # ONNX output -> what it holds; the page derives the label and probabilities from them
        # as the server does (argmax, softmax, exp), whichever side ran the model.
        "outputs": {
            role: {"output": source.onnx_name, "holds": source.role}
            for role, source in classifier.sources.items()
        },
        "model_url": f"{base}/model.onnx",
        "templates": weights,
        "biases": biases,
    }


def _templates(model: Model) -> tuple[list[Any] | None, list[float] | None]:
    """The weights [C,H,W] and biases [C] of the article's model, as lists; None otherwise."""
    classifier = model.classifier
    assert classifier is not None
    graph = onnx.load(os.fspath(model_file(model)), load_external_data=False).graph
    found = {tensor.name: tensor for tensor in graph.initializer}
    if WEIGHTS not in found:
        return None, None
    weights = numpy_helper.to_array(found[WEIGHTS])
    expected = (classifier.num_classes, classifier.height, classifier.width)
    if weights.shape != expected or weights.dtype.kind != "f":
        return None, None
    biases = numpy_helper.to_array(found[BIASES]) if BIASES in found else None
    bias_list = None
    if biases is not None and biases.shape == (classifier.num_classes,):
        bias_list = np.asarray(biases, dtype=np.float64).tolist()
    return np.asarray(weights, dtype=np.float64).tolist(), bias_list
