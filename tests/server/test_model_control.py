"""server.model_control in process, on a repository folder in tmp_path: what is served follows the
files, version policies select, and a bad file never replaces a good one; then the real server in
explicit mode, whose index shows a model loading and unloaded as Triton's does."""

from __future__ import annotations

import json
import os
import re
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import onnx
import pytest

from scratchnet.api.inference import open_inference_grpc_pb2 as oip
from scratchnet.api.inference.open_inference_grpc_pb2_grpc import GRPCInferenceServiceStub
from scratchnet.errors import FailedPrecondition, InvalidArgument, NotFound, Unavailable
from server.dataplane import DataPlane, InferRequest, RequestedOutput
from server.model_control import LoadOptions, ModelControl, RepositoryFolder
from server.repository import IndexEntry, ModelRepository
from tests.conftest import RunningServer
from tests.server.conftest import infer, tensor
from tests.server.onnx_models import build_classifier, numpy_scores, random_classifier
from tests.server.workers import start_loads_gated_server, until

SHAPE = (3, 4, 5)  # classes, height, width


def place(root: Path, name: str, version: int, seed: int = 0, **options: Any) -> Path:
    """A classifier with weights from `seed` at root/name/version/model.onnx."""
    folder = root / name / str(version)
    folder.mkdir(parents=True, exist_ok=True)
    weights, biases = random_classifier(*SHAPE, seed=seed)
    return build_classifier(folder / "model.onnx", weights, biases, **options)


def served(repository: ModelRepository) -> list[tuple[str, str]]:
    return [(model.name, model.version) for model in repository.models()]


def control_of(root: Path, mode: str = "none") -> tuple[ModelControl, DataPlane]:
    plane = DataPlane(ModelRepository())
    control = ModelControl(plane.repository, RepositoryFolder(root), LoadOptions(0, 64), mode)
    return control, plane


def labels_of(plane: DataPlane, name: str, seed: int) -> None:
    """The labels served under `name` are those of the model with weights from `seed`."""
    images = np.random.default_rng(1).random((6, *SHAPE[1:]), dtype=np.float32)
    answer = infer(plane, InferRequest(name, "", [tensor(images)], [RequestedOutput("label")]))
    weights, biases = random_classifier(*SHAPE, seed=seed)
    expected = numpy_scores(weights, biases, images).argmax(axis=1)
    np.testing.assert_array_equal(answer.outputs["label"], expected)


def test_each_model_serves_its_newest_version_by_default(tmp_path: Path) -> None:
    for version in (1, 2, 10):
        place(tmp_path, "digits", version, seed=version)
    place(tmp_path, "other", 1)
    (tmp_path / "empty").mkdir()
    (tmp_path / ".hidden").mkdir()
    control, plane = control_of(tmp_path)
    failures = control.start()
    assert served(plane.repository) == [("digits", "10"), ("other", "1")]
    empty = (
        f"model 'empty' has no version folder holding its model file: expected "
        f"{tmp_path / 'empty'}/<version number>/model.onnx"
    )
    assert failures == [empty]
    assert [(e.version, e.state, e.reason) for e in control.index() if e.name == "empty"] == [
        ("", "UNAVAILABLE", empty)
    ]
    labels_of(plane, "digits", seed=10)
    names = control.source.names()
    assert names == ["digits", "empty", "other"]
    assert [(e.name, e.version, e.state) for e in plane.repository.index(names)] == [
        ("digits", "10", "READY"),
        ("empty", "", "UNAVAILABLE"),
        ("other", "1", "READY"),
    ]


def test_the_index_keeps_every_version_once_served_as_triton_does(tmp_path: Path) -> None:
    place(tmp_path, "m", 1, seed=1)
    place(tmp_path, "never", 1)
    control, _ = control_of(tmp_path, "explicit")
    control.start(["m"])
    # A model never loaded is its name alone, as Triton lists it.
    assert control.index() == [IndexEntry("m", "1", "READY"), IndexEntry("never", "", "")]
    # A newer version replaces version 1, which stays listed (Triton's qa/L0_storage_S3).
    place(tmp_path, "m", 2, seed=2)
    (tmp_path / "m" / "3").mkdir()
    (tmp_path / "m" / "3" / "model.onnx").write_bytes(b"not onnx")
    (tmp_path / "m" / "config.pbtxt").write_text("version_policy { specific { versions: [2] } }")
    control.load("m")
    unloaded = IndexEntry("m", "1", "UNAVAILABLE", "unloaded")
    assert control.index()[:2] == [unloaded, IndexEntry("m", "2", "READY")]
    (tmp_path / "m" / "config.pbtxt").write_text("version_policy { all { } }")
    with pytest.raises(InvalidArgument, match="failed to load 'm'"):
        control.load("m")
    broken = next(e for e in control.index() if e.version == "3")
    assert broken.state == "UNAVAILABLE" and "cannot be loaded by onnxruntime" in broken.reason
    # Unloaded, each version served is listed so; the one that failed keeps its reason.
    control.unload_requested("m")
    assert control.index() == [
        unloaded, IndexEntry("m", "2", "UNAVAILABLE", "unloaded"), broken,
        IndexEntry("never", "", ""),
    ]  # fmt: skip
    assert control.index(ready_only=True) == []
    # Loaded again, a version is READY again; a model whose folder is gone leaves the index.
    (tmp_path / "m" / "config.pbtxt").write_text("version_policy { specific { versions: [2] } }")
    control.load("m")
    assert control.index()[:2] == [unloaded, IndexEntry("m", "2", "READY")]
    control.unload("m")
    for path in sorted((tmp_path / "m").rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    (tmp_path / "m").rmdir()
    assert control.index() == [IndexEntry("never", "", "")]


def test_versions_unloaded_or_failed_are_answered_as_triton_answers_them(tmp_path: Path) -> None:
    # Triton's model table keeps every version it tried: one not serving is "not at ready
    # state" (UNAVAILABLE), and a name none of whose versions serves "has no available versions".
    place(tmp_path, "m", 1, seed=1)
    control, plane = control_of(tmp_path, "explicit")
    control.load("m")
    (tmp_path / "m" / "2").mkdir()
    (tmp_path / "m" / "2" / "model.onnx").write_bytes(b"not onnx")
    (tmp_path / "m" / "config.pbtxt").write_text("version_policy { all { } }")
    with pytest.raises(InvalidArgument, match=r"failed to load 'm'"):
        control.load("m")
    assert plane.repository.get("m").version == "1"
    with pytest.raises(Unavailable, match=r"^Request for unknown model: 'm' version 2 is not at"):
        plane.repository.get("m", "2")  # failed to load
    control.unload_requested("m")
    with pytest.raises(Unavailable, match=r"'m' version 1 is not at ready state$"):
        plane.repository.get("m", "01")
    with pytest.raises(
        NotFound, match=r"^Request for unknown model: 'm' has no available versions$"
    ):
        plane.repository.get("m")
    with pytest.raises(NotFound, match=r"'m' version 3 is not found$"):
        plane.repository.get("m", "3")
    with pytest.raises(NotFound, match=r"^Request for unknown model: 'x' is not found$"):
        plane.repository.get("x", "1")


def test_unloading_a_model_the_repository_does_not_hold_succeeds_as_in_triton(
    tmp_path: Path,
) -> None:
    place(tmp_path, "m", 1)
    control, plane = control_of(tmp_path, "explicit")
    control.start(["m"])
    control.unload_requested("nope")  # nothing to unload: the model is not served either way
    assert served(plane.repository) == [("m", "1")]
    control.mode = "poll"  # outside explicit mode, a refusal, for unknown names too
    with pytest.raises(FailedPrecondition, match="explicit model unload is not allowed with "
                       "--model-control-mode poll"):  # fmt: skip
        control.unload_requested("nope")


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        ("all { }", ["1", "2", "3"]),
        ("latest { num_versions: 2 }", ["2", "3"]),
        ("specific { versions: [ 1, 7 ] }", ["1"]),
    ],
)
def test_version_policies(tmp_path: Path, policy: str, expected: list[str]) -> None:
    for version in (1, 2, 3):
        place(tmp_path, "m", version)
    (tmp_path / "m" / "config.pbtxt").write_text(f"version_policy {{ {policy} }}\n")
    control, plane = control_of(tmp_path)
    control.start()
    assert [version for _, version in served(plane.repository)] == expected
    if "specific" in policy:
        missing = [e for e in plane.repository.index() if e.version == "7"]
        assert [(e.state, e.reason) for e in missing] == [
            ("UNAVAILABLE", "version is not in the repository")
        ]


def test_sync_follows_new_changed_and_removed_files(tmp_path: Path) -> None:
    place(tmp_path, "m", 1, seed=1)
    control, plane = control_of(tmp_path, "poll")
    control.start()
    place(tmp_path, "m", 2, seed=2)
    control.sync_all()
    assert served(plane.repository) == [("m", "2")]
    labels_of(plane, "m", seed=2)
    # The same version's file replaced (as `cp` or an atomic rename would): reloaded.
    replacement = place(tmp_path, "swap", 1, seed=3)
    os.replace(replacement, tmp_path / "m" / "2" / "model.onnx")
    control.sync_all()
    labels_of(plane, "m", seed=3)
    # The model's folder removed: unloaded.
    for path in sorted((tmp_path / "m").rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    (tmp_path / "m").rmdir()
    control.sync_all()
    assert ("m", "2") not in served(plane.repository)


def test_a_bad_file_keeps_the_old_version_serving_and_shows_why(tmp_path: Path) -> None:
    place(tmp_path, "m", 1, seed=1)
    control, plane = control_of(tmp_path, "poll")
    control.start()
    (tmp_path / "m" / "1" / "model.onnx").write_bytes(b"not a model any more")
    (tmp_path / "m" / "2").mkdir()
    (tmp_path / "m" / "2" / "model.onnx").write_bytes(b"corrupt")
    control.sync_all()
    # Version 2 is the newest, but it cannot load: version 1 keeps serving meanwhile...
    assert served(plane.repository) == [("m", "1")]
    labels_of(plane, "m", seed=1)
    entries = {(e.version, e.state): e.reason for e in plane.repository.index(["m"])}
    assert "cannot be loaded by onnxruntime" in entries["2", "UNAVAILABLE"]
    # ...whereas a corrupt replacement of the version served keeps the old file serving.
    (tmp_path / "m" / "2" / "model.onnx").unlink()
    (tmp_path / "m" / "2").rmdir()
    place(tmp_path, "m", 1, seed=1)
    control.sync_all()
    (tmp_path / "m" / "1" / "model.onnx").write_bytes(b"half written")
    control.sync_all()
    assert served(plane.repository) == [("m", "1")]
    labels_of(plane, "m", seed=1)
    (entry,) = plane.repository.index(["m"])
    assert entry.state == "READY" and "serving the file loaded before" in entry.reason


def test_a_config_mistake_keeps_the_model_out_with_its_line(tmp_path: Path) -> None:
    place(tmp_path, "m", 1)
    (tmp_path / "m" / "config.pbtxt").write_text('name: "m"\nmax_batch: 8\n')
    control, plane = control_of(tmp_path)
    (failure,) = control.start()
    assert "config.pbtxt: line 2, column 1: unknown field 'max_batch'" in failure
    assert served(plane.repository) == []
    (entry,) = plane.repository.index(["m"])
    assert entry.state == "UNAVAILABLE" and "unknown field 'max_batch'" in entry.reason


def test_explicit_load_and_unload(tmp_path: Path) -> None:
    place(tmp_path, "a", 1)
    place(tmp_path, "b", 1)
    (tmp_path / "bad" / "1").mkdir(parents=True)
    (tmp_path / "bad" / "1" / "model.onnx").write_bytes(b"nope")
    control, plane = control_of(tmp_path, "explicit")
    control.start([])
    assert served(plane.repository) == []
    control.load("b")
    assert served(plane.repository) == [("b", "1")]
    with pytest.raises(NotFound, match="failed to load 'zzz': no such model in the repository"):
        control.load("zzz")
    with pytest.raises(InvalidArgument, match=r"failed to load 'bad': model .* cannot be loaded"):
        control.load("bad")
    control.load("a", '{"max_batch_size": 2}')
    assert plane.model("a").max_batch == 2
    control.unload("b")
    assert served(plane.repository) == [("a", "1")]
    with pytest.raises(InvalidArgument, match="parameter 'config' is not a model configuration"):
        control.load("a", "{not json")
    # protobuf's reason, in the protocol's words rather than Python's "invalid literal for int()"
    with pytest.raises(InvalidArgument) as refused:
        control.load("a", '{"version_policy": {"specific": {"versions": ["x"]}}}')
    assert str(refused.value) == (
        "failed to load 'a': parameter 'config' is not a model configuration in JSON (Failed to "
        "parse version_policy field: Failed to parse versions field: 'x' is not an integer.)"
    )


def test_a_config_given_with_a_load_lasts_until_the_next_plain_load_or_sync(
    tmp_path: Path,
) -> None:
    place(tmp_path, "a", 1)
    control, plane = control_of(tmp_path, "explicit")
    control.start(["a"])
    assert plane.model("a").max_batch == 64
    # A refused override neither changes what is served nor sticks to the model's files.
    with pytest.raises(InvalidArgument, match=r"failed to load 'a': .*data_type TYPE_UINT8"):
        control.load(
            "a", '{"input": [{"name": "images", "data_type": "TYPE_UINT8", "dims": [4, 5]}]}'
        )
    control.unload("a")
    control.load("a")
    assert plane.model("a").max_batch == 64
    # An accepted override serves until the model is loaded from its files again.
    control.load("a", '{"max_batch_size": 2}')
    assert plane.model("a").max_batch == 2
    control.load("a")
    assert plane.model("a").max_batch == 64
    control.load("a", '{"max_batch_size": 2}')
    control.sync_all()  # SIGHUP
    assert plane.model("a").max_batch == 64
    for bad, message in [
        ("[]", "expected a JSON object"),
        ('{"name": "other"}', "the config given with the load: name 'other' differs from the "
         "model's folder 'a'"),
        ('{"max_batch_size": 4, "dynamic_batching": {"preferred_batch_size": [8]}}',
         "preferred_batch_size 8 is outside 1 to max_batch_size 4"),
        # As Triton: with max_batch_size 0 no preferred size can be reached.
        ('{"input": [{"name": "images", "data_type": "TYPE_FP32", "dims": [-1, 4, 5]}], '
         '"dynamic_batching": {"preferred_batch_size": [2]}}',
         "preferred_batch_size 2 is outside 1 to max_batch_size 0"),
        ('{"version_policy": {"latest": {"num_versions": 0}}}',
         "version_policy selects none of the versions 1"),
    ]:  # fmt: skip
        with pytest.raises(InvalidArgument, match=message):
            control.load("a", bad)
    assert plane.model("a").max_batch == 64


def test_a_model_without_a_version_to_serve_is_listed_with_why_and_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    place(tmp_path, "typo", 1)
    os.replace(tmp_path / "typo" / "1" / "model.onnx", tmp_path / "typo" / "1" / "Model.onnx")
    place(tmp_path, "none", 1)
    (tmp_path / "none" / "config.pbtxt").write_text("version_policy { specific { } }\n")
    place(tmp_path, "broken", 1)
    (tmp_path / "broken" / "config.pbtxt").write_text("bogus: 1\n")
    control, plane = control_of(tmp_path, "poll")
    control.start()
    for _ in range(3):
        control.sync_all()
    reasons = {e.name: (e.state, e.reason) for e in plane.repository.index(control.source.names())}
    assert reasons["typo"] == (
        "UNAVAILABLE",
        f"model 'typo' has no version folder holding its model file: expected "
        f"{tmp_path / 'typo'}/<version number>/model.onnx",
    )
    assert reasons["none"] == (
        "UNAVAILABLE",
        "model 'none': its config's version_policy selects none of the versions 1",
    )
    assert reasons["broken"][0] == "UNAVAILABLE" and "unknown field 'bogus'" in reasons["broken"][1]
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 3, errors  # one each, not one per poll


def test_a_zero_padded_version_folder_is_ignored_as_triton_ignores_it(tmp_path: Path) -> None:
    place(tmp_path, "m", 1)
    place(tmp_path, "m", 2)
    os.replace(tmp_path / "m" / "2", tmp_path / "m" / "007")
    place(tmp_path, "m", 3)
    os.replace(tmp_path / "m" / "3", tmp_path / "m" / "\u00b2")  # not ASCII: ignored, no crash
    control, plane = control_of(tmp_path)
    control.start()
    assert served(plane.repository) == [("m", "1")]


def test_label_files_name_the_classes_of_classification(tmp_path: Path) -> None:
    place(tmp_path, "m", 1, seed=4)
    (tmp_path / "m" / "config.pbtxt").write_text(
        'output [ { name: "scores" data_type: TYPE_FP32 dims: [ 3 ]'
        ' label_filename: "names.txt" } ]\nmax_batch_size: 8\n'
    )
    (tmp_path / "m" / "names.txt").write_text("cat\ndog\nemu\n")
    control, plane = control_of(tmp_path)
    control.start()
    images = np.zeros((2, *SHAPE[1:]), dtype=np.float32)
    request = InferRequest(
        "m", "", [tensor(images)], [RequestedOutput("scores", {"classification": 2})]
    )
    (strings,) = infer(plane, request).outputs.values()
    _, biases = random_classifier(*SHAPE, seed=4)
    top = np.argsort(-biases)[:2]  # zero images: the scores are the biases
    assert [value.decode().split(":")[1:] for value in strings[0]] == [
        [str(index), ["cat", "dog", "emu"][index]] for index in top
    ]


def test_a_change_to_a_models_external_data_is_a_change_to_the_model(tmp_path: Path) -> None:
    # Weights in a file beside model.onnx, as onnx.save(..., save_as_external_data=True) writes.
    path = place(tmp_path, "m", 1, seed=1)
    model = onnx.load(path)
    onnx.save(model, path, save_as_external_data=True, location="weights.bin", size_threshold=64)
    control, plane = control_of(tmp_path, "explicit")
    control.load("m")
    labels_of(plane, "m", seed=1)
    # Only the weights replaced, atomically: the next load reloads the model.
    other = onnx.load(place(tmp_path, "other", 1, seed=2))
    onnx.save(other, tmp_path / "other" / "1" / "model.onnx", save_as_external_data=True,
              location="weights.bin", size_threshold=64)  # fmt: skip
    os.replace(tmp_path / "other" / "1" / "weights.bin", tmp_path / "m" / "1" / "weights.bin")
    control.load("m")
    labels_of(plane, "m", seed=2)


def test_a_model_kept_in_a_folder_with_its_data_is_served_as_triton_serves_it(
    tmp_path: Path,
) -> None:
    # Triton's onnxruntime backend: a model path that is a folder holds model.onnx and its data.
    path = place(tmp_path, "m", 1, seed=3)
    inside = tmp_path / "m" / "1" / "model.onnx" / "model.onnx"
    model = onnx.load(path)
    path.unlink()
    inside.parent.mkdir()
    onnx.save(model, inside, save_as_external_data=True, location="weights.bin", size_threshold=64)
    assert (inside.parent / "weights.bin").is_file()
    control, plane = control_of(tmp_path)
    control.start()
    assert served(plane.repository) == [("m", "1")]
    labels_of(plane, "m", seed=3)


def test_a_load_whose_policy_selects_no_version_fails_and_keeps_serving(tmp_path: Path) -> None:
    for version in (1, 2):
        place(tmp_path, "m", version, seed=version)
    control, plane = control_of(tmp_path, "explicit")
    control.load("m")
    (tmp_path / "m" / "config.pbtxt").write_text("version_policy { specific { versions: 7 } }\n")
    with pytest.raises(InvalidArgument, match="failed to load 'm': model 'm': its config's "
                       "version_policy selects none of the versions 1, 2"):  # fmt: skip
        control.load("m")
    assert served(plane.repository) == [("m", "2")]
    labels_of(plane, "m", seed=2)
    states = {(e.version, e.state) for e in plane.repository.index(control.source.names())}
    assert states == {("2", "READY"), ("7", "UNAVAILABLE")}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("label_filename", "/etc/hostname"),
        ("label_filename", "../../labels.txt"),
        ("default_model_filename", "../../outside/model.onnx"),
        ("default_model_filename", ".."),
    ],
)
def test_a_config_naming_a_path_is_refused_and_the_model_keeps_serving(
    tmp_path: Path, field: str, value: str
) -> None:
    # Else a load request could make the server read any file (as labels, which classification
    # echoes) or serve a model from outside the repository.
    place(tmp_path, "m", 1, seed=1)
    control, plane = control_of(tmp_path, "explicit")
    control.load("m")
    if field == "label_filename":
        config = {"output": [{"name": "scores", "data_type": "TYPE_FP32", "dims": [3],
                              "label_filename": value}]}  # fmt: skip
    else:
        config = {field: value}
    with pytest.raises(InvalidArgument, match=f"failed to load 'm': the config given with the "
                       f"load: .*{field} is '{re.escape(value)}', expected a file name in the "
                       "model's folder \\(no path\\)"):  # fmt: skip
        control.load("m", json.dumps(config))
    labels_of(plane, "m", seed=1)


def test_a_load_in_which_one_version_fails_changes_no_version(tmp_path: Path) -> None:
    # As Triton (model_lifecycle.cc OnLoadFinal): all the versions of a load, or none of them.
    place(tmp_path, "m", 1)
    place(tmp_path, "m", 2)
    (tmp_path / "m" / "config.pbtxt").write_text("version_policy: { all: {} }\nmax_batch_size: 8\n")
    control, plane = control_of(tmp_path, "explicit")
    control.start(["m"])
    before = plane.repository.models()
    (tmp_path / "m" / "2" / "model.onnx").write_bytes(b"not onnx")
    with pytest.raises(InvalidArgument):
        control.load("m", json.dumps({"max_batch_size": 4, "version_policy": {"all": {}}}))
    after = plane.repository.models()
    assert [id(model) for model in after] == [id(model) for model in before]
    assert {model.max_batch for model in after} == {8}
    control.sync("m")  # the same broken file again: nothing reloaded
    assert [id(model) for model in plane.repository.models()] == [id(model) for model in before]


# --- the real server ----------------------------------------------------------------------------


def _http(server: RunningServer, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    """POST `body` as JSON to `path`: the status and the JSON answer (None if empty)."""
    data = json.dumps(body or {}).encode()
    request = urllib.request.Request(server.http_url + path, data=data, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            status, answer = reply.status, reply.read()
    except urllib.error.HTTPError as error:
        status, answer = error.code, error.read()
    return status, json.loads(answer) if answer else None


def _explicit_server_loading_at(gate: Path, tmp_path: Path) -> RunningServer:
    """A server in explicit mode, gRPC and HTTP, over a repository holding model 'm' version 1
    (not loaded), whose loads wait until `gate` exists."""
    root = tmp_path / "repository"
    place(root, "m", 1)
    return start_loads_gated_server(
        root, gate, "--model-control-mode", "explicit", tmp_dir=tmp_path,
        model_flag="--model-repository", http=True, wait_serving=True,
    )  # fmt: skip


def test_the_server_lists_a_model_loading_then_unloaded_over_grpc_and_http(
    tmp_path: Path,
) -> None:
    gate = tmp_path / "load-now"
    server = _explicit_server_loading_at(gate, tmp_path)
    try:
        with grpc.insecure_channel(server.target) as channel:
            stub = GRPCInferenceServiceStub(channel)

            def rows(ready: bool = False, settled: bool = True) -> list[dict[str, str]]:
                """The index over gRPC, as Triton's HTTP index writes it; the same over HTTP
                if `settled` (no load under way between the two calls)."""
                answer = stub.RepositoryIndex(oip.RepositoryIndexRequest(ready=ready), timeout=30)
                found = [
                    {key: value for key, value in zip(("name", "version", "state", "reason"),
                     (m.name, m.version, m.state, m.reason), strict=True) if value}
                    for m in answer.models
                ]  # fmt: skip
                if settled:
                    assert _http(server, "/v2/repository/index", {"ready": ready}) == (200, found)
                return found

            assert rows() == [{"name": "m"}]
            load = stub.RepositoryModelLoad.future(
                oip.RepositoryModelLoadRequest(model_name="m"), timeout=60
            )
            # The load waits at the gate: the index shows the version LOADING, not ready.
            until(
                lambda: rows(settled=False) == [{"name": "m", "version": "1", "state": "LOADING"}]
            )
            assert rows() == [{"name": "m", "version": "1", "state": "LOADING"}]
            assert rows(ready=True) == []
            gate.touch()
            load.result()
            assert rows(ready=True) == [{"name": "m", "version": "1", "state": "READY"}]
            stub.RepositoryModelUnload(oip.RepositoryModelUnloadRequest(model_name="m"), timeout=30)
            unloaded = {"name": "m", "version": "1", "state": "UNAVAILABLE", "reason": "unloaded"}
            assert rows() == [unloaded]
            assert rows(ready=True) == []
            # A model the repository does not hold has nothing to unload: a success, as Triton.
            stub.RepositoryModelUnload(
                oip.RepositoryModelUnloadRequest(model_name="nope"), timeout=30
            )
            assert _http(server, "/v2/repository/models/nope/unload") == (200, None)
            assert rows() == [unloaded]
    finally:
        gate.touch()  # a load still waiting would hold the server's shutdown
        assert server.stop() == 0


def test_a_version_loading_beside_one_served_is_unavailable_and_the_served_one_answers(
    tmp_path: Path,
) -> None:
    place(tmp_path, "m", 1)
    control, plane = control_of(tmp_path, "explicit")
    control.sync("m")
    with plane.repository.loading_version("m", "2"):
        assert plane.model("m").version == "1"  # the newest ready, as Triton's GetModel
        with pytest.raises(Unavailable) as caught:
            plane.model("m", "02")
        assert str(caught.value) == "Request for unknown model: 'm' version 2 is not at ready state"
        assert not plane.model_ready("m", "2")
    with pytest.raises(NotFound) as unknown:
        plane.model("m", "2")
    assert str(unknown.value) == "Request for unknown model: 'm' version 2 is not found"


def test_inference_on_a_model_still_loading_is_answered_as_triton_answers_it(
    tmp_path: Path,
) -> None:
    gate = tmp_path / "load-now"
    server = _explicit_server_loading_at(gate, tmp_path)
    images = np.zeros((1, *SHAPE[1:]), np.float32)
    document = {"inputs": [{"name": "images", "shape": list(images.shape), "datatype": "FP32",
                            "data": images.ravel().tolist()}]}  # fmt: skip
    try:
        with grpc.insecure_channel(server.target) as channel:
            stub = GRPCInferenceServiceStub(channel)

            def grpc_infer(version: str) -> tuple[grpc.StatusCode, str]:
                request = oip.ModelInferRequest(model_name="m", model_version=version)
                request.inputs.add(name="images", datatype="FP32", shape=images.shape)
                request.raw_input_contents.append(images.tobytes())
                try:
                    stub.ModelInfer(request, timeout=30)
                except grpc.RpcError as error:
                    return error.code(), error.details()
                return grpc.StatusCode.OK, ""

            load = stub.RepositoryModelLoad.future(
                oip.RepositoryModelLoadRequest(model_name="m"), timeout=60
            )
            index = oip.RepositoryIndexRequest()
            until(lambda: [m.state for m in stub.RepositoryIndex(index).models] == ["LOADING"])
            # As Triton's model lifecycle: a model with a version loading is known, and has
            # no version to answer yet; the version loading is not ready; any other is unknown.
            for version, code, status, message in [
                ("", grpc.StatusCode.NOT_FOUND, 404, "'m' has no available versions"),
                ("1", grpc.StatusCode.UNAVAILABLE, 503, "'m' version 1 is not at ready state"),
                ("2", grpc.StatusCode.NOT_FOUND, 404, "'m' version 2 is not found"),
            ]:
                expected = f"Request for unknown model: {message}"
                assert grpc_infer(version) == (code, expected)
                path = f"/v2/models/m/versions/{version}/infer" if version else "/v2/models/m/infer"
                assert _http(server, path, document) == (status, {"error": expected})
            assert not stub.ModelReady(oip.ModelReadyRequest(name="m"), timeout=30).ready
            gate.touch()
            load.result()
            assert grpc_infer("") == grpc_infer("1") == (grpc.StatusCode.OK, "")
    finally:
        gate.touch()  # a load still waiting would hold the server's shutdown
        assert server.stop() == 0


def test_no_file_outside_the_repository_is_read_and_no_fifo_waited_on(tmp_path: Path) -> None:
    # Whoever can write the repository must not make the server read or serve any other file:
    # a link out of it (to a model, a config, a label file of secrets) or a FIFO (which would
    # hold every load) is a model that fails with its reason, not one that serves.
    root, outside = tmp_path / "repository", tmp_path / "outside"
    place(root, "good", 1)
    place(outside, "elsewhere", 1)
    (outside / "secret.txt").write_text("SECRET\n")
    (outside / "config.pbtxt").write_text('name: "linkcfg"\n')
    (root / "linkmodel").symlink_to(outside / "elsewhere")
    place(root, "linkcfg", 1)
    (root / "linkcfg" / "config.pbtxt").symlink_to(outside / "config.pbtxt")
    (root / "linkfile" / "1").mkdir(parents=True)
    (root / "linkfile" / "1" / "model.onnx").symlink_to(outside / "elsewhere" / "1" / "model.onnx")
    labelled = (
        'output [{ name: "scores" data_type: TYPE_FP32 dims: [ 3 ] label_filename: "labels.txt" }]'
        "\nmax_batch_size: 8\n"
    )
    for name, label in (("linklabel", "link"), ("fifolabel", "fifo")):
        place(root, name, 1)
        (root / name / "config.pbtxt").write_text(labelled)
        if label == "link":
            (root / name / "labels.txt").symlink_to(outside / "secret.txt")
        else:
            os.mkfifo(root / name / "labels.txt")
    place(root, "dangling", 1)
    (root / "dangling" / "config.pbtxt").symlink_to(tmp_path / "nowhere.pbtxt")
    place(root, "foldercfg", 1)
    (root / "foldercfg" / "config.pbtxt").mkdir()  # was taken for no config at all
    # A link that stays inside, as a Kubernetes ConfigMap's do, is followed.
    (root / ".data").mkdir()
    place(root / ".data", "within", 1)
    (root / "within").symlink_to(root / ".data" / "within")
    control, plane = control_of(root)
    control.start()
    assert served(plane.repository) == [("good", "1"), ("within", "1")]
    reasons = {e.name: e.reason for e in control.index() if e.state != "READY"}
    outside_reason = "leads outside the model repository {} (a symbolic link): the server reads"
    for name in ("linkmodel", "linkcfg", "linkfile", "linklabel", "dangling"):
        assert outside_reason.format(root) in reasons[name], (name, reasons[name])
    assert "labels.txt is not a regular file (a device, FIFO or socket)" in reasons["fifolabel"]
    assert reasons["foldercfg"].endswith(
        "config.pbtxt is a directory, expected the model's configuration"
    )
    assert "SECRET" not in str(reasons)
