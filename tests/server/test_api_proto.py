"""proto/scratchnet/ follows the protobuf style guide and documents everything it declares.

The .proto files are compiled with source info (their comments) by the pinned grpcio-tools, and
every service, method, message, field, enum and enum value is checked: a versioned package,
UpperCamelCase types, lower_snake_case fields, enum values prefixed with the enum's name and a
zero value *_UNSPECIFIED, and a leading comment on each.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from google.protobuf import descriptor_pb2
from grpc_tools import protoc  # type: ignore[import-untyped]

from tests.conftest import REPO

PROTO_ROOT = REPO / "proto"
API_PROTOS = sorted((PROTO_ROOT / "scratchnet").rglob("*.proto"))
# FileDescriptorProto / DescriptorProto / EnumDescriptorProto / ServiceDescriptorProto field
# numbers, as SourceCodeInfo paths spell them.
MESSAGE, FIELD, NESTED_MESSAGE, ENUM, ENUM_VALUE, NESTED_ENUM, SERVICE, METHOD = (
    4, 2, 3, 5, 2, 4, 6, 2,
)  # fmt: skip
CAMEL = re.compile(r"^[A-Z][A-Za-z0-9]*$")
SNAKE = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")
UPPER_SNAKE = re.compile(r"^[A-Z][A-Z0-9]*(_[A-Z0-9]+)*$")


class Declaration(NamedTuple):
    """A service, method, message, field, enum or enum value of a .proto file."""

    kind: str
    name: str
    path: tuple[int, ...]
    """Where SourceCodeInfo locates it (and its comments)."""
    descriptor: Any


def compiled(proto: Path, out: Path) -> descriptor_pb2.FileDescriptorProto:
    """`proto` compiled by protoc, with its comments."""
    descriptor_set = out / "descriptors.pb"
    args = [
        "protoc",
        f"--proto_path={PROTO_ROOT}",
        f"--proto_path={Path(protoc.__file__).parent / '_proto'}",
        "--include_source_info",
        f"--descriptor_set_out={descriptor_set}",
        str(proto.relative_to(PROTO_ROOT)),
    ]
    assert protoc.main(args) == 0, f"protoc failed on {proto}"
    files = descriptor_pb2.FileDescriptorSet.FromString(descriptor_set.read_bytes()).file
    assert len(files) == 1
    return files[0]


def declarations(file: descriptor_pb2.FileDescriptorProto) -> Iterator[Declaration]:
    """Everything `file` declares, with its kind, full name and source path."""
    for index, message in enumerate(file.message_type):
        yield from _message(message, file.package, (MESSAGE, index))
    for index, enum in enumerate(file.enum_type):
        yield from _enum(enum, file.package, (ENUM, index))
    for index, service in enumerate(file.service):
        name = f"{file.package}.{service.name}"
        yield Declaration("service", name, (SERVICE, index), service)
        for number, method in enumerate(service.method):
            path = (SERVICE, index, METHOD, number)
            yield Declaration("method", f"{name}.{method.name}", path, method)


def _message(
    message: descriptor_pb2.DescriptorProto, scope: str, path: tuple[int, ...]
) -> Iterator[Declaration]:
    name = f"{scope}.{message.name}"
    if message.options.map_entry:  # generated for a map<,> field, which is checked itself
        return
    yield Declaration("message", name, path, message)
    for index, field in enumerate(message.field):
        yield Declaration("field", f"{name}.{field.name}", (*path, FIELD, index), field)
    for index, nested in enumerate(message.nested_type):
        yield from _message(nested, name, (*path, NESTED_MESSAGE, index))
    for index, enum in enumerate(message.enum_type):
        yield from _enum(enum, name, (*path, NESTED_ENUM, index))


def _enum(
    enum: descriptor_pb2.EnumDescriptorProto, scope: str, path: tuple[int, ...]
) -> Iterator[Declaration]:
    name = f"{scope}.{enum.name}"
    yield Declaration("enum", name, path, enum)
    for index, value in enumerate(enum.value):
        yield Declaration("enum value", f"{name}.{value.name}", (*path, ENUM_VALUE, index), value)


@pytest.fixture(scope="module", params=API_PROTOS, ids=lambda path: path.name)
def api(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> descriptor_pb2.FileDescriptorProto:
    return compiled(request.param, tmp_path_factory.mktemp("proto"))


def test_the_api_has_proto_files() -> None:
    assert [path.relative_to(PROTO_ROOT).as_posix() for path in API_PROTOS] == [
        "scratchnet/v1/classifier.proto"
    ]


def test_the_package_is_versioned_and_matches_the_folder(
    api: descriptor_pb2.FileDescriptorProto,
) -> None:
    assert re.fullmatch(r"[a-z][a-z0-9]*(\.[a-z][a-z0-9]*)*\.v[0-9]+", api.package)
    assert Path(api.name).parent.as_posix() == api.package.replace(".", "/")
    assert api.syntax == "proto3"


def test_names_follow_the_style_guide(api: descriptor_pb2.FileDescriptorProto) -> None:
    for kind, name, _, _ in declarations(api):
        short = name.rsplit(".", 1)[1]
        if kind == "field":
            assert SNAKE.match(short), f"field {name}: expected lower_snake_case"
        elif kind == "enum value":
            enum_name = name.rsplit(".", 2)[1]
            prefix = re.sub(r"(?<!^)(?=[A-Z])", "_", enum_name).upper() + "_"
            assert UPPER_SNAKE.match(short) and short.startswith(prefix), (
                f"enum value {name}: expected UPPER_SNAKE_CASE starting with {prefix}"
            )
        else:
            assert CAMEL.match(short), f"{kind} {name}: expected UpperCamelCase"


def test_every_enum_starts_with_unspecified_zero(api: descriptor_pb2.FileDescriptorProto) -> None:
    enums = [item for item in declarations(api) if item.kind == "enum"]
    assert enums, "the API declares no enum"
    for enum in enums:
        first = enum.descriptor.value[0]
        assert first.number == 0 and first.name.endswith("_UNSPECIFIED"), enum.name


def test_everything_declared_has_a_comment(api: descriptor_pb2.FileDescriptorProto) -> None:
    comments = {
        tuple(location.path): location.leading_comments.strip()
        for location in api.source_code_info.location
    }
    undocumented = [
        f"{item.kind} {item.name}" for item in declarations(api) if not comments.get(item.path)
    ]
    assert undocumented == []
