"""`python -m export` / `scratchnet-export`: outputs, defaults, --check, and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper
from onnx.reference import ReferenceEvaluator

from export import model as export_model
from export.__main__ import main
from export.graph import max_opset
from scratchnet.artifact import save_artifact
from tests.conftest import assert_one_line_error, run_module

SCRIPT = Path(sys.executable).with_name("scratchnet-export")


def _cli(*args: str | Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exited:
        main([str(arg) for arg in args])
    out, err = capsys.readouterr()
    return int(exited.value.code or 0), out, err


@pytest.fixture
def small_data(tmp_path: Path) -> Path:
    """A Keras-style npz of random 5x7 images in 3 classes, matching the small artifact."""
    rng = np.random.default_rng(4)
    path = tmp_path / "small-data.npz"
    np.savez(
        path,
        x_train=rng.integers(0, 256, (30, 5, 7), dtype=np.uint8),
        y_train=np.arange(30) % 3,
        x_test=rng.integers(0, 256, (40, 5, 7), dtype=np.uint8),
        y_test=np.arange(40) % 3,
    )
    return path


def test_export_writes_the_model_and_says_so(
    small_artifact: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "out" / "model.onnx"
    code, out, err = _cli(small_artifact, "-o", output, "--input-dtype", "uint8", capsys=capsys)
    assert (code, err) == (0, "")
    model = onnx.load(output)
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert out.startswith(f"wrote {output} (images uint8 [batch,5,7] -> scores float32")
    assert "opset 17, IR 8, model version 1" in out
    assert [p.name for p in tmp_path.joinpath("out").iterdir()] == ["model.onnx"]  # no temp file


def test_same_artifact_and_options_give_the_same_file(
    small_artifact: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first, second, third = (tmp_path / f"{name}.onnx" for name in ("a", "b", "c"))
    for output in (first, second):
        assert _cli(small_artifact, "-o", output, "--opset", "15", capsys=capsys)[0] == 0
    assert first.read_bytes() == second.read_bytes()
    assert _cli(small_artifact, "-o", third, "--model-version", "2", capsys=capsys)[0] == 0
    assert onnx.load(third).model_version == 2
    assert third.read_bytes() != first.read_bytes()


def test_console_script_reads_and_writes_the_default_paths(
    small_artifact: Path, tmp_path: Path
) -> None:
    (tmp_path / "artifacts").mkdir()
    (tmp_path / "artifacts" / "model.npz").write_bytes(small_artifact.read_bytes())
    result = subprocess.run(
        [SCRIPT], cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("wrote artifacts/model.onnx (")
    assert onnx.load(tmp_path / "artifacts" / "model.onnx").graph.name == "scratchnet"


BAD_INVOCATIONS = {
    "missing artifact": (["{tmp}/nope.npz"], "artifact {tmp}/nope.npz not found"),
    "invalid artifact": (["{tmp}/garbage.npz"], "garbage.npz is not an npz file: expected the"),
    "parameters beyond float32": (["{tmp}/huge.npz"], "weights hold 1e+39, which float32 cannot"),
    "output under a file": (
        ["{artifact}", "-o", "{tmp}/garbage.npz/m.onnx"],
        "garbage.npz is not a folder",
    ),
    "output is a directory": (["{artifact}", "-o", "{tmp}"], "it is a directory"),
    "unknown option": (["{artifact}", "--frobnicate"], "unrecognized arguments: --frobnicate"),
    "opset too old": (["{artifact}", "--opset", "12"], "opset 12 cannot express the graph"),
    "opset too new": (["{artifact}", "--opset", "999"], "opset 999 is newer than the installed"),
    "opset not a number": (["{artifact}", "--opset", "x"], "--opset: expected an integer, got 'x'"),
    "input dtype": (["{artifact}", "--input-dtype", "float16"], "invalid choice: 'float16'"),
    "model version": (["{artifact}", "--model-version", "0"], "expected an integer from 1 to"),
    "model version past int64": (
        ["{artifact}", "--model-version", "9223372036854775808"],
        "expected an integer from 1 to 9223372036854775807",
    ),
    "artifact is a folder": (["{tmp}"], "is a folder: expected the .npz file"),
    "repository clashing with a file": (
        ["{artifact}", "--triton-repo", "{tmp}/clash", "--model-name", "m"],
        "clash/m/1 is not a folder",
    ),
    "model file beside a repository is a folder": (
        ["{artifact}", "--triton-repo", "{tmp}/t2", "-o", "{tmp}"],
        "it is a directory",
    ),
    "model name": (["{artifact}", "--model-name", "../x"], "model name '../x'"),
    "empty model name": (["{artifact}", "--model-name", ""], "model name ''"),
    "max batch": (
        ["{artifact}", "-o", "{tmp}/m.onnx", "--triton-repo", "{tmp}/t", "--max-batch", "0"],
        ">= 1",
    ),
    "max batch without repository": (
        ["{artifact}", "--max-batch", "8"],
        "only used with --triton-repo",
    ),
    "repository under a file": (
        ["{artifact}", "--triton-repo", "{tmp}/garbage.npz"],
        "is not a folder",
    ),
    "label with a line break": (
        ["{tmp}/multiline.npz", "-o", "{tmp}/m.onnx", "--triton-repo", "{tmp}/t"],
        "class label 'a\\nb' holds a line break",
    ),
    "check missing model": (["--check", "{tmp}/nope.onnx"], "model {tmp}/nope.onnx not found"),
    "check garbage": (["--check", "{tmp}/garbage.npz"], "is not a readable ONNX file"),
    "check empty": (["--check", "{tmp}/empty.onnx"], "is not a readable ONNX file (it holds no"),
    "check with -o": (["--check", "{tmp}/x.onnx", "-o", "{tmp}/y.onnx"], "-o/--output not allowed"),
    "data without check": (["{artifact}", "--data", "{tmp}"], "--data is only used with --check"),
}


@pytest.mark.parametrize("case", list(BAD_INVOCATIONS))
def test_bad_invocations_fail_with_one_line_and_no_file(
    case: str,
    small_artifact: Path,
    make_artifact,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (tmp_path / "garbage.npz").write_text("not a zip, not a model\n")
    (tmp_path / "empty.onnx").write_bytes(b"")
    huge = make_artifact()
    huge.weights[1, 2, 3] = 1e39  # a float64 that float32 cannot hold
    save_artifact(tmp_path / "huge.npz", huge)
    save_artifact(
        tmp_path / "multiline.npz", make_artifact(metadata={"class_labels": ["a\nb", "c", "d"]})
    )
    # A repository whose version folder is a file: its labels.txt must not be written either.
    (tmp_path / "clash" / "m").mkdir(parents=True)
    (tmp_path / "clash" / "m" / "1").write_text("")
    before = sorted(tmp_path.rglob("*"))
    template, words = BAD_INVOCATIONS[case]
    args = [arg.format(tmp=tmp_path, artifact=small_artifact) for arg in template]
    code, out, err = _cli(*args, capsys=capsys)
    assert code == 2
    assert out == ""
    assert len(err.splitlines()) == 1 and err.endswith("\n")
    assert ": error: " in err and words.format(tmp=tmp_path) in err
    assert sorted(tmp_path.rglob("*")) == before


@pytest.mark.parametrize(
    "args", [["--frobnicate"], ["{tmp}/nope.npz"], ["--check", "{tmp}/nope.onnx"]]
)
def test_a_real_process_prints_no_traceback(args: list[str], tmp_path: Path) -> None:
    result = run_module("export", *(arg.format(tmp=tmp_path) for arg in args), check=False)
    assert_one_line_error(result, "python -m export")


def test_check_on_a_small_model_with_data(
    small_artifact: Path, small_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = tmp_path / "small.onnx"
    assert _cli(small_artifact, "-o", model, capsys=capsys)[0] == 0
    code, out, err = _cli("--check", model, small_artifact, "--data", small_data, capsys=capsys)
    assert (code, err) == (0, "")
    assert "images:              40\n" in out
    assert "label agreement:     40/40 images" in out and out.endswith("parity:              OK\n")


def test_check_fails_when_the_model_disagrees_with_numpy(
    small_artifact: Path, small_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "tampered.onnx"
    assert _cli(small_artifact, "-o", path, capsys=capsys)[0] == 0
    model = onnx.load(path)
    (weights,) = (t for t in model.graph.initializer if t.name == "weights")
    weights.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(weights) * 1.001, "weights"))
    onnx.save(model, path)
    code, out, _ = _cli("--check", path, small_artifact, "--data", small_data, capsys=capsys)
    assert code == 1
    assert out.endswith("parity:              FAILED\n")


def test_check_refuses_an_artifact_the_model_was_not_exported_from(
    small_artifact: Path, make_artifact, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model, other = tmp_path / "small.onnx", tmp_path / "other.npz"
    save_artifact(other, make_artifact(seed=9))
    assert _cli(small_artifact, "-o", model, capsys=capsys)[0] == 0
    code, _, err = _cli("--check", model, other, capsys=capsys)
    assert code == 2
    assert f"artifact {other} (sha256 " in err and f"is not the one {model} was exported" in err


def test_check_refuses_data_of_another_shape(
    small_artifact: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = tmp_path / "small.onnx"
    assert _cli(small_artifact, "-o", model, capsys=capsys)[0] == 0
    code, _, err = _cli("--check", model, capsys=capsys)  # the bundled MNIST is 28x28
    assert code == 2
    assert "input 'images' of model 'scratchnet': expected shape [-1,5,7], got [10000,28,28]" in err


def test_check_reports_a_model_onnxruntime_cannot_load(
    small_artifact: Path, small_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = tmp_path / "broken.onnx"
    assert _cli(small_artifact, "-o", model, capsys=capsys)[0] == 0
    proto = onnx.load(model)
    proto.graph.node[0].op_type = "NoSuchOp"
    onnx.save(proto, model)
    code, _, err = _cli("--check", model, "--data", small_data, capsys=capsys)
    assert code == 2 and "onnxruntime" in err and "cannot load model 'scratchnet'" in err
    assert len(err.splitlines()) == 1


def test_newest_opset_is_accepted_by_the_cli(
    small_artifact: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "new.onnx"
    assert _cli(small_artifact, "-o", output, "--opset", str(max_opset()), capsys=capsys)[0] == 0
    assert onnx.load(output).opset_import[0].version == max_opset()


@pytest.mark.parametrize(
    ("shape", "words"),
    [
        ((3, 6, 7), "weights [3,6,7], biases [3] do not fit model 'scratchnet'"),
        ((4, 5, 7), "weights [4,5,7], biases [4] do not fit model 'scratchnet'"),
    ],
)
def test_check_refuses_parameters_that_do_not_fit_the_model(
    shape: tuple[int, int, int],
    words: str,
    small_artifact: Path,
    small_data: Path,
    make_artifact,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    model, other = tmp_path / "anonymous.onnx", tmp_path / "other.npz"
    assert _cli(small_artifact, "-o", model, capsys=capsys)[0] == 0
    proto = onnx.load(model)
    del proto.metadata_props[:]  # a model that does not say which artifact it came from
    onnx.save(proto, model)
    save_artifact(other, make_artifact(shape=shape))
    code, _, err = _cli("--check", model, other, "--data", small_data, capsys=capsys)
    assert code == 2 and words in err and len(err.splitlines()) == 1
    assert "expected weights [3,5,7], biases [3]" in err


def test_a_model_that_fails_validation_is_not_written(
    small_artifact: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_build_graph = export_model.build_graph

    def broken_build_graph(*args: Any, **kwargs: Any) -> onnx.GraphProto:
        graph = real_build_graph(*args, **kwargs)
        graph.node[0].input[0] = "no_such_tensor"  # what a bug in the graph builder would do
        return graph

    monkeypatch.setattr(export_model, "build_graph", broken_build_graph)
    output = tmp_path / "model.onnx"
    code, out, err = _cli(small_artifact, "-o", output, capsys=capsys)
    assert (code, out) == (2, "")
    assert "the exported model failed validation" in err and len(err.splitlines()) == 1
    assert list(tmp_path.iterdir()) == [small_artifact]


@pytest.mark.parametrize("model_fixture", ["model_onnx", "model_onnx_uint8"])
def test_exported_file_loads_anywhere_onnx_loads(
    model_fixture: str, request: pytest.FixtureRequest
) -> None:
    path: Path = request.getfixturevalue(model_fixture)
    onnx.checker.check_model(path, full_check=True)
    model = onnx.load(path)
    # IR 8 with the default domain at opset 17 alone: what runtimes of recent years accept.
    assert model.ir_version == 8
    assert [(o.domain, o.version) for o in model.opset_import] == [("", 17)]
    assert {node.domain for node in model.graph.node} == {""}
    assert not model.functions and not model.training_info
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    assert [arg.name for arg in session.get_outputs()] == ["scores", "label", "probabilities"]
    # What a stranger reads through onnxruntime's own API, training metrics included.
    meta = session.get_modelmeta()
    assert meta.producer_name == "scratchnet-export" and meta.version == 1 and meta.description
    props = meta.custom_metadata_map
    assert json.loads(props["class_labels"]) == [str(c) for c in range(10)]
    assert float(props["input_scale"]) == 1 / 255 and len(props["artifact_sha256"]) == 64
    assert json.loads(props["test_accuracy"]) == 0.9104 and "train_accuracy" in props
    ReferenceEvaluator(model)


@pytest.mark.parametrize(
    ("tamper", "words"),
    [
        ("input", "model 'scratchnet' has no tensor 'images'"),
        ("initializers", "model 'scratchnet' has no initializer weights, biases"),
    ],
)
def test_check_refuses_a_model_not_written_by_the_exporter(
    tamper: str,
    words: str,
    small_artifact: Path,
    small_data: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "foreign.onnx"
    assert _cli(small_artifact, "-o", path, capsys=capsys)[0] == 0
    model = onnx.load(path)
    if tamper == "input":
        model.graph.input[0].name = model.graph.node[0].input[0] = "pixels"
    else:
        for tensor in model.graph.initializer:
            tensor.name = f"renamed_{tensor.name}"
    onnx.save(model, path)
    code, out, err = _cli("--check", path, "--data", small_data, capsys=capsys)
    assert (code, out) == (2, "")
    assert words in err and len(err.splitlines()) == 1
