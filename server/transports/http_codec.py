"""The Open Inference Protocol's HTTP/REST binding to and from the data plane, as plain functions.

A request body is a JSON object, optionally followed by binary tensor data (Triton's binary
tensor data extension): the header `Inference-Header-Content-Length` then gives the JSON's length,
and each input with parameter `binary_data_size` takes that many bytes of the rest, in input
order. Outputs go back as JSON `data`, or as binary data after the JSON when an output's
parameter `binary_data` (or the request's `binary_data_output`) asks for it. Outputs in JSON are
exact: a float32 is written as the shortest decimal of its float64 value, which reads back as the
same float32.
"""

from __future__ import annotations

import json
import sys
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from numpy.typing import NDArray

from scratchnet import datatypes
from scratchnet.errors import InvalidArgument, TooLarge, clip
from server import checks
from server.dataplane import InferRequest, InferResponse, RequestedOutput
from server.model import Model
from server.tensors import JSON_DATA, InputTensor, pack_strings
from server.transports import oip_codec

__all__ = [
    "BINARY_CONTENT_TYPE",
    "HEADER_LENGTH",
    "JSON_CONTENT_TYPE",
    "Reply",
    "decompress",
    "error_reply",
    "index_ready",
    "infer_request",
    "infer_response",
    "is_compressed",
    "json_reply",
    "load_config",
    "message_json",
    "model_metadata",
    "server_metadata",
    "unload_request",
]

HEADER_LENGTH = "Inference-Header-Content-Length"
"""The header that gives the JSON's length when binary tensor data follows it."""
JSON_CONTENT_TYPE = "application/json"
BINARY_CONTENT_TYPE = "application/octet-stream"
"""What Triton answers with when binary output data follows the JSON."""
BINARY_DATA = "binary_data"
BINARY_DATA_SIZE = "binary_data_size"
BINARY_DATA_OUTPUT = "binary_data_output"

# Tensor parameters that ask for a Triton extension this server lacks: refused, as oip_codec
# refuses them on gRPC, since ignoring them would answer something else than was asked.
_EXTENSION_PARAMETERS = {"shared_memory_region": "shared-memory"}


@dataclass(frozen=True)
class Reply:
    """An HTTP answer: status, body and the headers that describe it."""

    status: int
    body: bytes
    headers: Mapping[str, str]


def error_reply(status: int, message: str) -> Reply:
    """`{"error": message}` with `status`, as the protocol answers every failure."""
    return json_reply({"error": message}, status)


def server_metadata(name: str, version: str, extensions: Sequence[str]) -> Reply:
    """GET /v2: the server's name, version and protocol extensions."""
    return json_reply({"name": name, "version": version, "extensions": list(extensions)})


def model_metadata(model: Model, versions: Sequence[str], properties: Mapping[str, str]) -> Reply:
    """GET /v2/models/{name}[/versions/{v}]: what gRPC's ModelMetadata says, as JSON."""
    message = oip_codec.model_metadata(model, versions, properties)

    def tensors(specs: Any) -> list[dict[str, Any]]:
        return [
            {"name": spec.name, "datatype": spec.datatype, "shape": list(spec.shape)}
            for spec in specs
        ]

    return json_reply(
        {
            "name": message.name,
            "versions": list(message.versions),
            "platform": message.platform,
            "inputs": tensors(message.inputs),
            "outputs": tensors(message.outputs),
            "properties": dict(message.properties),
        }
    )


def message_json(message: Message, *, defaults: bool = True) -> dict[str, Any]:
    """A protobuf answer (configuration, statistics, index) as the JSON Triton's HTTP server
    gives: field names as in the .proto, 64-bit integers as numbers (protobuf's JSON mapping
    writes them as strings), fields at their default values too unless `defaults` is false."""
    document = json_format.MessageToDict(
        message,
        preserving_proto_field_name=True,
        always_print_fields_with_no_presence=defaults,
    )
    return _numbers(message, document)


_INT64 = {
    FieldDescriptor.TYPE_INT64,
    FieldDescriptor.TYPE_UINT64,
    FieldDescriptor.TYPE_SINT64,
    FieldDescriptor.TYPE_FIXED64,
    FieldDescriptor.TYPE_SFIXED64,
}


def _numbers(message: Message, document: dict[str, Any]) -> dict[str, Any]:
    """`document` (MessageToDict of `message`) with its 64-bit integers turned into numbers."""
    for field in message.DESCRIPTOR.fields:
        if field.name not in document:
            continue
        value, held = document[field.name], getattr(message, field.name)
        entry = field.message_type
        if entry is not None and entry.GetOptions().map_entry:
            of = entry.fields_by_name["value"]
            if of.message_type is not None:
                document[field.name] = {k: _numbers(held[k], v) for k, v in value.items()}
            elif of.type in _INT64:
                document[field.name] = {k: int(v) for k, v in value.items()}
        elif entry is not None and entry.full_name.startswith("google.protobuf."):
            continue  # well-known types have JSON forms of their own
        elif entry is not None:
            if field.is_repeated:
                document[field.name] = [_numbers(m, d) for m, d in zip(held, value, strict=True)]
            else:
                document[field.name] = _numbers(held, value)
        elif field.type in _INT64:
            document[field.name] = [int(v) for v in value] if field.is_repeated else int(value)
    return document


def _request_object(body: bytes, what: str, expected: str) -> dict[str, Any]:
    """A JSON object body (an empty body is `{}`); InvalidArgument naming `what` otherwise."""
    if not body.strip():
        return {}
    try:
        document = _loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InvalidArgument(
            f"{what}: the body is not valid JSON ({error}), expected {expected}"
        ) from None
    if not isinstance(document, dict):
        raise InvalidArgument(f"{what}: the body is a JSON {_kind(document)}, expected {expected}")
    return document


def _loads(text: bytes) -> Any:
    """json.loads, with JSON nested past the parser's depth, or an integer past Python's digit
    limit, a JSONDecodeError like any other (the parser raises RecursionError or ValueError for
    them: a 500)."""
    try:
        return json.loads(text)
    except RecursionError:
        raise json.JSONDecodeError(
            f"arrays or objects nested more than {sys.getrecursionlimit()} deep", "", 0
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise
    except ValueError:  # "Exceeds the limit (4300 digits) for integer string conversion"
        raise json.JSONDecodeError(
            f"an integer of more than {sys.get_int_max_str_digits()} digits", "", 0
        ) from None


def index_ready(body: bytes) -> bool:
    """POST /v2/repository/index: whether the body asks for READY models only."""
    document = _request_object(body, "repository index", '{"ready": true|false}')
    ready = document.get("ready", False)
    if not isinstance(ready, bool):
        raise InvalidArgument(
            f"repository index: 'ready' is {clip(json.dumps(ready))}, expected true or false"
        )
    return ready


def load_config(body: bytes, name: str) -> str:
    """POST …/load: the JSON model configuration in the body's parameter 'config' ("" if none);
    InvalidArgument for any other parameter, as over gRPC."""
    what = f"failed to load '{clip(name)}'"
    document = _request_object(body, what, '{"parameters": {"config": "<JSON text>"}}')
    parameters = _object(document.get("parameters", {}), f"{what}: 'parameters'")
    config = ""
    for key, value in parameters.items():
        if key != "config":
            raise InvalidArgument(
                f"{what}: parameter '{clip(key)}' is not supported, expected only 'config' "
                "(JSON text)"
            )
        if not isinstance(value, str):
            raise InvalidArgument(
                f"{what}: parameter 'config' is a JSON {_kind(value)}, expected a string "
                "(the configuration as JSON text)"
            )
        config = value
    return config


def unload_request(body: bytes, name: str) -> None:
    """POST …/unload: check the body, which may only say `unload_dependents` (this server has
    no ensembles, so there are no dependents to unload)."""
    what = f"failed to unload '{clip(name)}'"
    document = _request_object(body, what, '{"parameters": {"unload_dependents": true|false}}')
    parameters = _object(document.get("parameters", {}), f"{what}: 'parameters'")
    for key, value in parameters.items():
        if key != "unload_dependents":
            raise InvalidArgument(
                f"{what}: parameter '{clip(key)}' is not supported, expected only "
                "'unload_dependents' (true or false)"
            )
        if not isinstance(value, bool):
            raise InvalidArgument(
                f"{what}: parameter 'unload_dependents' is {clip(json.dumps(value))}, "
                "expected true or false"
            )


def is_compressed(encoding: str | None) -> bool:
    """Whether a `Content-Encoding` header asks for the body to be decompressed (or refused)."""
    return encoding is not None and encoding.strip().lower() not in ("", "identity")


def decompress(body: bytes, encoding: str | None, limit: int) -> bytes:
    """The body as sent before `Content-Encoding` (gzip or deflate) was applied, at most `limit`
    bytes; InvalidArgument for an unknown encoding or bad data, TooLarge beyond it."""
    if encoding is None or not is_compressed(encoding):
        return body
    name = encoding.strip().lower()
    if name not in ("gzip", "deflate"):
        raise InvalidArgument(
            f"unsupported Content-Encoding '{clip(encoding)}', expected gzip, deflate or none"
        )
    # deflate means the zlib format (RFC 9110), which tritonclient sends; gzip has its own header.
    inflater = zlib.decompressobj(wbits=31 if name == "gzip" else 15)
    try:
        data = inflater.decompress(body, limit + 1)
    except zlib.error as error:
        raise InvalidArgument(f"the request body is not valid {name} data ({error})") from None
    if len(data) > limit:
        raise TooLarge(
            f"the request body is over {limit} bytes once decompressed (the server's "
            "--max-message-mb)"
        )
    if not inflater.eof:
        raise InvalidArgument(f"the request body is truncated {name} data")
    return data


def infer_request(
    body: bytes, header_length: str | None, model_name: str, model_version: str = ""
) -> tuple[InferRequest, bool]:
    """The data plane's request for a POST …/infer body, and whether outputs that do not say
    otherwise go back binary (the request's `binary_data_output`)."""
    model = clip(model_name)
    json_part, binary = _split(body, header_length, model)
    try:
        document = _loads(json_part)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        # Bytes after a JSON document, or bytes that are not text: likely binary tensor data.
        binary_like = isinstance(error, UnicodeDecodeError) or error.msg == "Extra data"
        hint = (
            f" (binary tensor data after the JSON needs the header {HEADER_LENGTH})"
            if header_length is None and binary_like
            else ""
        )
        raise InvalidArgument(
            f"the request body for model '{model}' is not valid JSON ({error}), expected an "
            f'inference request object {{"inputs": [...]}}{hint}'
        ) from None
    if not isinstance(document, dict):
        raise InvalidArgument(
            f"the request body for model '{model}' is a JSON {_kind(document)}, expected an "
            'object {"inputs": [...]}'
        )
    parameters = _object(document.get("parameters", {}), f"request parameters of model '{model}'")
    binary_default = parameters.get(BINARY_DATA_OUTPUT, False)
    if not isinstance(binary_default, bool):
        raise InvalidArgument(
            f"request parameter '{BINARY_DATA_OUTPUT}' for model '{model}' is "
            f"{json.dumps(binary_default)}, expected true or false"
        )
    checks.check_request_parameters(parameters, model_name)
    inputs = _inputs(document.get("inputs"), binary, model)
    outputs = _outputs(document.get("outputs", []), model)
    request_id = document.get("id", "")
    if not isinstance(request_id, str):
        raise InvalidArgument(f"request 'id' for model '{model}' must be a string")
    request = InferRequest(
        model_name=model_name,
        model_version=model_version,
        inputs=inputs,
        outputs=outputs,
        id=request_id,
    )
    return request, binary_default


def infer_response(
    response: InferResponse, requested: Sequence[RequestedOutput], binary_default: bool
) -> Reply:
    """The answer to an inference: outputs in JSON `data`, or binary after the JSON."""
    binary_names = {
        output.name
        for output in requested
        if output.parameters.get(BINARY_DATA, binary_default) is True
    }
    if not requested and binary_default:
        binary_names = set(response.outputs)
    document: dict[str, Any] = {
        "model_name": response.model_name,
        "model_version": response.model_version,
    }
    if response.id:
        document["id"] = response.id
    outputs: list[dict[str, Any]] = []
    chunks: list[bytes] = []
    for name, value in response.outputs.items():
        datatype = datatypes.by_numpy(value.dtype)
        entry: dict[str, Any] = {"name": name, "datatype": datatype.name, "shape": value.shape}
        if name in binary_names:
            if datatype.itemsize == 0:  # BYTES, e.g. the classification extension's strings
                chunk = pack_strings(value)
            else:
                chunk = np.ascontiguousarray(value, dtype=datatype.numpy).tobytes()
            entry["parameters"] = {BINARY_DATA_SIZE: len(chunk)}
            chunks.append(chunk)
        else:
            entry["data"] = _json_values(value)
        outputs.append(entry)
    document["outputs"] = outputs
    head = _dumps(document)
    if not chunks:
        return Reply(200, head, {"content-type": JSON_CONTENT_TYPE})
    headers = {"content-type": BINARY_CONTENT_TYPE, HEADER_LENGTH.lower(): str(len(head))}
    return Reply(200, b"".join([head, *chunks]), headers)


def _split(body: bytes, header_length: str | None, model: str) -> tuple[bytes, memoryview]:
    """The JSON part of the body and the binary data after it (none without the header)."""
    if header_length is None:
        return body, memoryview(b"")
    text = header_length.strip()
    if not (text.isascii() and text.isdigit()):  # int() would take '٣', isdigit() '²'
        raise InvalidArgument(
            f"header {HEADER_LENGTH} of a request for model '{model}' is '{clip(header_length)}',"
            f" expected the JSON's length in bytes (0 to {len(body)})"
        )
    length = int(text)
    if length > len(body):
        raise InvalidArgument(
            f"header {HEADER_LENGTH} of a request for model '{model}' says {length} bytes of "
            f"JSON, but the body has only {len(body)} bytes"
        )
    view = memoryview(body)
    return bytes(view[:length]), view[length:]


def _inputs(value: Any, binary: memoryview, model: str) -> list[InputTensor]:
    if not isinstance(value, list):
        raise InvalidArgument(
            f"the request for model '{model}' has no 'inputs' array, expected "
            '"inputs": [{"name": ..., "shape": [...], "datatype": ..., "data": [...]}]'
        )
    tensors = []
    offset = 0
    for index, item in enumerate(value):
        what = f"input {index} of the request for model '{model}'"
        tensor = _object(item, what)
        name = tensor.get("name")
        if not isinstance(name, str):
            raise InvalidArgument(f"{what} has no 'name' string")
        what = f"input '{clip(name)}' of model '{model}'"
        datatype = tensor.get("datatype")
        if not isinstance(datatype, str):
            found = "missing" if "datatype" not in tensor else f"a JSON {_kind(datatype)}"
            raise InvalidArgument(
                f"{what}: 'datatype' is {found}, expected a string such as \"FP32\""
            )
        if "shape" not in tensor:
            raise InvalidArgument(f"{what}: 'shape' is missing, expected an array of integers")
        shape = _shape(tensor["shape"], what)
        parameters = _object(tensor.get("parameters", {}), f"parameters of {what}")
        _refuse_extension_parameters(parameters, what)
        size = parameters.get(BINARY_DATA_SIZE)
        has_data = "data" in tensor
        if size is None:
            if not has_data:
                raise InvalidArgument(
                    f"{what}: no 'data' and no '{BINARY_DATA_SIZE}' parameter, expected one of them"
                )
            # A list serves as the flat values: the data plane only counts and converts them.
            values = _typed_values(tensor["data"], datatype, what)
            tensors.append(InputTensor(name, datatype, shape, typed=values, typed_field=JSON_DATA))
            continue
        if has_data:
            raise InvalidArgument(
                f"{what}: both 'data' and parameter '{BINARY_DATA_SIZE}', expected one of them"
            )
        if not _is_int(size) or size < 0:
            raise InvalidArgument(
                f"{what}: parameter '{BINARY_DATA_SIZE}' is {json.dumps(size)}, expected a "
                "number of bytes >= 0"
            )
        if not binary and offset + size > 0:
            raise InvalidArgument(
                f"{what}: parameter '{BINARY_DATA_SIZE}' needs binary data after the JSON, "
                f"with its length in the {HEADER_LENGTH} header"
            )
        if offset + size > len(binary):
            raise InvalidArgument(
                f"{what}: parameter '{BINARY_DATA_SIZE}' asks for bytes {offset} to "
                f"{offset + size} of the binary data, which has {len(binary)}"
            )
        tensors.append(InputTensor(name, datatype, shape, raw=binary[offset : offset + size]))
        offset += size
    if offset != len(binary):
        raise InvalidArgument(
            f"the request for model '{model}' has {len(binary)} bytes of binary data after "
            f"the JSON, but its inputs' '{BINARY_DATA_SIZE}' add up to {offset}"
        )
    return tensors


def _outputs(value: Any, model: str) -> list[RequestedOutput]:
    if not isinstance(value, list):
        raise InvalidArgument(
            f"'outputs' of the request for model '{model}' is a JSON {_kind(value)}, expected "
            'an array [{"name": ...}]'
        )
    outputs = []
    for index, item in enumerate(value):
        output = _object(item, f"output {index} of the request for model '{model}'")
        name = output.get("name")
        if not isinstance(name, str):
            raise InvalidArgument(
                f"output {index} of the request for model '{model}' has no 'name' string"
            )
        what = f"output '{clip(name)}' of model '{model}'"
        parameters = _object(output.get("parameters", {}), f"parameters of {what}")
        _refuse_extension_parameters(parameters, what)
        binary = parameters.get(BINARY_DATA)
        if binary is not None and not isinstance(binary, bool):
            raise InvalidArgument(
                f"{what}: parameter '{BINARY_DATA}' is {json.dumps(binary)}, expected true or false"
            )
        # The data plane reads the parameters it knows (classification); binary_data is ours.
        outputs.append(RequestedOutput(name, dict(parameters)))
    return outputs


def _typed_values(data: Any, datatype: str, what: str) -> list[Any]:
    """JSON `data` (flat, or nested row-major: any nesting is flattened, as Triton's reader does)
    as a flat list whose every value has the datatype's JSON type, before the data plane counts
    and converts them: integers for integer types (numpy would truncate 1.5 and read true as 1),
    true/false for BOOL, numbers for floating types, strings for BYTES. Values are looked at one
    by one, never put through numpy as strings: its strings would drop trailing NULs and take
    4 bytes a character at the longest string's width."""
    if not isinstance(data, list):
        raise InvalidArgument(f"{what}: 'data' is a JSON {_kind(data)}, expected an array")
    flat = _flatten(data)
    known = datatypes.by_name(datatype)
    if known is None or known.numpy is None:
        return flat  # the data plane names what is wrong with the datatype
    accepted, expected = _JSON_TYPES[known.numpy.kind]
    if not set(map(type, flat)) <= accepted:
        index = next(index for index, value in enumerate(flat) if type(value) not in accepted)
        raise InvalidArgument(
            f"{what}: 'data' element {index} is a JSON {_kind(flat[index])}, expected "
            f"{expected} for {datatype}"
        )
    if known.numpy.kind != "O":
        return flat
    try:
        return [value.encode() for value in flat]  # BYTES travel on as their UTF-8 bytes
    except UnicodeEncodeError:
        index = next(index for index, value in enumerate(flat) if not _encodes(value))
        raise InvalidArgument(
            f"{what}: 'data' element {index} is not Unicode text (it holds a lone surrogate "
            "escape such as \\ud800), expected a string of characters"
        ) from None


_JSON_TYPES: dict[str, tuple[set[type], str]] = {
    "i": ({int}, "an integer"),
    "u": ({int}, "an integer"),
    "b": ({bool}, "true or false"),
    "f": ({int, float}, "a number"),
    "c": ({int, float}, "a number"),
    "O": ({str}, "a string"),
}
"""The JSON types each numpy kind takes (type(), so that true is no integer), and their name."""


def _flatten(data: list[Any]) -> list[Any]:
    """Nested lists as one flat list, row-major, level by level (no recursion)."""
    flat = data
    while any(type(value) is list for value in flat):
        level: list[Any] = []
        for value in flat:
            if type(value) is list:
                level.extend(value)
            else:
                level.append(value)
        flat = level
    return flat


def _encodes(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _json_values(value: NDArray[Any]) -> list[Any]:
    if value.dtype.kind == "O":
        return [item.decode() if isinstance(item, bytes) else item for item in value.ravel()]
    flat: list[Any] = value.ravel().tolist()
    return flat


def _shape(value: Any, what: str) -> tuple[int, ...]:
    if not isinstance(value, list) or not all(_is_int(size) for size in value):
        raise InvalidArgument(
            f"{what}: 'shape' is {clip(json.dumps(value))}, expected an array of integers"
        )
    return tuple(value)


def _object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidArgument(f"{what} is a JSON {_kind(value)}, expected an object")
    return value


def _refuse_extension_parameters(parameters: Mapping[str, Any], what: str) -> None:
    for key in parameters:
        if key in _EXTENSION_PARAMETERS:
            raise InvalidArgument(
                f"{what}: parameter '{key}' needs Triton's {_EXTENSION_PARAMETERS[key]} "
                "extension, which this server does not support; send the tensor without it"
            )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {dict: "object", list: "array", str: "string", bool: "boolean"}.get(
        type(value), "number"
    )


def _dumps(document: Any) -> bytes:
    return json.dumps(document, separators=(",", ":"), allow_nan=False).encode()


def json_reply(document: Any, status: int = 200) -> Reply:
    """`document` as a JSON answer."""
    return Reply(status, _dumps(document), {"content-type": JSON_CONTENT_TYPE})
