"""`python -m export` (console script `scratchnet-export`): a trainer artifact to model.onnx and,
on request, a Triton model repository; `--check MODEL` runs the three-way parity check instead.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

import onnx
from google.protobuf.message import DecodeError
from onnx import ModelProto

from export.graph import ir_version_for
from export.model import (
    ExportOptions,
    artifact_sha256,
    export_artifact,
    model_bytes,
    write_file,
)
from export.parity import check_parity, format_report, initializer_parameters
from export.triton import write_repository
from scratchnet.artifact import load_artifact
from scratchnet.cli import ArgumentParser, integer, program_name, run_cli
from scratchnet.contract import (
    ARTIFACT_SHA256,
    DEFAULT_ARTIFACT,
    DEFAULT_MAX_BATCH,
    DEFAULT_MODEL,
    DEFAULT_MODEL_NAME,
    INPUT,
    INPUT_DTYPES,
)
from scratchnet.datasets import load_dataset
from scratchnet.errors import ExportError
from scratchnet.files import check_writable, require_model_file

# Export options that mean nothing to --check, with their flags for the error message.
_EXPORT_ONLY = {
    "output": "-o/--output",
    "input_dtype": "--input-dtype",
    "opset": "--opset",
    "model_version": "--model-version",
    "model_name": "--model-name",
    "triton_repo": "--triton-repo",
    "max_batch": "--max-batch",
}


def build_parser(prog: str) -> ArgumentParser:
    """The command line of `python -m export`."""
    defaults = ExportOptions()
    parser = ArgumentParser(
        prog=prog,
        description="Export a trainer artifact to ONNX (model.onnx), or check a model's parity "
        "with the numpy forward pass.",
    )
    parser.add_argument(
        "artifact",
        nargs="?",
        type=Path,
        metavar="ARTIFACT",
        help=f"trainer artifact (default {DEFAULT_ARTIFACT}); with --check, compare against its "
        "float64 parameters instead of the model's own",
    )
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        metavar="PATH",
        help=f"model file to write (default {DEFAULT_MODEL})",
    )
    parser.add_argument(
        "--input-dtype",
        choices=list(INPUT_DTYPES),
        help=f"dtype of input '{INPUT}': float32 pixels in [0, 1] (default) or uint8 0-255, "
        "scaled inside the graph",
    )
    parser.add_argument(
        "--opset",
        type=integer(1),  # the supported range is checked with the other options
        metavar="N",
        help=f"ONNX opset (default {defaults.opset}, with IR version "
        f"{ir_version_for(defaults.opset)}); the IR version is the oldest that carries the opset",
    )
    parser.add_argument(
        "--model-version",
        type=int,
        metavar="N",
        help="ModelProto.model_version, also the Triton version folder "
        f"(default {defaults.model_version})",
    )
    parser.add_argument(
        "--model-name",
        metavar="NAME",
        help=f"graph name and Triton model folder (default {DEFAULT_MODEL_NAME})",
    )
    parser.add_argument(
        "--triton-repo",
        type=Path,
        metavar="DIR",
        help="also write a Triton model repository DIR/NAME/{config.pbtxt,labels.txt,VERSION/"
        "model.onnx}; without -o, only the repository",
    )
    parser.add_argument(
        "--max-batch",
        type=integer(1),
        metavar="N",
        help=f"with --triton-repo: Triton max_batch_size (default {DEFAULT_MAX_BATCH})",
    )
    parser.add_argument(
        "--check",
        type=Path,
        metavar="MODEL",
        help="run MODEL on the test set with numpy, onnxruntime and onnx.reference and compare",
    )
    parser.add_argument(
        "--data", metavar="PATH", help="with --check: data set to use (default: the bundled MNIST)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """Entry point of `python -m export` and `scratchnet-export`."""
    program = program_name("python -m export")
    parser = build_parser(program)
    run_cli(program, lambda: _run(parser, parser.parse_args(argv)))


def _run(parser: ArgumentParser, args: argparse.Namespace) -> int:
    if args.check is not None:
        given = [flag for key, flag in _EXPORT_ONLY.items() if getattr(args, key) is not None]
        if given:
            parser.error(f"--check runs on an existing model: {', '.join(given)} not allowed")
        return _check(args.check, args.artifact, args.data)
    if args.data is not None:
        parser.error("--data is only used with --check")
    if args.max_batch is not None and args.triton_repo is None:
        parser.error("--max-batch is only used with --triton-repo")
    chosen = {
        "input_dtype": args.input_dtype,
        "opset": args.opset,
        "model_version": args.model_version,
        "name": args.model_name,
    }
    options = ExportOptions(**{key: value for key, value in chosen.items() if value is not None})
    model = export_artifact(args.artifact or DEFAULT_ARTIFACT, options)
    writes_file = args.output is not None or args.triton_repo is None
    output = (args.output or DEFAULT_MODEL) if writes_file else None
    if output is not None:
        check_writable(output)  # before the repository: a refused output leaves no repository
    # The repository first: it checks its inputs before writing, so a refused repository leaves
    # no model file behind either.
    if args.triton_repo is not None:
        max_batch = DEFAULT_MAX_BATCH if args.max_batch is None else args.max_batch
        folder = write_repository(args.triton_repo, model, max_batch)
        print(f"wrote Triton model repository {folder} (version {model.model_version})")
    if output is not None:
        data = model_bytes(model)
        write_file(output, data)
        print(f"wrote {output} ({_describe(model)}, {len(data):,} bytes)")
    return 0


def _check(model_path: Path, artifact_path: Path | None, data: str | None) -> int:
    model = _load_model(model_path)
    if artifact_path is None:
        weights, biases = initializer_parameters(model)
        source = "the model's own initializers (float32); pass the ARTIFACT for float64"
    else:
        artifact = load_artifact(artifact_path)
        _require_same_artifact(model, model_path, artifact_path)
        weights, biases = artifact.weights, artifact.biases
        source = f"{artifact_path} (float64)"
    dataset = load_dataset(data)
    report = check_parity(model, dataset.test_images, dataset.test_labels, weights, biases)
    context = [
        ("model", f"{model_path} ({_describe(model)})"),
        ("data", f"{dataset.name} test set"),
        ("numpy parameters", source),
    ]
    print(format_report(report, context))
    return 0 if report.passed else 1


def _load_model(path: Path) -> ModelProto:
    require_model_file(path, f"model {path}")
    try:
        model = onnx.load(path)
    except (DecodeError, OSError, ValueError) as error:
        raise ExportError(f"model {path} is not a readable ONNX file ({error})") from None
    if not model.HasField("graph"):  # an empty file parses as an empty message
        raise ExportError(f"model {path} is not a readable ONNX file (it holds no graph)")
    return model


def _require_same_artifact(model: ModelProto, model_path: Path, artifact_path: Path) -> None:
    recorded = {prop.key: prop.value for prop in model.metadata_props}.get(ARTIFACT_SHA256)
    actual = artifact_sha256(artifact_path)
    if recorded is not None and recorded != actual:
        raise ExportError(
            f"artifact {artifact_path} (sha256 {actual[:12]}…) is not the one {model_path} was "
            f"exported from (sha256 {recorded[:12]}…): expected the same artifact or none"
        )


def _describe(model: ModelProto) -> str:
    inputs = ", ".join(map(_signature, model.graph.input))
    outputs = ", ".join(map(_signature, model.graph.output))
    return (
        f"{inputs} -> {outputs}; opset "
        f"{model.opset_import[0].version}, IR {model.ir_version}, model version "
        f"{model.model_version}"
    )


def _signature(value: onnx.ValueInfoProto) -> str:
    tensor = value.type.tensor_type
    dims = [dim.dim_param or str(dim.dim_value) for dim in tensor.shape.dim]
    dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type)
    return f"{value.name} {dtype} [{','.join(dims)}]"


if __name__ == "__main__":
    main()
