"""End to end: one Triton-layout repository of foreign models and this project's own, served at
once by `python -m server --model-repository`; every answer equals onnxruntime run directly on the
same file, through the Open Inference Protocol with each model's own names and, where the model is
an image classifier, through scratchnet.v1."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import onnxruntime as ort
import pytest
from numpy.typing import NDArray

from scratchnet.api.inference import open_inference_grpc_pb2 as pb
from scratchnet.api.inference.open_inference_grpc_pb2_grpc import GRPCInferenceServiceStub
from scratchnet.api.v1 import classifier_pb2 as v1
from scratchnet.api.v1.classifier_pb2_grpc import ClassifierStub
from scratchnet.datasets import Dataset
from scratchnet.forward import probabilities
from tests.conftest import RunningServer, run_module, start_server
from tests.server import foreign_models
from tests.server.onnx_models import build_classifier, random_classifier

HEIGHT, WIDTH, CLASSES = 28, 28, 10
DTYPES = {
    "FP32": np.float32, "FP16": np.float16, "INT64": np.int64, "BOOL": np.bool_,
    "UINT8": np.uint8,
}  # fmt: skip
FLAT_CONFIG = """
name: "flat_config"
max_batch_size: 64
input [ { name: "float_input" data_type: TYPE_FP32 dims: [ 28, 28 ] reshape { shape: [ 784 ] } } ]
instance_group [ { count: 2 kind: KIND_CPU } ]
"""


@pytest.fixture(scope="module")
def repository(article_artifact: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The repository folder ("") and each model's file, by name."""
    root = tmp_path_factory.mktemp("repository")
    run_module("export", article_artifact, "--triton-repo", root, "--model-name", "article")
    files = {"": root, "article": root / "article" / "1" / "model.onnx"}
    builders = {
        "flat": lambda p: foreign_models.logistic_regression(p, HEIGHT * WIDTH, CLASSES),
        "flat_config": lambda p: foreign_models.logistic_regression(p, HEIGHT * WIDTH, CLASSES, 1),
        "cnn": lambda p: foreign_models.cnn(p, HEIGHT, WIDTH, CLASSES),
        "pair": foreign_models.two_inputs,
        "typed": foreign_models.typed,
        "softmax_logits": lambda p: foreign_models.misnamed(
            p, "Softmax", "logits", HEIGHT, WIDTH, CLASSES
        ),
        "logsoftmax_probs": lambda p: foreign_models.misnamed(
            p, "LogSoftmax", "probs", HEIGHT, WIDTH, CLASSES
        ),
    }
    for name, build in builders.items():
        files[name] = build(root / name / "1" / "model.onnx")
    (root / "flat_config" / "config.pbtxt").write_text(FLAT_CONFIG)
    return files


@pytest.fixture(scope="module")
def served(
    repository: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    running = start_server(
        repository[""],
        "--image-shape",
        f"{HEIGHT}x{WIDTH}",
        tmp_dir=tmp_path_factory.mktemp("repository-server"),
        model_flag="--model-repository",
    )
    yield running
    assert running.stop() == 0


@pytest.fixture(scope="module")
def stubs(served: RunningServer) -> Iterator[tuple[GRPCInferenceServiceStub, ClassifierStub]]:
    with grpc.insecure_channel(served.target) as channel:
        yield GRPCInferenceServiceStub(channel), ClassifierStub(channel)


def _random(datatype: str, shape: tuple[int, ...], seed: int) -> NDArray[Any]:
    rng = np.random.default_rng(seed)
    if datatype == "BOOL":
        return rng.random(shape) < 0.5
    if datatype == "INT64":
        return rng.integers(-1000, 1000, size=shape, dtype=np.int64)
    return rng.random(shape).astype(DTYPES[datatype])


def _run_directly(path: Path, feeds: dict[str, NDArray[Any]]) -> dict[str, NDArray[Any]]:
    """onnxruntime's outputs by name for `feeds`, run in this process."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [output.name for output in session.get_outputs()]
    return dict(zip(names, session.run(names, feeds), strict=True))


def _images_directly(path: Path, images: NDArray[Any]) -> dict[str, NDArray[Any]]:
    """onnxruntime's outputs for images [N,H,W] reshaped to the model's one input."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    first = session.get_inputs()[0]
    dims = [dim if isinstance(dim, int) else 1 for dim in first.shape[1:]]
    return _run_directly(path, {first.name: images.reshape(len(images), *dims)})


def _infer(
    stub: GRPCInferenceServiceStub, name: str, inputs: dict[str, NDArray[Any]]
) -> dict[str, NDArray[Any]]:
    request = pb.ModelInferRequest(model_name=name)
    metadata = stub.ModelMetadata(pb.ModelMetadataRequest(name=name), timeout=30)
    types = {tensor.name: tensor.datatype for tensor in metadata.inputs}
    for input_name, value in inputs.items():
        request.inputs.add(name=input_name, datatype=types[input_name], shape=value.shape)
        request.raw_input_contents.append(value.tobytes())
    response = stub.ModelInfer(request, timeout=30)
    return {
        output.name: np.frombuffer(raw, dtype=DTYPES[output.datatype]).reshape(output.shape)
        for output, raw in zip(response.outputs, response.raw_output_contents, strict=True)
    }


@pytest.mark.parametrize(
    "name", ["article", "flat", "cnn", "pair", "typed", "softmax_logits", "logsoftmax_probs"]
)
def test_each_model_answers_what_onnxruntime_gives_under_its_own_names(
    name: str, repository: dict[str, Path], stubs: tuple[GRPCInferenceServiceStub, Any]
) -> None:
    oip, _ = stubs
    session = ort.InferenceSession(str(repository[name]), providers=["CPUExecutionProvider"])
    metadata = oip.ModelMetadata(pb.ModelMetadataRequest(name=name), timeout=30)
    assert [tensor.name for tensor in metadata.inputs] == [i.name for i in session.get_inputs()]
    assert [tensor.name for tensor in metadata.outputs] == [o.name for o in session.get_outputs()]
    inputs = {}
    for index, tensor in enumerate(metadata.inputs):
        shape = tuple(3 if dim < 0 else dim for dim in tensor.shape)
        value = _random(tensor.datatype, shape, seed=index)
        if name == "article":  # this project's models take pixels in [0, 1]
            value = value.astype(np.float32)
        inputs[tensor.name] = value
    expected = _run_directly(repository[name], inputs)
    got = _infer(oip, name, inputs)
    assert list(got) == list(expected)
    for output, value in expected.items():
        if output == "label":  # the export's config presents [N] as [N,1], as Triton does
            value = value.reshape(-1, 1)
        np.testing.assert_array_equal(got[output], value)


def test_a_config_reshape_takes_images_for_a_flat_model(
    repository: dict[str, Path], stubs: tuple[GRPCInferenceServiceStub, Any], mnist: Dataset
) -> None:
    oip, _ = stubs
    metadata = oip.ModelMetadata(pb.ModelMetadataRequest(name="flat_config"), timeout=30)
    assert list(metadata.inputs[0].shape) == [-1, HEIGHT, WIDTH]
    images = (mnist.test_images[:4] / 255.0).astype(np.float32)
    expected = _images_directly(repository["flat_config"], images)
    got = _infer(oip, "flat_config", {"float_input": images})
    np.testing.assert_array_equal(got["output_label"], expected["output_label"])


CLASSIFIERS = ["article", "flat", "flat_config", "cnn", "softmax_logits", "logsoftmax_probs"]


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_image_classifiers_serve_v1_with_roles_from_the_graph(
    name: str,
    repository: dict[str, Path],
    stubs: tuple[Any, ClassifierStub],
    mnist: Dataset,
) -> None:
    _, classifier = stubs
    images = mnist.test_images[:20]
    pixels = (images / 255.0).astype(np.float32)
    raw = _images_directly(repository[name], pixels)
    expected = {
        "article": raw.get("probabilities"),
        "flat": raw.get("output_probability"),
        "flat_config": raw.get("output_probability"),
        "cnn": probabilities(raw["logits"].astype(np.float64)) if "logits" in raw else None,
        "softmax_logits": raw.get("logits"),  # already probabilities: never softmaxed twice
        "logsoftmax_probs": np.exp(raw["probs"]) if "probs" in raw else None,
    }[name]
    assert expected is not None
    request = v1.PredictRequest(
        model_name=name,
        images=v1.Tensor(dtype=v1.DATA_TYPE_UINT8, shape=images.shape, data=images.tobytes()),
        return_probabilities=True,
    )
    response = classifier.Predict(request, timeout=30)
    got = np.reshape(response.probabilities, (-1, CLASSES))
    np.testing.assert_allclose(got, expected, atol=2e-6)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(response.labels, expected.argmax(axis=1))
    info = classifier.GetModelInfo(v1.GetModelInfoRequest(model_name=name), timeout=30)
    assert list(info.input_shape) == [-1, HEIGHT, WIDTH] and info.num_classes == CLASSES


@pytest.mark.parametrize("name", ["pair", "typed"])
def test_other_models_say_why_v1_cannot_serve_them(
    name: str, stubs: tuple[Any, ClassifierStub]
) -> None:
    _, classifier = stubs
    with pytest.raises(grpc.RpcError) as raised:
        classifier.GetModelInfo(v1.GetModelInfoRequest(model_name=name), timeout=30)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert raised.value.details().startswith(f"model '{name}' is not an image classifier: it has")


def test_the_index_lists_every_model_and_a_v1_call_naming_none_goes_to_the_default(
    stubs: tuple[GRPCInferenceServiceStub, ClassifierStub], served: RunningServer
) -> None:
    oip, classifier = stubs
    index = oip.RepositoryIndex(pb.RepositoryIndexRequest(), timeout=30)
    assert sorted((m.name, m.version, m.state) for m in index.models) == sorted(
        (name, "1", "READY")
        for name in ["article", "flat", "flat_config", "cnn", "pair", "typed", "softmax_logits",
                     "logsoftmax_probs"]
    )  # fmt: skip
    # No model is called "scratchnet" (the default --model-name) and there are several.
    with pytest.raises(grpc.RpcError) as raised:
        classifier.GetModelInfo(v1.GetModelInfoRequest(), timeout=30)
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    assert "the request names no model: name one of article, cnn, flat" in raised.value.details()
    # Load and unload are for --model-control-mode explicit.
    with pytest.raises(grpc.RpcError) as raised:
        oip.RepositoryModelUnload(pb.RepositoryModelUnloadRequest(model_name="cnn"), timeout=30)
    assert raised.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "config" not in served.stderr() or "not acted on" in served.stderr()
    assert "config field 'instance_group' is not acted on by this server" in served.stderr()


REPOSITORY_SESSION = Path(__file__).with_name("tritonclient_repository.py")


def _rows(index: list[dict[str, str]]) -> set[tuple[str, str, str]]:
    """(name, version, state) of each row of a repository index as tritonclient's JSON gives it
    (empty fields left out)."""
    return {(row["name"], row.get("version", ""), row.get("state", "")) for row in index}


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_tritonclient_lists_loads_infers_and_unloads(
    repository: dict[str, Path], tmp_path: Path, protocol: str
) -> None:
    root = tmp_path / "repository"
    for name in ("cnn", "article"):
        (root / name / "1").mkdir(parents=True)
        (root / name / "1" / "model.onnx").write_bytes(repository[name].read_bytes())
    (root / "broken" / "1").mkdir(parents=True)
    (root / "broken" / "1" / "model.onnx").write_bytes(b"not onnx")
    server = start_server(
        root,
        "--model-control-mode",
        "explicit",
        "--load-model",
        "article",
        tmp_dir=tmp_path,
        model_flag="--model-repository",
        http=True,
    )
    target = server.target if protocol == "grpc" else f"{server.host}:{server.http_port}"
    try:
        result = subprocess.run(
            [sys.executable, str(REPOSITORY_SESSION), "--protocol", protocol, "--target", target,
             "--model", "cnn",
             "--other", "broken", "--inputs", str(tmp_path / "inputs.npz")],
            capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL, check=False,
        )  # fmt: skip
    finally:
        assert server.stop() == 0
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    rows = {
        (row["name"], row.get("version", ""), row.get("state", ""))
        for row in report["index_before"]
    }
    assert rows == {("article", "1", "READY"), ("broken", "", ""), ("cnn", "", "")}
    assert (report["ready_before"], report["ready_loaded"], report["ready_unloaded"]) == (
        False,
        True,
        False,
    )
    assert ("cnn", "1", "READY") in {
        (row["name"], row.get("version", ""), row.get("state", ""))
        for row in report["index_loaded"]
    }
    # Unloaded, a version stays listed, as Triton lists it; unloading a name the repository
    # does not hold succeeds.
    assert {"name": "cnn", "version": "1", "state": "UNAVAILABLE", "reason": "unloaded"} in (
        report["index_unloaded"]
    )
    assert report["unload_unknown"] == {"status": None}
    sent = dict(np.load(tmp_path / "inputs.npz"))
    expected = _run_directly(repository["cnn"], sent)
    np.testing.assert_allclose(report["outputs"]["logits"], expected["logits"], rtol=1e-6)
    for row, strings in zip(expected["logits"], report["top"], strict=True):
        assert [int(text.split(":")[1]) for text in strings] == list(np.argsort(-row)[:2])
    config = report["config"]
    assert config["name"] == "cnn" and config["platform"] == "onnxruntime_onnx"
    assert [(t["name"], t["data_type"]) for t in config["input"]] == [("input", "TYPE_FP32")]
    assert [int(d) for d in config["input"][0]["dims"]] == [1, HEIGHT, WIDTH]
    (stats,) = report["statistics"]["model_stats"]
    assert (stats["name"], stats["version"]) == ("cnn", "1")
    success = stats["inference_stats"]["success"]
    assert int(stats["inference_count"]) == 4 and int(success["count"]) == 2
    assert int(success["ns"]) > 0
    if protocol == "http":  # Triton's HTTP server writes 64-bit integers as JSON numbers
        assert isinstance(stats["inference_count"], int) and isinstance(success["ns"], int)
    status = {"grpc": "StatusCode.INVALID_ARGUMENT", "http": "400"}[protocol]
    assert report["other"]["status"] == status
    assert "failed to load 'broken'" in report["other"]["message"]
    broken = [row for row in report["index_after"] if row["name"] == "broken"]
    assert broken and "cannot be loaded by onnxruntime" in broken[0].get("reason", "")


def test_editing_the_repository_under_load_fails_no_call(tmp_path: Path) -> None:
    """8 clients call without pause while a version is added, its file replaced and a corrupt
    version dropped in: every call succeeds with the answer of one of the models in turn."""
    root = tmp_path / "repository"
    images = np.random.default_rng(3).random((8, 5, 6), dtype=np.float32)
    expected = {}
    for seed in (1, 2, 3):
        weights, biases = random_classifier(4, 5, 6, seed=seed)
        path = build_classifier(tmp_path / f"seed{seed}.onnx", weights, biases)
        expected[seed] = _run_directly(path, {"images": images})["scores"]
    (root / "live" / "1").mkdir(parents=True)
    shutil.copy(tmp_path / "seed1.onnx", root / "live" / "1" / "model.onnx")
    server = start_server(
        root, "--model-control-mode", "poll", "--repository-poll-secs", "0.1",
        tmp_dir=tmp_path, model_flag="--model-repository",
    )  # fmt: skip
    answers: list[tuple[str, NDArray[Any]]] = []
    failures: list[str] = []
    stop = threading.Event()

    def call(stub: GRPCInferenceServiceStub) -> None:
        while not stop.is_set():
            try:
                got = _infer(stub, "live", {"images": images})
                version = stub.ModelMetadata(pb.ModelMetadataRequest(name="live"), timeout=30)
                answers.append((version.versions[-1], got["scores"]))  # newest version listed
            except grpc.RpcError as error:
                failures.append(f"{error.code()}: {error.details()}")

    def until(condition: Any) -> None:
        deadline = time.monotonic() + 20
        while not condition():
            assert time.monotonic() < deadline, "the repository change was not picked up"
            time.sleep(0.05)

    try:
        with grpc.insecure_channel(server.target) as channel:
            stub = GRPCInferenceServiceStub(channel)
            threads = [threading.Thread(target=call, args=(stub,)) for _ in range(8)]
            for thread in threads:
                thread.start()
            until(lambda: len(answers) > 20)
            (root / "live" / "2").mkdir()
            shutil.copy(tmp_path / "seed2.onnx", root / "live" / "2" / ".model.onnx.tmp")
            os.replace(root / "live" / "2" / ".model.onnx.tmp", root / "live" / "2" / "model.onnx")
            until(lambda: np.allclose(answers[-1][1], expected[2], atol=1e-5))
            shutil.copy(tmp_path / "seed3.onnx", root / "live" / "2" / ".model.onnx.tmp")
            os.replace(root / "live" / "2" / ".model.onnx.tmp", root / "live" / "2" / "model.onnx")
            until(lambda: np.allclose(answers[-1][1], expected[3], atol=1e-5))
            (root / "live" / "3").mkdir()
            (root / "live" / "3" / "model.onnx").write_bytes(b"corrupt")
            index = lambda: stub.RepositoryIndex(pb.RepositoryIndexRequest(), timeout=30).models  # noqa: E731
            until(lambda: any(m.version == "3" and m.state == "UNAVAILABLE" for m in index()))
            count = len(answers)
            until(lambda: len(answers) > count + 20)
            stop.set()
            for thread in threads:
                thread.join(timeout=30)
    finally:
        stop.set()
        assert server.stop() == 0
    assert failures == []
    seen = set()
    for _, scores in answers:
        matches = [
            seed for seed, value in expected.items() if np.allclose(scores, value, atol=1e-5)
        ]
        assert matches, "an answer that is none of the models'"
        seen.add(matches[0])
    assert seen == {1, 2, 3}
    assert server.stderr().count("3/model.onnx cannot be loaded by onnxruntime") == 1
