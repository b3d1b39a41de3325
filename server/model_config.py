"""A model's config.pbtxt, read as Triton reads it: the protobuf text format of Triton's
ModelConfig (proto/inference/model_config.proto), checked against the ONNX file it describes.

What this server acts on: name, platform/backend, max_batch_size, input and output (name,
data_type, dims, reshape, label_filename), version_policy, default_model_filename,
dynamic_batching (preferred sizes, queue delay, queue size) and parameters (output_role.<output>,
image_shape). Any other field of Triton's schema is accepted and logged as ignored; a field that
is not in Triton's schema is refused with its name and line.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from google.protobuf import text_format
from google.protobuf.message import Message

from scratchnet import datatypes
from scratchnet.api.inference import model_config_pb2 as mc
from scratchnet.errors import ModelError, clip
from scratchnet.files import not_a_file
from server.signature import Signature, TensorSpec, format_dims

__all__ = [
    "CONFIG_FILE",
    "DEFAULT_MODEL_FILENAME",
    "Layout",
    "ModelConfig",
    "ignored_fields",
    "layout",
    "read_config",
]

CONFIG_FILE = "config.pbtxt"
DEFAULT_MODEL_FILENAME = "model.onnx"
ModelConfig = mc.ModelConfig
_PLATFORMS = ("", "onnxruntime_onnx")
_BACKENDS = ("", "onnxruntime")
# The fields this server acts on, by path; anything else set in a config is logged as ignored.
_ACTED_ON = {
    "name",
    "platform",
    "backend",
    "max_batch_size",
    "version_policy",
    "default_model_filename",
    "parameters",
    "input.name",
    "input.data_type",
    "input.dims",
    "input.reshape",
    "output.name",
    "output.data_type",
    "output.dims",
    "output.reshape",
    "output.label_filename",
    "dynamic_batching.preferred_batch_size",
    "dynamic_batching.max_queue_delay_microseconds",
    "dynamic_batching.default_queue_policy.max_queue_size",
}
_log = logging.getLogger(__name__)


def read_config(path: Path) -> mc.ModelConfig:
    """Parse config.pbtxt at `path`; ModelError with the field and line of a mistake."""
    if not path.is_file():  # a folder or a broken link; a FIFO would hold every load for ever
        raise ModelError(f"{path} {not_a_file(path)}, expected the model's configuration")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ModelError(f"cannot read {path}: {error}") from None
    config = mc.ModelConfig()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as error:
        raise ModelError(f"{path}: {_parse_error(error)}") from None
    return config


def check_file_names(config: mc.ModelConfig, origin: str) -> None:
    """The files a config names (`default_model_filename`, each `label_filename`) must be plain
    names in the model's folders: ModelError otherwise. A path would let a config, one given
    with a load request included, make the server read any file it can (as labels, echoed by
    classification) or serve a model from outside the repository."""
    named = [("default_model_filename", config.default_model_filename)]
    named += [(f"output '{out.name}' label_filename", out.label_filename) for out in config.output]
    for field_name, value in named:
        if value and (value in (".", "..") or "/" in value or "\\" in value or "\0" in value):
            raise ModelError(
                f"{origin}: {field_name} is '{clip(value)}', expected a file name in the "
                "model's folder (no path)"
            )


def _parse_error(error: text_format.ParseError) -> str:
    message = str(error)
    found = re.match(r"^(\d+):(\d+) : (.*)$", message, re.DOTALL)
    if not found:
        return message
    line, column, reason = found.groups()
    unknown = re.search(r'has no field named "([^"]+)"', reason)
    if unknown:
        return (
            f"line {line}, column {column}: unknown field '{unknown.group(1)}', which is not "
            "in Triton's model configuration schema"
        )
    return f"line {line}, column {column}: {' '.join(reason.split())}"


def ignored_fields(config: mc.ModelConfig) -> list[str]:
    """The fields set in `config` that this server does not act on, as dotted paths."""
    found: list[str] = []
    _collect(config, "", found)
    return sorted(set(found))


def _collect(message: Message, prefix: str, found: list[str]) -> None:
    for field, value in message.ListFields():
        path = f"{prefix}{field.name}"
        if path in _ACTED_ON:
            continue
        is_map = field.message_type is not None and field.message_type.GetOptions().map_entry
        if (
            field.message_type is not None
            and not is_map
            and any(acted.startswith(path + ".") for acted in _ACTED_ON)
        ):
            values = value if field.is_repeated else [value]
            for item in values:
                _collect(item, path + ".", found)
        else:
            found.append(path)


@dataclass(frozen=True)
class Layout:
    """What clients see of a model: its tensors (dims with -1 for the batch when it batches,
    `model_dims` where a reshape differs), its batch limit and its labels."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    max_batch: int
    """Most items one request may hold; 0 for a model without a batch dimension."""
    max_batch_origin: str
    label_files: dict[str, str]
    """Output name -> label file name (config label_filename)."""


def layout(
    signature: Signature, config: mc.ModelConfig | None, default_max_batch: int, where: str
) -> Layout:
    """The model as clients see it: the ONNX signature, refined by `config` when there is one."""
    # As Triton's onnxruntime backend: a model batches when every input and every output has a
    # dynamic first dimension (an output of fixed or no first dimension is not one per item).
    batching = all(
        spec.dims and spec.dims[0] < 0 for spec in (*signature.inputs, *signature.outputs)
    )
    if config is None:
        return Layout(
            inputs=signature.inputs,
            outputs=signature.outputs,
            max_batch=default_max_batch if batching else 0,
            max_batch_origin="the server's --max-batch",
            label_files={},
        )
    _check_platform(config, where)
    max_batch = config.max_batch_size
    origin = "the model's max_batch_size"
    if max_batch == 0 and batching and not config.input and not config.output:
        # A config that gives neither max_batch_size nor tensors (only a version policy, say)
        # leaves the batch to the server, as no config does; Triton's onnxruntime backend
        # fills it in too. With tensors listed, 0 is taken as meant: no batch dimension.
        max_batch = default_max_batch
        origin = "the server's --max-batch (the config gives no max_batch_size)"
    if max_batch < 0:
        raise ModelError(f"{where}: max_batch_size is {max_batch}, expected 0 or more")
    if max_batch > 0 and not batching:
        kind, fixed = next(
            (kind, spec)
            for kind, specs in (("input", signature.inputs), ("output", signature.outputs))
            for spec in specs
            if not (spec.dims and spec.dims[0] < 0)
        )
        raise ModelError(
            f"{where}: max_batch_size {max_batch} needs a dynamic first dimension, but {kind} "
            f"{fixed} has none: set max_batch_size 0"
        )
    for entry in config.input:
        if entry.name in signature.fixed_inputs:
            raise ModelError(
                f"{where}: config input '{entry.name}' is an initializer the graph also lists as "
                "an input, which this server serves as the weights it holds and does not let "
                "requests override: leave it out of the config"
            )
    inputs = _apply(where, "input", signature.inputs, config.input, max_batch)
    outputs = _apply(where, "output", signature.outputs, config.output, max_batch)
    return Layout(
        inputs=inputs,
        outputs=outputs,
        max_batch=max_batch,
        max_batch_origin=origin,
        label_files={out.name: out.label_filename for out in config.output if out.label_filename},
    )


def _check_platform(config: mc.ModelConfig, where: str) -> None:
    if config.platform not in _PLATFORMS or config.backend not in _BACKENDS:
        given = config.platform or config.backend
        raise ModelError(
            f"{where}: platform/backend '{given}' is not served here, expected "
            "platform 'onnxruntime_onnx' or backend 'onnxruntime' (or neither)"
        )


def _apply(
    where: str,
    kind: str,
    specs: Sequence[TensorSpec],
    configured: Sequence[mc.ModelInput] | Sequence[mc.ModelOutput],
    max_batch: int,
) -> tuple[TensorSpec, ...]:
    by_name = {spec.name: spec for spec in specs}
    seen: dict[str, TensorSpec] = {}
    for entry in configured:
        spec = by_name.get(entry.name)
        if spec is None:
            raise ModelError(
                f"{where}: config {kind} '{entry.name}' is not one of the model's {kind}s "
                f"{', '.join(by_name)}"
            )
        if entry.name in seen:
            raise ModelError(f"{where}: config {kind} '{entry.name}' appears twice")
        seen[entry.name] = _configured(where, kind, spec, entry, max_batch)
    if kind == "output" and seen:
        # As Triton: a config that lists outputs makes those the model's outputs (metadata, the
        # default outputs of a request, the names a request may ask for).
        return tuple(seen[spec.name] for spec in specs if spec.name in seen)
    return tuple(seen.get(spec.name, spec) for spec in specs)


def _configured(
    where: str, kind: str, spec: TensorSpec, entry: mc.ModelInput | mc.ModelOutput, max_batch: int
) -> TensorSpec:
    what = f"{where}: config {kind} '{entry.name}'"
    # As Triton (ValidateIOShape): a listed tensor says its type and dims, even where the model
    # could tell them.
    if not entry.data_type:
        raise ModelError(f"{what} must specify 'data_type' (the model's is {spec.datatype.triton})")
    if not entry.dims:
        raise ModelError(
            f"{what} must specify 'dims' (for a scalar per item: dims [ 1 ] and "
            "reshape { shape: [ ] })"
        )
    if entry.HasField("reshape") and not entry.reshape.shape and max_batch <= 0:
        raise ModelError(
            f"{what}: an empty reshape without a batch dimension (max_batch_size 0) would make "
            "a scalar, which Triton does not serve"
        )
    datatype = datatypes.by_triton(mc.DataType.Name(entry.data_type))
    if datatype != spec.datatype:
        raise ModelError(
            f"{what} has data_type {mc.DataType.Name(entry.data_type)}, but the model's is "
            f"{spec.datatype.triton}"
        )
    batch = (-1,) if max_batch > 0 else ()
    dims = batch + tuple(int(dim) for dim in entry.dims)
    model_dims = batch + tuple(int(dim) for dim in entry.reshape.shape)
    if not entry.HasField("reshape"):
        model_dims = dims
    if not _fits(model_dims, spec.dims):
        shown = "reshape" if entry.HasField("reshape") else "dims"
        raise ModelError(
            f"{what}: {shown} give shape {format_dims(model_dims)}, but the model's is "
            f"{format_dims(spec.dims)}"
        )
    if entry.HasField("reshape") and not _same_size(dims, model_dims):
        raise ModelError(
            f"{what}: dims {format_dims(dims)} and reshape {format_dims(model_dims)} hold a "
            "different number of elements"
        )
    return TensorSpec(
        spec.name, spec.datatype, dims, spec.producer, model_dims if model_dims != dims else None
    )


def _fits(configured: tuple[int, ...], model: tuple[int, ...]) -> bool:
    """Whether configured dims describe the model's: same rank, fixed sizes equal."""
    return len(configured) == len(model) and all(
        mine == theirs or theirs < 0 for mine, theirs in zip(configured, model, strict=True)
    )


def _same_size(a: tuple[int, ...], b: tuple[int, ...]) -> bool:
    if any(dim < 0 for dim in a[1:] + b[1:]):
        return True  # variable sizes: checked per request
    size_a = size_b = 1
    for dim in a[1:] if a and a[0] < 0 else a:
        size_a *= dim
    for dim in b[1:] if b and b[0] < 0 else b:
        size_b *= dim
    return size_a == size_b
