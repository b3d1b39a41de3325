"""The benchmark scripts' command lines (bench/): a bad input is one line and exit 2 before anything
runs, and bench/report.py renders the committed results exactly as README.md and docs/http.md
hold them."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO


def _bench(*args: str | Path, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    script, *rest = args
    return subprocess.run(
        [sys.executable, REPO / "bench" / script, *rest],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def _one_line(result: subprocess.CompletedProcess[str], program: str) -> str:
    """The one line a run refused as a mistake (exit 2) printed, without its prefix."""
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    prefix = f"bench/{program}: error: "
    assert lines[0].startswith(prefix)
    return lines[0].removeprefix(prefix)


# Each script that opens the model in onnxruntime, with what keeps it from writing in the tree.
_MODEL_SCRIPTS = {
    "serving.py": ("--uint8-model", "{model}", "--output", "{out}", "--logs", "{out}"),
    "batching.py": ("--mlp-dir", "{out}", "--output", "{out}/b.json", "--logs", "{out}"),
    "soak.py": ("--output", "{out}/s.json", "--logs", "{out}"),
    "http_serving.py": ("--output", "{out}/h.json", "--logs", "{out}"),
    "inline.py": ("--logs", "{out}"),
    "observability.py": (),
    "instructions.py": (),
}


@pytest.mark.parametrize("script", sorted(_MODEL_SCRIPTS))
def test_a_file_onnxruntime_cannot_load_is_one_line(script: str, tmp_path: Path) -> None:
    model = tmp_path / "model.onnx"
    model.write_text("not a model\n")
    out = tmp_path / "out"
    extra = [arg.format(model=model, out=out) for arg in _MODEL_SCRIPTS[script]]
    result = _bench(script, "--model", model, *extra)
    message = _one_line(result, script)
    assert message.startswith(f"{model}: not an ONNX model onnxruntime can load (INVALID_PROTOBUF")
    assert result.stdout == ""
    assert not out.exists()


@pytest.mark.parametrize(
    "script", ["serving.py", "http_serving.py", "scale.py", "soak.py", "batching.py"]
)
def test_a_results_file_that_cannot_be_written_is_refused_before_running(
    script: str, tmp_path: Path
) -> None:
    blocker = tmp_path / "results"
    blocker.write_text("a file where the results' folder would be\n")
    result = _bench(script, "--output", blocker / "out.json")
    assert _one_line(result, script) == (
        f"cannot write {blocker / 'out.json'}: {blocker} is not a folder (part of that path is a "
        "file)"
    )
    assert result.stdout == ""


def test_serving_refuses_an_unknown_contender_before_running(tmp_path: Path) -> None:
    output = tmp_path / "serving.json"
    # --warmup 0 is accepted (the error is --only's), as clients.perf accepts it.
    result = _bench("serving.py", "--only", "scratchnet,bogus", "--warmup", "0", "--output", output)
    message = _one_line(result, "serving.py")
    assert message.startswith("--only: unknown contender id 'bogus': expected some of scratchnet,")
    known_ids = ("scratchnet-threads1", "scratchnet-v1", "scratchnet-shm", "bare", "bare-sync")
    for known in (*known_ids, "kserve"):
        assert f" {known}," in message or message.endswith(f" {known}")
    assert result.stdout == ""
    assert not output.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--batches", "x"], "argument --batches: expected an integer, got 'x'"),
        (["--batches", "1,0"], "argument --batches: expected an integer >= 1, got 0"),
        (["--seconds", "nan"], "argument --seconds: expected a positive number, got 'nan'"),
        (["--threads", "-1"], "argument --threads: expected an integer >= 1, got -1"),
    ],
)
def test_stages_checks_its_flags_before_printing_anything(args: list[str], message: str) -> None:
    result = _bench("stages.py", *args)
    assert _one_line(result, "stages.py") == f"{message} (see bench/stages.py --help)"
    assert result.stdout == ""


@pytest.mark.parametrize("fixture", ["model_onnx", "model_onnx_uint8"])
def test_stages_times_a_model_in_its_own_datatype(
    fixture: str, request: pytest.FixtureRequest
) -> None:
    model = request.getfixturevalue(fixture)
    result = _bench("stages.py", "--model", model, "--batches", "1,40", "--seconds", "0.05")
    assert result.returncode == 0, result.stderr
    rows = [line.split() for line in result.stdout.splitlines()[2:4]]
    assert [row[0] for row in rows] == ["1", "40"]
    assert all(float(figure) > 0 for row in rows for figure in row[1:])


def test_report_refuses_a_file_that_is_not_results(tmp_path: Path) -> None:
    text = tmp_path / "serving.json"
    text.write_text("# not JSON\n")
    message = _one_line(_bench("report.py", text), "report.py")
    assert message.startswith(f"{text}: not a results file: expected the JSON a bench script")
    other = tmp_path / "other.json"
    other.write_text('{"benchmark": "http"}\n')
    message = _one_line(_bench("report.py", other), "report.py")
    assert message == f"{other}: not what bench/http_serving.py writes (no field 'results')"


def test_report_names_the_script_that_writes_a_missing_file(tmp_path: Path) -> None:
    message = _one_line(_bench("report.py", cwd=tmp_path), "report.py")
    assert message == "bench/results/serving.json not found: run bench/serving.py first"
    message = _one_line(_bench("report.py", "bench/results/http.json", cwd=tmp_path), "report.py")
    assert message == "bench/results/http.json not found: run bench/http_serving.py first"
    missing = tmp_path / "nothing.json"
    assert _one_line(_bench("report.py", missing), "report.py") == f"{missing} not found"


def test_report_renders_the_committed_results_as_the_docs_hold_them(tmp_path: Path) -> None:
    # What `make bench` runs last: the tables in README.md and docs/http.md are these files'.
    for source, rendered in (
        ((), "README.md"),
        (("bench/results/http.json",), "docs/http.md"),
    ):
        copy = tmp_path / Path(rendered).name
        shutil.copyfile(REPO / rendered, copy)
        result = _bench("report.py", *source, "--write", copy)
        assert result.returncode == 0, result.stderr
        assert copy.read_text() == (REPO / rendered).read_text(), f"{rendered} is stale"
