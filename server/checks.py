"""The data plane's checks, each written once: a request's parameters, its outputs and inputs
against the model (names, datatypes, shapes, data, values), the model's results against the
request, and the reshapes between what clients send and receive and what the graph takes and gives.
"""

from __future__ import annotations

import json
import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from scratchnet import datatypes
from scratchnet.contract import PIXEL_MAX, scale_uint8
from scratchnet.datatypes import Datatype
from scratchnet.errors import InvalidArgument, ModelFailed, clip
from server.classification import top_classes
from server.model import Model
from server.shared_memory import requested_region
from server.signature import TensorSpec, format_dims
from server.tensors import JSON_DATA, InputTensor, decode, raw_size

__all__ = [
    "CLASSIFICATION",
    "EMPTY_FINAL_RESPONSE",
    "RequestedOutput",
    "as_client_gets",
    "as_model_takes",
    "batch_size",
    "check_batch_results",
    "check_finite_results",
    "check_output_room",
    "check_request_parameters",
    "declared_bytes",
    "input_array",
    "matched_inputs",
    "requested_outputs",
]

CLASSIFICATION = "classification"
"""The output parameter of Triton's classification extension: how many top classes to answer."""


@dataclass(slots=True)  # not frozen: one is built per request, frozen costs 3x
class RequestedOutput:
    """An output a client asks for by name."""

    name: str
    parameters: Mapping[str, Any] = field(default_factory=dict)


_SCHEDULING_PARAMETERS = {
    "priority": "a priority level, 0 for the model's default",
    "timeout": "microseconds, 0 for none",
}
"""Request parameters Triton reads as unsigned 64-bit integers, and what each counts."""
_SEQUENCE_FLAGS = {
    "sequence_start": "true on a sequence's first request",
    "sequence_end": "true on a sequence's last request",
}
"""The sequence extension's request parameters Triton reads as booleans, and what each says."""
_SEQUENCE_ID = "sequence_id"
EMPTY_FINAL_RESPONSE = "triton_enable_empty_final_response"
"""The one `triton_` request parameter Triton's gRPC binding takes (a boolean); its HTTP binding
refuses every `triton_` name."""
_RESERVED_PREFIX = "triton_"
_UINT64_MAX = 2**64 - 1


def check_request_parameters(
    parameters: Mapping[str, Any], model_name: str, reserved: Collection[str] = ()
) -> None:
    """Refuse the request parameters Triton refuses: `priority` or `timeout` not an integer in
    [0, 2^64 - 1], `sequence_id` neither such an integer nor a string, `sequence_start`,
    `sequence_end` or a `reserved` name not a boolean, any other name starting with `triton_`,
    and other parameters with no value or an array or object for one; plain values, as either
    binding decodes them (None: no value set)."""
    for key, value in parameters.items():
        if key in _SCHEDULING_PARAMETERS:
            valid = _is_uint64(value)
            expected = f"an unsigned integer ({_SCHEDULING_PARAMETERS[key]})"
        elif key == _SEQUENCE_ID:
            valid = _is_uint64(value) or type(value) is str
            expected = 'an unsigned integer or a string (the sequence\'s id, 0 or "" for none)'
        elif key in _SEQUENCE_FLAGS:
            valid = type(value) is bool
            expected = f"a boolean ({_SEQUENCE_FLAGS[key]})"
        elif key in reserved:
            valid, expected = type(value) is bool, "a boolean"
        elif key.startswith(_RESERVED_PREFIX):
            allowed = "".join(f" or '{name}'" for name in reserved)
            raise InvalidArgument(
                f"request parameter '{clip(key)}' for model '{clip(model_name)}': names "
                f"starting with '{_RESERVED_PREFIX}' are reserved for Triton, expected another "
                f"name{allowed}"
            )
        else:  # a parameter of the model's or the client's own, which Triton passes on
            valid = type(value) in (bool, int, float, str)
            expected = "a boolean, a number or a string"
        if not valid:
            raise InvalidArgument(
                f"request parameter '{clip(key)}' for model '{clip(model_name)}' is "
                f"{_described(value)}, expected {expected}"
            )


def _is_uint64(value: Any) -> bool:
    return type(value) is int and 0 <= value <= _UINT64_MAX  # type(): True is no integer


def _described(value: Any) -> str:
    """A parameter's type, with its value, in words that fit JSON and protobuf alike."""
    if value is None:
        return "empty (no value set)"
    if type(value) is int:
        sign = "a negative" if value < 0 else "an out-of-range" if value > _UINT64_MAX else "an"
        return f"{sign} integer ({clip(str(value))})"
    kind = {bool: "a boolean", str: "a string", float: "a floating-point number"}
    named = kind.get(type(value))
    if named is None:  # a JSON array or object
        return f"a JSON {'array' if isinstance(value, list) else 'object'}"
    return f"{named} ({clip(json.dumps(value))})"


def declared_bytes(tensors: Sequence[InputTensor], model: Model | None = None) -> int:
    """What a request's inputs will hold once decoded, from their declared shapes and datatypes
    (before any payload is decoded): what the memory budget counts. An input the model takes in
    a wider type (uint8 pixels for a float32 input) counts at the model's width, as the server
    converts it. A shape counts for no more values than were sent: one that promises more is the
    client's mistake (INVALID_ARGUMENT from the checks), not a request too large for now."""
    specs = model.input_specs if model is not None else {}
    image_input = model.classifier.input if model is not None and model.classifier else None
    total = 0
    for tensor in tensors:
        datatype = datatypes.by_name(tensor.datatype)
        count = max(tensor.element_count, 0) if all(dim >= 0 for dim in tensor.shape) else 0
        if datatype is None or datatype.itemsize == 0:  # strings: their bytes as sent
            total += len(tensor.raw) if tensor.raw is not None else count
            continue
        if tensor.raw is not None:
            count = min(count, len(tensor.raw) // datatype.itemsize)
        elif tensor.typed is not None:
            count = min(count, len(tensor.typed))
        spec = specs.get(tensor.name, image_input)
        total += count * max(datatype.itemsize, spec.datatype.itemsize if spec else 0)
    return total


def batch_size(model: Model, inputs: Sequence[tuple[TensorSpec, NDArray[Any]]]) -> int:
    """Items in a request: the first dimension of a batching model's inputs, the same in each
    (InvalidArgument otherwise, as Triton answers), else 1."""
    if model.max_batch <= 0 or not inputs or not inputs[0][1].ndim:
        return 1
    first, items = inputs[0][0], int(inputs[0][1].shape[0])
    for spec, array in inputs[1:]:
        if array.shape[0] != items:
            raise InvalidArgument(
                f"{model.describe(spec)}: batch size {array.shape[0]} does not match the "
                f"{items} of input '{first.name}': every input of a batching model holds the same "
                "number of items"
            )
    return items


def requested_outputs(
    model: Model, requested: Sequence[RequestedOutput]
) -> list[tuple[TensorSpec, int]]:
    """The outputs a request asks for, in its order (none: all, in the model's), each with the
    class count of Triton's classification extension (0: the tensor itself); a name asked twice
    is refused, as Triton refuses it (the two could ask for different things)."""
    specs = model.output_specs
    chosen: dict[str, tuple[TensorSpec, int]] = {}
    for output in requested:
        spec = specs.get(output.name)
        if spec is None:
            raise InvalidArgument(
                f"unexpected inference output '{clip(output.name)}' for model '{model.name}', "
                f"expected one of {', '.join(specs)}"
            )
        count = output.parameters.get(CLASSIFICATION, 0)
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            raise InvalidArgument(
                f"{model.describe(spec, 'output')}: parameter '{CLASSIFICATION}' must be a "
                f"class count >= 0 (0: the tensor itself), got {clip(repr(count))}"
            )
        if output.name in chosen:
            raise InvalidArgument(
                f"output '{clip(output.name)}' already exists in request: ask for each output "
                f"of model '{model.name}' once"
            )
        chosen[output.name] = (spec, count)
    return list(chosen.values()) or [(spec, 0) for spec in model.outputs]


def as_model_takes(model: Model, spec: TensorSpec, array: NDArray[Any]) -> NDArray[Any]:
    """A checked input in the shape the graph takes (a config's reshape), BYTES as text."""
    if array.dtype.kind == "O":
        array = _as_text(model, spec, array)
    if spec.model_dims is None:
        return array
    return array.reshape(_concrete(model, spec.model_dims, array.shape))


def _as_text(model: Model, spec: TensorSpec, array: NDArray[Any]) -> NDArray[Any]:
    """BYTES elements as the str that onnxruntime's string tensors take: it would turn bytes
    into their repr ("b'...'"), and takes text only."""
    texts = np.empty(array.size, dtype=object)
    for index, value in enumerate(array.ravel()):
        try:
            texts[index] = value.decode() if isinstance(value, bytes) else str(value)
        except UnicodeDecodeError as error:
            raise InvalidArgument(
                f"{model.describe(spec)}: BYTES element {index} is not UTF-8 text "
                f"({error.reason} at byte {error.start}), expected UTF-8: the model's string "
                "tensors hold text"
            ) from None
    return texts.reshape(array.shape)


def as_client_gets(
    model: Model, spec: TensorSpec, value: NDArray[Any], class_count: int
) -> NDArray[Any]:
    """An output in the shape clients get (a config's reshape), or its top classes."""
    if spec.model_dims is not None:
        value = value.reshape(_concrete(model, spec.dims, value.shape))
    if class_count:
        batched = model.max_batch > 0
        labels = model.labels.get(spec.name, ())
        return top_classes(value, class_count, labels, batched, model.describe(spec, "output"))
    return value


def _concrete(model: Model, dims: Sequence[int], shape: Sequence[int]) -> tuple[int, ...]:
    """`dims` with the batch dimension taken from `shape` (numpy fills in one other -1)."""
    if model.max_batch > 0 and dims and shape:
        return (int(shape[0]), *dims[1:])
    return tuple(dims)


def matched_inputs(
    model: Model, tensors: Sequence[InputTensor]
) -> list[tuple[TensorSpec, InputTensor]]:
    """Each of the model's inputs with the request's tensor for it; Triton's words otherwise."""
    specs = model.input_specs
    given: dict[str, InputTensor] = {}
    for tensor in tensors:
        if tensor.name not in specs:
            fixed = tensor.name in model.signature.fixed_inputs
            raise InvalidArgument(
                f"unexpected inference input '{clip(tensor.name)}' for model '{model.name}'"
                + (
                    ": it is an initializer of the graph, which requests cannot override"
                    if fixed
                    else f", expected {'one of ' if len(specs) > 1 else ''}{', '.join(specs)}"
                )
            )
        if tensor.name in given:
            raise InvalidArgument(
                f"input '{tensor.name}' already exists in request for model '{model.name}': "
                "expected it once"
            )
        given[tensor.name] = tensor
    missing = [name for name in specs if name not in given]
    if missing:
        got = ", ".join(f"'{name}'" for name in given)
        wanted = ", ".join(f"'{name}'" for name in missing)
        raise InvalidArgument(
            f"expected {len(specs)} inputs but got {len(given)} inputs for model "
            f"'{model.name}'. Got inputs [{got}], but missing required inputs [{wanted}]. "
            "Please provide all required inputs."
        )
    return [(specs[name], given[name]) for name in specs]


def input_array(
    model: Model,
    spec: TensorSpec,
    tensor: InputTensor,
    dims: tuple[int, ...] | None = None,
    accepted: tuple[Datatype, ...] | None = None,
) -> NDArray[Any]:
    """The checked array of one input: datatype, shape, data, then values; `dims` and
    `accepted` default to the input's own."""
    what = model.describe(spec)
    dims = spec.dims if dims is None else dims
    accepted = model.accepted(spec) if accepted is None else accepted
    datatype = datatypes.by_name(tensor.datatype)
    if datatype not in accepted:
        raise InvalidArgument(
            f"{what}: expected datatype {datatypes.names(accepted)}, got {clip(tensor.datatype)}"
        )
    assert datatype is not None
    _check_shape(model, what, tensor.shape, dims)
    if tensor.typed is not None and tensor.typed_field != JSON_DATA:
        _check_contents_field(model, spec, datatype, tensor.typed_field)
    array = decode(tensor, datatype, what)
    image_input = model.classifier is not None and spec.name == model.classifier.input.name
    if image_input:
        _check_pixels(model, what, array)
    elif datatype.is_float:
        _check_finite(what, array, "values", "item")
    if array.dtype != spec.datatype.numpy:
        # Only pixels for a float image input get here (see Model.accepted).
        assert model.classifier is not None
        if array.dtype == np.uint8:
            array = scale_uint8(array, model.classifier.input_scale)
        array = array.astype(spec.datatype.numpy)
    return array


def _check_contents_field(model: Model, spec: TensorSpec, datatype: Datatype, field: str) -> None:
    """Typed protobuf contents must use the field of the tensor's datatype."""
    if datatype.contents_field is None:
        raise InvalidArgument(
            f"{model.describe(spec)}: datatype {datatype} has no typed contents field, expected "
            "its data in raw_input_contents"
        )
    if field != datatype.contents_field:
        raise InvalidArgument(
            f"unexpected explicit tensor data for input tensor '{spec.name}' for model "
            f"'{model.name}' in {field}, expected {datatype.contents_field} for datatype "
            f"'{datatype}'"
        )


def _check_shape(model: Model, what: str, shape: Sequence[int], dims: Sequence[int]) -> None:
    if any(size < 0 for size in shape):
        raise InvalidArgument(
            f"{what}: shape {format_dims(shape)} has a negative dimension, expected sizes >= 0 "
            f"for shape {format_dims(dims)}"
        )
    fits = len(shape) == len(dims) and all(
        want < 0 or size == want for size, want in zip(shape, dims, strict=True)
    )
    if not fits:
        raise InvalidArgument(
            f"{what}: expected shape {format_dims(dims)}, got {format_dims(shape)}"
        )
    if model.max_batch > 0 and dims and dims[0] < 0:
        if shape[0] == 0:
            raise InvalidArgument(
                f"{what}: the batch is empty (shape {format_dims(shape)}), expected at least one "
                f"{'image' if len(dims) == 3 else 'item'}"
            )
        if shape[0] > model.max_batch:
            raise InvalidArgument(
                f"{what}: batch size must be <= {model.max_batch} ({model.max_batch_origin}), "
                f"got {shape[0]}"
            )


def _all_finite(array: NDArray[Any]) -> bool:
    """Whether every value of a float array is finite."""
    if array.dtype.itemsize < 8:
        # One float64 sum is cheaper than an elementwise mask and is finite iff every value is:
        # float64 cannot overflow on sums of narrower floats.
        return math.isfinite(np.add.reduce(array, axis=None, dtype=np.float64))
    return bool(np.isfinite(array).all())


def _check_finite(what: str, array: NDArray[Any], values: str, item: str) -> None:
    # The elementwise mask only runs to name the culprit.
    if array.size == 0 or _all_finite(array):
        return
    rows = array.reshape(len(array), -1) if array.ndim else array.reshape(1, -1)
    bad = ~np.isfinite(rows).all(axis=1)
    first = int(np.flatnonzero(bad)[0])
    raise InvalidArgument(
        f"{what}: {values} must be finite, found NaN or infinity in {int(bad.sum())} "
        f"{item}(s), the first at index {first}"
    )


def _check_pixels(model: Model, what: str, images: NDArray[Any]) -> None:
    """Float pixels must be finite and, for a model that declares its input_scale, in range."""
    if images.dtype.kind != "f":
        return
    if not model.declares_input_scale or model.classifier is None:
        _check_finite(what, images, "pixels", "image")
        return
    # min and max are NaN if any pixel is, so this one pass also finds the non-finite ones.
    scale = model.classifier.input_scale
    high = PIXEL_MAX * scale
    # The ufuncs' own reduce: numpy's min() and max() wrappers cost more than the work here.
    lowest = float(np.minimum.reduce(images, axis=None))
    highest = float(np.maximum.reduce(images, axis=None))
    if not (math.isfinite(lowest) and math.isfinite(highest)):
        _check_finite(what, images, "pixels", "image")
    if lowest < 0 or highest > high:
        bad = ((images < 0) | (images > high)).reshape(len(images), -1).any(axis=1)
        value = lowest if lowest < 0 else highest
        found = f"{value:.6g}"
        if 0 <= float(found) <= high:  # rounded into the range (1.0000001 as 1): every digit
            found = repr(value)
        raise InvalidArgument(
            f"{what}: float pixels must lie in [0, {high:g}] (the model's input_scale is "
            f"{scale:.6g}), found {found} in image "
            f"{int(np.flatnonzero(bad)[0])}: divide 0-{PIXEL_MAX:g} pixels by {1 / scale:g} or "
            "send them as UINT8"
        )


def check_batch_results(
    model: Model, feeds: Mapping[str, NDArray[Any]], results: Mapping[str, NDArray[Any]]
) -> None:
    """A batching model answers each item of the batch: anything else is the model's fault."""
    if model.max_batch <= 0:
        return
    items = next(iter(feeds.values())).shape[0]
    for name, value in results.items():
        if value.ndim == 0 or value.shape[0] != items:
            raise ModelFailed(
                f"model '{model.name}' gave output '{name}' of shape {list(value.shape)} for a "
                f"batch of {items}, expected its first dimension to be the batch"
            )


def check_finite_results(model: Model, results: Mapping[str, NDArray[Any]]) -> None:
    """Never answer OK with NaN or infinity: such results mean the inputs were out of range."""
    for name, value in results.items():
        if value.dtype.kind != "f" or value.size == 0:
            continue
        if _all_finite(value):
            continue
        bad = ~np.isfinite(value.reshape(len(value), -1)).all(axis=1) if value.ndim else [True]
        first = int(np.flatnonzero(bad)[0])
        raise InvalidArgument(
            f"model '{model.name}' computed NaN or infinity in output '{name}' for item {first}: "
            "its inputs are outside the range the model handles"
        )


def check_output_room(
    model: Model, requested: Sequence[RequestedOutput], answer: Mapping[str, NDArray[Any]]
) -> None:
    """An output asked for in shared memory must fit the bytes its request gives it: checked
    before the call counts as a success, so that statistics, metrics and the log say refused."""
    for output in requested:
        if not output.parameters:
            continue
        what = f"output '{clip(output.name)}' of model '{model.name}'"
        region = requested_region(output.parameters, what)
        if region is None:
            continue
        name, _, room = region
        size = raw_size(answer[output.name])
        if size > room:
            raise InvalidArgument(
                f"{what}: {size} bytes do not fit in the {room} bytes given in shared memory "
                f"region '{clip(name)}'"
            )
