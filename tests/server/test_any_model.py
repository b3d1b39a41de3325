"""Models unlike an image classifier, in process: served as Triton's onnxruntime backend serves
them. Whether a model batches comes from its inputs and its outputs; a request is run whole
unless the model is this project's own export; a model that cannot run on zeros is served all
the same; onnxruntime's reason for a failed run reaches the client; a config's outputs are the
model's outputs."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from google.protobuf import text_format
from onnx import TensorProto, helper, numpy_helper

from scratchnet.errors import InvalidArgument, ModelError, ModelFailed
from server.dataplane import DataPlane, InferRequest, RequestedOutput
from server.model import UNMEASURED, load_model
from server.model_config import ModelConfig
from server.repository import ModelRepository
from server.tensors import InputTensor, pack_strings
from tests.server import foreign_models
from tests.server.conftest import infer, plane_with, tensor

F = TensorProto.FLOAT


def _save(
    path: Path,
    nodes: list[onnx.NodeProto],
    inputs: list[onnx.ValueInfoProto],
    outputs: list[onnx.ValueInfoProto],
    *initializers: onnx.TensorProto,
) -> Path:
    graph = helper.make_graph(nodes, path.stem, inputs, outputs, list(initializers))
    return foreign_models.save(path, graph)


def _whole(path: Path, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    """The model's outputs, run by onnxruntime in this process, the whole batch at once."""
    return ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, feeds)


def test_a_model_mixing_its_rows_gets_one_run_of_the_whole_request(tmp_path: Path) -> None:
    # Centres each column on its mean over the batch: a run in slices would centre each slice.
    path = _save(
        tmp_path / "center.onnx",
        [
            helper.make_node("ReduceMean", ["x"], ["mean"], axes=[0], keepdims=1),
            helper.make_node("Sub", ["x", "mean"], ["y"]),
        ],
        [helper.make_tensor_value_info("x", F, ["N", 4096])],
        [helper.make_tensor_value_info("y", F, ["N", 4096])],
    )
    plane = plane_with(path, "center")
    assert not plane.model("center").splits_rows
    # 8 MB of input: a run for the inference threads, far over a slice's megabyte.
    x = np.random.default_rng(0).normal(size=(500, 4096)).astype(np.float32)
    x += np.arange(500, dtype=np.float32)[:, None]
    answer = infer(plane, InferRequest("center", "", [tensor(x, "x")]))
    np.testing.assert_array_equal(answer.outputs["y"], _whole(path, {"x": x})[0])


def test_this_projects_exports_may_run_in_slices(model_onnx: Path) -> None:
    model = load_model(model_onnx, "article", max_batch=1024)
    assert model.splits_rows and model.max_batch == 1024


@pytest.mark.parametrize(
    ("name", "node", "output"),
    [
        ("total", helper.make_node("ReduceSum", ["x"], ["s"], keepdims=0), (F, [])),
        ("nonzero", helper.make_node("NonZero", ["x"], ["s"]), (TensorProto.INT64, [2, "K"])),
    ],
)
def test_a_model_whose_outputs_are_not_one_per_item_does_not_batch(
    tmp_path: Path, name: str, node: onnx.NodeProto, output: tuple[int, list[object]]
) -> None:
    path = _save(
        tmp_path / f"{name}.onnx",
        [node],
        [helper.make_tensor_value_info("x", F, ["N", 3])],
        [helper.make_tensor_value_info("s", *output)],
    )
    plane = plane_with(path, name)
    model = plane.model(name)
    assert model.max_batch == 0 and model.inputs[0].dims == (-1, 3)
    x = np.array([[0, 1, 0], [2, 0, 3]], dtype=np.float32)
    answer = infer(plane, InferRequest(name, "", [tensor(x, "x")]))
    np.testing.assert_array_equal(answer.outputs["s"], _whole(path, {"x": x})[0])


def test_max_batch_size_needs_outputs_with_a_batch_dimension_too(tmp_path: Path) -> None:
    path = _save(
        tmp_path / "model.onnx",
        [helper.make_node("ReduceSum", ["x"], ["s"], keepdims=0)],
        [helper.make_tensor_value_info("x", F, ["N", 3])],
        [helper.make_tensor_value_info("s", F, [])],
    )
    config = text_format.Parse("max_batch_size: 8", ModelConfig())
    with pytest.raises(ModelError, match=r"max_batch_size 8 needs a dynamic first dimension, "
                       r"but output 's' FP32 \[\] has none: set max_batch_size 0"):  # fmt: skip
        load_model(path, "m", config=config, max_batch=1024)


def test_a_model_that_cannot_run_on_zeros_is_served_and_never_run_on_the_loop(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A fully convolutional model: any image of at least 3x3 pixels, but not the 1x1 of zeros.
    weights = np.random.default_rng(1).normal(size=(4, 3, 3, 3)).astype(np.float32)
    path = _save(
        tmp_path / "fcn.onnx",
        [helper.make_node("Conv", ["x", "w"], ["y"])],
        [helper.make_tensor_value_info("x", F, ["N", 3, "H", "W"])],
        [helper.make_tensor_value_info("y", F, ["N", 4, "h", "w"])],
        numpy_helper.from_array(weights, "w"),
    )
    with caplog.at_level(logging.WARNING, logger="server.model"):
        plane = plane_with(path, "fcn")
    assert f"model {path} does not run on a one-item batch of zeros (x [1,3,1,1])" in caplog.text
    assert plane.model("fcn").seconds == UNMEASURED
    x = np.random.default_rng(2).random((2, 3, 8, 8), dtype=np.float32)
    answer = infer(plane, InferRequest("fcn", "", [tensor(x, "x")]))
    np.testing.assert_allclose(answer.outputs["y"], _whole(path, {"x": x})[0], rtol=1e-6)


def test_onnxruntime_reasons_reach_the_client(tmp_path: Path) -> None:
    path = _save(
        tmp_path / "open.onnx",
        [helper.make_node("Add", ["a", "b"], ["c"])],
        [helper.make_tensor_value_info(name, F, ["A", "B"]) for name in "ab"],
        [helper.make_tensor_value_info("c", F, ["A", "B"])],
    )
    plane = plane_with(path, "open", max_batch=4)
    a, b = np.ones((2, 2), np.float32), np.ones((2, 3), np.float32)
    request = InferRequest("open", "", [tensor(a, "a"), tensor(b, "b")])
    with pytest.raises(ModelFailed, match=r"^model 'open': onnxruntime could not run it on these "
                       r"inputs: Non-zero status code returned while running Add node\..*"
                       r"Attempting to broadcast an axis by a dimension other than 1"):  # fmt: skip
        infer(plane, request)
    figures = plane.model_statistics("open")[0]
    assert (figures.success.count, figures.fail.count) == (0, 1)


def test_a_config_listing_some_outputs_makes_them_the_models_outputs(tmp_path: Path) -> None:
    path = foreign_models.two_inputs(tmp_path / "pair.onnx")
    config = text_format.Parse(
        'max_batch_size: 4 output [ { name: "sum" data_type: TYPE_FP32 dims: [ 3 ] } ]',
        ModelConfig(),
    )
    repository = ModelRepository()
    repository.add(load_model(path, "pair", config=config, max_batch=1024))
    plane = DataPlane(repository)
    assert [spec.name for spec in plane.model("pair").outputs] == ["sum"]
    a = np.ones((2, 3), np.float32)
    feeds = [tensor(a, "a"), tensor(a, "b")]
    assert list(infer(plane, InferRequest("pair", "", feeds)).outputs) == ["sum"]
    with pytest.raises(InvalidArgument, match="unexpected inference output 'product'"):
        infer(plane, InferRequest("pair", "", feeds, [RequestedOutput("product")]))


def test_classification_of_an_output_without_numbers_names_its_protocol_datatype(
    tmp_path: Path,
) -> None:
    plane = plane_with(foreign_models.strings(tmp_path / "s.onnx"), "echo")
    text = np.array([[b"a"], [b"b"]], dtype=object)
    request = InferRequest(
        "echo",
        "",
        [InputTensor("text", "BYTES", text.shape, raw=pack_strings(text))],
        [RequestedOutput("echo", {"classification": 1})],
    )
    with pytest.raises(InvalidArgument, match=r"class_count needs numbers, the output is BYTES$"):
        infer(plane, request)


def test_an_initializer_listed_as_an_input_is_served_as_its_weights_and_said_so(
    tmp_path: Path,
) -> None:
    # IR >= 4 lets a graph list an initializer as an input too (one a caller may override).
    path = _save(
        tmp_path / "bias.onnx",
        [helper.make_node("Add", ["x", "bias"], ["y"])],
        [helper.make_tensor_value_info(name, F, dims) for name, dims in [("x", ["N", 4]),
                                                                         ("bias", [4])]],
        [helper.make_tensor_value_info("y", F, ["N", 4])],
        numpy_helper.from_array(np.arange(4, dtype=np.float32), "bias"),
    )  # fmt: skip
    plane = plane_with(path, "bias")
    assert [spec.name for spec in plane.model("bias").inputs] == ["x"]
    x = np.ones((2, 4), np.float32)
    answer = infer(plane, InferRequest("bias", "", [tensor(x, "x")]))
    np.testing.assert_array_equal(answer.outputs["y"], x + np.arange(4, dtype=np.float32))
    request = InferRequest("bias", "", [tensor(x, "x"), tensor(np.zeros(4, np.float32), "bias")])
    overriding = "it is an initializer of the graph, which requests cannot override"
    with pytest.raises(InvalidArgument, match=f"input 'bias' for model 'bias': {overriding}"):
        infer(plane, request)
    config = text_format.Parse('input [ { name: "bias" data_type: TYPE_FP32 dims: [ 4 ] } ]',
                               ModelConfig())  # fmt: skip
    with pytest.raises(ModelError, match="config input 'bias' is an initializer the graph also "
                       "lists as an input"):  # fmt: skip
        load_model(path, "bias", config=config, max_batch=8)
